"""Hostile input over every surface, ten thousand cases and more, on a copy of the demo knowledge base.

The corpus is ``tests/hostile_input.py``'s (lone surrogates, NULs, control, zero-width and bidi
characters, huge texts, invalid UTF-8, wrong JSON types, NaN and infinities, unknown and hostile
tag names), drawn by hypothesis and sent through:

- REST (``llm4tag serve``): tag, tag-batch, learn, the tag search, reviews, tag changes, raw bodies;
- the page's Gradio API (``llm4tag app``): ``/gradio_api/call/{tag,learn,search_tags}``, with a
  caller-chosen ``backend`` among the hostile values (a model file path, an Ollama server);
- the app's MCP server (``/gradio_api/mcp/``, JSON-RPC over HTTP);
- the stdio MCP server (``llm4tag mcp``), tool calls and malformed lines;
- the LangChain tool, in process;
- the command line (click's runner, in process: the same code as the console script);
- LangGraph's server (``langgraph dev``): ``/runs/wait`` with hostile input and context;

and, on every HTTP surface, requests rebound from another site (``Host``/``Origin`` of
``evil.example``), which must get 403. The language model is asked for only where it does not
run (``fast``, ``auto`` on the demo) or by a hostile value: its steps take seconds per text here.

A case fails when it gets no answer within two minutes, a 5xx other than 503/507, a non-JSON or
non-strict-JSON answer where JSON is promised, an error without a message, a traceback, or an
answer naming a server path; a server that dies fails the run. At the end every acknowledged learn
is read back from a fresh open of the knowledge base (its id, right and wrong tags) and
``kb stats`` must report no sample without content or graph node.

    .venv/bin/python bench/hostile_corpus.py                    # about 10,500 cases
    .venv/bin/python bench/hostile_corpus.py --scale 0.05       # a quick round (about 500)

Prints a table per surface and writes ``bench/out/hostile_corpus.json`` (counts, the first
failures of each surface). Exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from hostile_input import (
    RAW_BODIES,
    McpProcess,
    any_value,
    dumps,
    fresh_id,
    hostile_text,
    junk_bytes,
    mostly,  # noqa: E402
    number_like,
    odd_text,
    tag_list,
    wrong_type,
)

REBOUND = {"Host": "evil.example", "Origin": "http://evil.example"}
SHARE = {"rest": 3000, "gradio": 2200, "app_mcp": 1500, "stdio_mcp": 1500, "langchain": 1000, "cli": 700, "langgraph": 600}
# the language model's own steps take 10-30 s a text here and are fed hostile text by the test suite (tests/test_hardening.py);
# "auto" runs no LLM on the demo (no fitted fusion beats fused recall), so the bench stays on the fast path
LLM = st.one_of(st.sampled_from([False, False, "fast", "fast", "auto", None]), hostile_text)
BACKENDS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            "llamacpp",
            "llamacpp:/etc/shadow",
            "llamacpp:/root/.ssh/id_rsa",
            "llamacpp:models/./x.gguf",
            "llamacpp:../../etc/passwd",
            "ollama:qwen2.5:0.5b",
            "ollama:http://evil.example/x",
            "openai:gpt-4",
        ]
    ),
    hostile_text,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tally:
    """Per surface: cases sent, answered, refused with a clear error, failures (the first 20 kept)."""

    def __init__(self, secrets: list[str]):
        self.secrets = [s for s in secrets if s]
        self.counts: dict[str, Counter] = {}
        self.failures: dict[str, list[str]] = {}

    def case(self, surface: str, outcome: str) -> None:
        self.counts.setdefault(surface, Counter())["cases"] += 1
        self.counts[surface][outcome] += 1

    def fail(self, surface: str, why: str, case) -> None:
        self.case(surface, "failed")
        kept = self.failures.setdefault(surface, [])
        if len(kept) < 20:
            kept.append(f"{why}: {repr(case)[:300]}")

    def leaks(self, text: str, case=None) -> str | None:
        if "Traceback (most recent call last)" in text:
            return "a traceback"
        sent = repr(case) if case is not None else ""  # the caller's own words echoed back name nothing of the server's
        return next((f"names the server path {s}" for s in self.secrets if s in text and s not in sent), None)


def strict(raw: bytes):
    def refuse(token):
        raise ValueError(f"the non-JSON literal {token}")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def run_cases(strategy, n: int, handle) -> None:
    """``handle(case)`` for ``n`` cases drawn from ``strategy`` (generation only: a bench counts, it does not shrink)."""
    if n <= 0:
        return

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def each(case):
        try:
            handle(case)
        except Exception as exc:  # noqa: BLE001 - the bench's own client failed (a URL too long to send): counted, not fatal
            print(f"the bench could not send a case ({type(exc).__name__}: {str(exc)[:100]})", file=sys.stderr)

    each()


# ---- HTTP answers ------------------------------------------------------------------------------
HTTP_OK = {200, 307, 308, 400, 401, 403, 404, 405, 409, 413, 422, 429, 503, 507}  # 307/308: a path ending in "/" redirected


def check_http(tally: Tally, surface: str, response: httpx.Response, case, rebound: bool = False) -> dict | list | None:
    """Record one HTTP answer; returns its JSON when it is a clear one."""
    if rebound:
        if response.status_code != 403 or "access-control-allow-origin" in response.headers:
            tally.fail(surface, f"a rebound request got {response.status_code}", case)
        else:
            tally.case(surface, "refused")
        return None
    if response.status_code not in HTTP_OK:
        tally.fail(surface, f"status {response.status_code} {response.text[:200]}", case)
        return None
    leak = tally.leaks(response.text, case)
    if leak:
        tally.fail(surface, leak, case)
        return None
    if response.status_code in (307, 308):  # a path ending in "/": to the same path without it, on this server
        location = response.headers.get("location", "")
        if location.startswith(("http://", "https://")) and not location.startswith(
            f"{response.request.url.scheme}://{response.request.url.netloc.decode()}/"
        ):
            tally.fail(surface, f"a redirect elsewhere: {location[:100]}", case)
        else:
            tally.case(surface, "refused")
        return None
    try:
        body = strict(response.content)
    except ValueError as exc:
        tally.fail(surface, f"not strict JSON ({exc})", case)
        return None
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        if not detail:
            tally.fail(surface, "an error without a detail", case)
            return None
        tally.case(surface, "refused")
        return None
    tally.case(surface, "answered")
    return body


def wait_for(url: str, proc: subprocess.Popen, what: str, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited; see {log}")
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{what} did not answer within {timeout:.0f} s; see {log}")


def start(command: list[str], env: dict, name: str, ready: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = OUT / f"hostile-{name}.log"
    proc = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + ready, proc, name, log)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- what a surface is sent ----------------------------------------------------------------------
def cases(known: list[str]):
    tag_args = st.fixed_dictionaries(
        {"text": any_value},
        optional={
            "mode": mostly(st.sampled_from(["multi", "single"])),
            "max_tags": mostly(st.integers(1, 20), number_like),
            "threshold": mostly(st.floats(0, 1), number_like),
            "llm": LLM,
            "explain": st.booleans(),
        },
    )
    learn_args = st.fixed_dictionaries(
        {"text": mostly(odd_text), "correct": tag_list(known)}, optional={"incorrect": tag_list(known), "id": mostly(fresh_id)}
    )
    query = st.one_of(hostile_text, junk_bytes)
    names = mostly(st.sampled_from(known))
    return tag_args, learn_args, query, names


class Bench:
    def __init__(self, kb: Path, known: list[str], tally: Tally, env: dict):
        self.kb, self.known, self.tally, self.env = kb, known, tally, env
        self.tag_args, self.learn_args, self.query, self.names = cases(known)
        self.learned: dict[str, tuple[list[str], list[str]]] = {}  # acknowledged learns: id → (right, wrong), the last one wins

    def acknowledged(self, answer: dict, surface: str) -> None:
        if isinstance(answer, dict) and isinstance(answer.get("id"), str):
            self.learned[answer["id"]] = (list(answer.get("correct") or []), list(answer.get("incorrect") or []), surface)

    # ---- REST
    def rest(self, n: int) -> None:
        proc, url = start([sys.executable, "-m", "ui.cli", "--kb", str(self.kb), "serve"], self.env, "serve", "/health")
        client = httpx.Client(base_url=url, timeout=120)
        ops = st.one_of(
            st.tuples(st.just("POST /v1/tag"), st.one_of(self.tag_args, st.sampled_from(RAW_BODIES), any_value)),
            st.tuples(
                st.just("POST /v1/tag-batch"),
                st.fixed_dictionaries(
                    {
                        "documents": mostly(
                            st.lists(
                                st.fixed_dictionaries({}, optional={"id": mostly(fresh_id), "text": any_value, "title": mostly(odd_text)}),
                                min_size=1,
                                max_size=4,
                            )
                        )
                    },
                    optional={"threshold": number_like, "llm": LLM},
                ),
            ),
            st.tuples(st.just("POST /v1/learn"), st.one_of(self.learn_args, self.learn_args, st.sampled_from(RAW_BODIES))),
            st.tuples(st.just("GET /v1/tags"), st.tuples(self.query, st.one_of(st.none(), number_like))),
            st.tuples(st.just("GET /v1/review"), fresh_id),
            st.tuples(st.just("POST /v1/review"), st.tuples(fresh_id, any_value)),
            st.tuples(st.just("POST /v1/tags/change"), st.tuples(st.one_of(hostile_text, fresh_id), any_value)),
        )

        def send(case) -> None:
            (op, body), rebound = case
            headers = {"content-type": "application/json", **(REBOUND if rebound else {})}
            try:
                if op == "GET /v1/tags":
                    q, limit = body
                    raw = q if isinstance(q, bytes) else q.encode("utf-8", "surrogatepass")
                    path = "/v1/tags?q=" + quote(raw[:5000], safe="") + (f"&limit={quote(str(limit))}" if limit is not None else "")
                    response = client.get(path, headers=headers)
                elif op == "GET /v1/review":
                    response = client.get(f"/v1/review/{quote(body.encode('utf-8', 'surrogatepass')[:4000], safe='')}", headers=headers)
                elif op == "POST /v1/review":
                    cid, decision = body
                    response = client.post(
                        f"/v1/review/{quote(cid.encode('utf-8', 'surrogatepass')[:4000], safe='')}",
                        content=dumps(decision).encode("utf-8", "surrogatepass"),
                        headers=headers,
                    )
                elif op == "POST /v1/tags/change":  # hostile names only: a rename of a real tag is a legitimate write
                    tag, change = body
                    response = client.post(
                        f"/v1/tags/{quote(('x-' + tag).encode('utf-8', 'surrogatepass')[:4000], safe='')}/change",
                        content=dumps(change).encode("utf-8", "surrogatepass"),
                        headers=headers,
                    )
                else:
                    raw = body if isinstance(body, bytes) else dumps(body).encode("utf-8", "surrogatepass")
                    response = client.post(op.split()[1], content=raw, headers=headers)
            except httpx.HTTPError as exc:
                self.tally.fail("rest", f"no answer ({type(exc).__name__})", case)
                return
            answer = check_http(self.tally, "rest", response, case, rebound)
            if op == "POST /v1/learn" and answer is not None:
                self.acknowledged(answer, "rest")

        try:
            run_cases(st.tuples(ops, st.sampled_from([False] * 19 + [True])), n, send)
            self.alive("rest", proc, client.get("/health"))
        finally:
            stop(proc)

    def alive(self, surface: str, proc: subprocess.Popen | None, response: httpx.Response | None = None) -> None:
        if proc is not None and proc.poll() is not None:
            self.tally.fail(surface, "the server died", proc.returncode)
        elif response is not None and response.status_code != 200:
            self.tally.fail(surface, f"health after the round: {response.status_code}", response.text[:200])

    # ---- the page's Gradio API and the app's MCP
    def app(self, n_gradio: int, n_mcp: int) -> None:
        proc, url = start([sys.executable, "-m", "ui.cli", "--kb", str(self.kb), "app"], self.env, "app", "/config")
        client = httpx.Client(base_url=url, timeout=120)
        try:
            self.gradio(client, n_gradio)
            self.app_mcp(client, url, n_mcp)
            self.alive("gradio", proc, client.get("/config"))
        finally:
            stop(proc)

    def gradio(self, client: httpx.Client, n: int) -> None:
        tag = st.builds(
            lambda a, backend: [
                a.get("text"),
                a.get("mode", "multi"),
                a.get("threshold"),
                a.get("max_tags", 5),
                a.get("llm"),
                backend,
                a.get("explain", False),
            ],
            self.tag_args,
            BACKENDS,
        )
        learn = st.builds(lambda a: [a["text"], a["correct"], a.get("incorrect", [])], self.learn_args)
        search = st.tuples(hostile_text, mostly(st.integers(1, 50), number_like)).map(list)
        ops = st.one_of(
            st.tuples(st.just("tag"), mostly(tag)),
            st.tuples(st.just("learn"), mostly(learn)),
            st.tuples(st.just("search_tags"), mostly(search)),
            st.tuples(st.sampled_from(["tag", "learn"]), st.lists(any_value, max_size=8)),
        )

        def send(case) -> None:
            (api, data), rebound = case
            headers = {"content-type": "application/json", **(REBOUND if rebound else {})}
            try:
                posted = client.post(
                    f"/gradio_api/call/{api}", content=dumps({"data": data}).encode("utf-8", "surrogatepass"), headers=headers
                )
                if rebound or posted.status_code != 200:
                    check_http(self.tally, "gradio", posted, case, rebound)
                    return
                event_id = posted.json()["event_id"]
                streamed = client.get(f"/gradio_api/call/{api}/{event_id}")
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                self.tally.fail("gradio", f"no answer ({type(exc).__name__})", case)
                return
            event, payload = gradio_event(streamed.text)
            leak = self.tally.leaks(streamed.text, case)
            if leak:
                self.tally.fail("gradio", leak, case)
            elif event == "complete":
                self.tally.case("gradio", "answered")
                if api == "learn" and payload:
                    self.acknowledged(payload[0] if isinstance(payload, list) and payload else payload, "gradio")
            elif event == "error" and clear_message(payload.get("error") if isinstance(payload, dict) else payload):
                self.tally.case("gradio", "refused")
            else:
                self.tally.fail("gradio", f"event {event!r} with {str(payload)[:200]!r}", case)

        run_cases(st.tuples(ops, st.sampled_from([False] * 19 + [True])), n, send)

    def app_mcp(self, client: httpx.Client, url: str, n: int) -> None:
        mcp = HttpMcp(client, "/gradio_api/mcp/")
        tools = [t["name"] for t in mcp.request("tools/list", {})["result"]["tools"]]
        self.mcp_round("app_mcp", mcp, tools, n)

    def mcp_round(self, surface: str, mcp, tools: list[str], n: int) -> None:
        """Tool calls with hostile arguments (by each tool's name: tag, learn, search, recall, change), unknown tools, wrong params."""

        def arguments_for(name: str):
            if "learn" in name:
                return self.learn_args
            if "search" in name:
                return st.fixed_dictionaries({"query": any_value}, optional={"limit": mostly(st.integers(1, 30), number_like)})
            if "recall" in name:
                return st.fixed_dictionaries({"text": any_value}, optional={"budget": mostly(st.integers(1, 30), number_like)})
            if "change" in name:  # hostile names only
                return st.fixed_dictionaries(
                    {
                        "tag": hostile_text.map(lambda t: "x-" + t),
                        "action": mostly(st.sampled_from(["rename", "merge", "retire"])),
                        "into": any_value,
                    }
                )
            return st.builds(lambda a, backend: {**a, **({"backend": backend} if backend is not None else {})}, self.tag_args, BACKENDS)

        calls = st.one_of(
            st.sampled_from(tools).flatmap(lambda name: st.tuples(st.just(name), arguments_for(name))),
            st.tuples(st.one_of(hostile_text, wrong_type), st.dictionaries(st.text(max_size=4), any_value, max_size=2)),  # no such tool
            st.tuples(st.sampled_from(tools), wrong_type),  # arguments that are not an object
        )

        def send(case) -> None:
            name, arguments = case
            try:
                reply = mcp.request("tools/call", {"name": name, "arguments": arguments})
            except Exception as exc:  # noqa: BLE001 - a bench counts every way a case can fail
                self.tally.fail(surface, f"no answer ({type(exc).__name__}: {str(exc)[:120]})", case)
                return
            text = json.dumps(reply, ensure_ascii=False)
            leak = self.tally.leaks(text, case)
            if leak:
                self.tally.fail(surface, leak, case)
            elif "error" in reply:
                ok = clear_message((reply["error"] or {}).get("message"))
                self.tally.case(surface, "refused") if ok else self.tally.fail(surface, "an error without a message", case)
            elif reply.get("result", {}).get("isError"):
                content = reply["result"].get("content") or [{}]
                ok = clear_message(content[0].get("text"))
                self.tally.case(surface, "refused") if ok else self.tally.fail(surface, "an error result without text", case)
            elif "result" in reply:
                self.tally.case(surface, "answered")
                if "learn" in str(name):
                    structured = reply["result"].get("structuredContent")
                    answer = structured.get("result", structured) if isinstance(structured, dict) else None
                    if answer is None:
                        text = ((reply["result"].get("content") or [{}])[0]).get("text") or ""
                        try:
                            answer = json.loads(text)
                        except ValueError:
                            try:  # Gradio's MCP server writes a tool's dict as Python's repr
                                answer = ast.literal_eval(text)
                            except (ValueError, SyntaxError):
                                answer = None
                    if not isinstance(answer, dict) or "id" not in answer:
                        self.tally.fail(surface, "a learn answered without the stored sample's id", case)
                    self.acknowledged(answer, surface)
            else:
                self.tally.fail(surface, f"a reply with neither result nor error: {text[:200]}", case)

        run_cases(calls, n, send)

    # ---- stdio MCP
    def stdio_mcp(self, n: int) -> None:
        server = McpProcess(self.kb)
        try:
            server.request(
                "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "1"}}
            )
            server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            tools = [t["name"] for t in server.request("tools/list", {})["result"]["tools"]]
            self.mcp_round("stdio_mcp", server, tools, n)
            if server.unreadable:
                self.tally.fail("stdio_mcp", "lines on standard output that are not JSON", server.unreadable[:3])
            self.alive("stdio_mcp", server.proc)
        finally:
            server.close()

    # ---- the LangChain tool, in process
    def langchain(self, n: int) -> None:
        from agent import Context
        from agent.tools import make_tagging_tool

        tool = make_tagging_tool(Context.from_env(kb_dir=str(self.kb)))

        def send(arguments) -> None:
            try:
                answer = tool.invoke(arguments)
            except Exception as exc:  # noqa: BLE001 - the tool must answer, not raise
                self.tally.fail("langchain", f"raised {type(exc).__name__}: {str(exc)[:160]}", arguments)
                return
            leak = self.tally.leaks(json.dumps(answer, ensure_ascii=False) if not isinstance(answer, str) else answer, arguments)
            if leak:
                self.tally.fail("langchain", leak, arguments)
            elif isinstance(answer, dict):
                self.tally.case("langchain", "answered")
            elif clear_message(answer):
                self.tally.case("langchain", "refused")
            else:
                self.tally.fail("langchain", f"answered {answer!r:.100}", arguments)

        run_cases(st.one_of(self.tag_args, st.dictionaries(st.text(max_size=6), any_value, max_size=3)), n, send)

    # ---- the command line, in process
    def cli(self, n: int) -> None:
        from click.testing import CliRunner

        from ui.cli import main

        option = mostly(st.integers(1, 30).map(str), st.one_of(number_like.map(str), hostile_text))
        argv = st.one_of(
            st.tuples(hostile_text, st.one_of(st.none(), option)).map(lambda a: ["recall", a[0], *(["--budget", a[1]] if a[1] else [])]),
            st.tuples(hostile_text, st.sampled_from(["fast", "auto"]), st.one_of(st.none(), option)).map(
                lambda a: ["tag", a[0], "--llm", a[1], "--json", *(["--threshold", a[2]] if a[2] else [])]
            ),
            st.tuples(hostile_text, st.one_of(st.none(), option)).map(lambda a: ["kb", "search", a[0], *(["-k", a[1]] if a[1] else [])]),
            st.tuples(hostile_text, tag_list(self.known)).map(
                lambda a: [
                    "learn",
                    a[0],
                    "--json",
                    *[x for t in (a[1] if isinstance(a[1], list) else [str(a[1])]) for x in ("--correct", str(t))],
                ]
            ),
        )
        runner = CliRunner()

        def send(args) -> None:
            result = runner.invoke(main, ["--kb", str(self.kb), *args])
            leak = self.tally.leaks(result.output, args)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                self.tally.fail("cli", f"raised {type(result.exception).__name__}: {str(result.exception)[:160]}", args)
            elif result.exit_code not in (0, 1, 2):
                self.tally.fail("cli", f"exit {result.exit_code}", args)
            elif leak:
                self.tally.fail("cli", leak, args)
            elif result.exit_code and "Error" not in result.output:
                self.tally.fail("cli", "an exit without a message", args)
            else:
                self.tally.case("cli", "refused" if result.exit_code else "answered")
                if args[0] == "learn" and result.exit_code == 0:
                    self.acknowledged(json.loads(result.output), "cli")

        run_cases(argv, n, send)

    # ---- LangGraph's server
    def langgraph(self, n: int) -> None:
        langgraph = Path(sys.executable).with_name("langgraph")
        if not langgraph.exists():
            print("langgraph-cli is not installed: the LangGraph round is skipped", file=sys.stderr)
            return
        work = OUT / "hostile-langgraph"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        config = json.loads((ROOT / "langgraph.json").read_text())
        for spec in config["graphs"].values():
            spec["path"] = str(ROOT / spec["path"])
        config["dependencies"] = [str(ROOT)]
        (work / "langgraph.json").write_text(json.dumps(config))
        port = free_port()
        log = OUT / "hostile-langgraph.log"
        env = {**self.env, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LLM4TAG_KB_DIR": str(self.kb)}
        proc = subprocess.Popen(
            [
                str(langgraph),
                "dev",
                "--config",
                str(work / "langgraph.json"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-browser",
                "--no-reload",
            ],
            cwd=work,
            env=env,
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(url + "/ok", proc, "langgraph dev", log)
            client = httpx.Client(base_url=url, timeout=120)
            context = st.fixed_dictionaries(
                {},
                optional={
                    "kb_dir": st.one_of(st.just(str(OUT / "elsewhere" / "deep")), hostile_text, wrong_type),
                    "backend": BACKENDS,
                    "write_back": st.booleans(),
                    "review": st.booleans(),
                    "use_generation": st.just(False),
                    "max_tags": number_like,
                    "threshold": number_like,
                    "budget": mostly(st.integers(1, 30), number_like),
                },
            )
            body = st.fixed_dictionaries(
                {
                    "assistant_id": mostly(st.just("llm4tag")),
                    "input": mostly(st.fixed_dictionaries({"content": any_value}, optional={"title": any_value})),
                },
                optional={"context": mostly(context)},
            )

            def send(case) -> None:
                payload, rebound = case
                headers = {"content-type": "application/json", **(REBOUND if rebound else {})}
                try:
                    response = client.post("/runs/wait", content=dumps(payload).encode("utf-8", "surrogatepass"), headers=headers)
                except httpx.HTTPError as exc:
                    self.tally.fail("langgraph", f"no answer ({type(exc).__name__})", payload)
                    return
                if rebound:  # langgraph dev is a development server: CORS for every origin (the README says so); it must still answer
                    self.tally.case("langgraph", "answered" if response.status_code < 500 else "refused")
                    return
                if response.status_code >= 500:
                    self.tally.fail("langgraph", f"status {response.status_code} {response.text[:200]}", payload)
                    return
                self.tally.case("langgraph", "answered" if response.status_code == 200 and "__error__" not in response.text else "refused")

            run_cases(st.tuples(body, st.sampled_from([False] * 19 + [True])), n, send)
            self.alive("langgraph", proc, client.get("/ok"))
            if (OUT / "elsewhere").exists():
                self.tally.fail("langgraph", "a run's kb_dir created a folder", str(OUT / "elsewhere"))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 2)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)


class HttpMcp:
    """JSON-RPC to a streamable-HTTP MCP endpoint (the app's), answers read from JSON or server-sent events."""

    def __init__(self, client: httpx.Client, path: str):
        self.client, self.path, self.session, self.next_id = client, path, None, 0
        reply, response = self._post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "1"}},
            }
        )
        self.session = response.headers.get("mcp-session-id")
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _post(self, message) -> tuple[dict | None, httpx.Response]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            **({"mcp-session-id": self.session} if self.session else {}),
        }
        response = self.client.post(self.path, content=dumps(message).encode("utf-8", "surrogatepass"), headers=headers)
        if response.status_code >= 500:
            raise RuntimeError(f"status {response.status_code}: {response.text[:200]}")
        if not response.content:
            return None, response
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            replies = [json.loads(line[5:]) for line in response.text.split("\n") if line.startswith("data:") and line[5:].strip()]
            return (replies[-1] if replies else None), response
        return response.json(), response

    def request(self, method: str, params) -> dict:
        self.next_id += 1
        reply, response = self._post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        if reply is None:
            raise RuntimeError(f"no reply (status {response.status_code})")
        return reply


def clear_message(message) -> bool:
    """An error message a caller can act on: text, and not the catch-all for an exception nobody expected."""
    return isinstance(message, str) and bool(message.strip()) and not message.startswith(("unexpected error", "internal error"))


def gradio_event(stream: str) -> tuple[str | None, object]:
    """The last event of a Gradio API call's stream and its data (the error's message, or the outputs)."""
    event, data = None, None
    for line in stream.split("\n"):  # not splitlines(): it also splits at \x85 and \u2028 inside the JSON
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            try:
                data = json.loads(line[5:])
            except ValueError:
                data = line[5:].strip()
    return event, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="share of the default cases per surface (1.0: about 10,500 cases)")
    ap.add_argument("--surfaces", default=",".join(SHARE))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from knowledge_base import KnowledgeBase
    from knowledge_base.demo import open_demo_kb

    OUT.mkdir(parents=True, exist_ok=True)
    kb = OUT / "hostile-kb"
    shutil.rmtree(kb, ignore_errors=True)
    shutil.copytree(open_demo_kb(log=lambda m: print(m, file=sys.stderr)).directory, kb, ignore=shutil.ignore_patterns(".write.lock"))
    known = sorted(KnowledgeBase(kb).tag_names())
    home = os.path.expanduser("~")
    tally = Tally([str(kb.resolve()), str(ROOT), home if home not in ("/", "") else ""])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "LLM4TAG_USE_KNOWLEDGE": "false"}
    os.environ.update({k: env[k] for k in ("LLM4TAG_USE_KNOWLEDGE", "HF_HUB_OFFLINE")})
    bench = Bench(kb, known, tally, env)
    n = {name: math.ceil(share * args.scale) for name, share in SHARE.items()}
    chosen = [s.strip() for s in args.surfaces.split(",")]
    started = time.monotonic()
    seconds = {}
    for surface in chosen:
        t0 = time.monotonic()
        print(f"{surface}: {n[surface]} cases …", file=sys.stderr, flush=True)
        if surface == "gradio":
            bench.app(n["gradio"], n["app_mcp"] if "app_mcp" in chosen else 0)
        elif surface != "app_mcp":
            getattr(bench, surface)(n[surface])
        seconds[surface] = round(time.monotonic() - t0)
    # every acknowledged learn, read back from a fresh open; nothing half-written
    fresh = KnowledgeBase(kb)
    lost = []
    for sid, (right, wrong, surface) in bench.learned.items():
        sample = fresh.get_sample(sid)
        if sample is None or sorted(sample.tags) != sorted(right) or sorted(sample.incorrect_tags) != sorted(wrong):
            lost.append(
                f"{sid}: acknowledged by {surface} right {right} wrong {wrong}, stored "
                + ("nothing" if sample is None else f"right {list(sample.tags)} wrong {list(sample.incorrect_tags)}")
            )
    halfway = [p for p in fresh.stats(check=True).get("problems", []) if "halfway" in p]
    total = Counter()
    for counts in tally.counts.values():
        total.update(counts)
    report = {
        "cases": total["cases"],
        "answered": total["answered"],
        "refused": total["refused"],
        "failed": total["failed"],
        "by_surface": {s: dict(c) for s, c in tally.counts.items()},
        "seconds": seconds,
        "learns_acknowledged": len(bench.learned),
        "learns_lost": len(lost),
        "lost_ids": lost[:20],
        "halfway_writes": halfway,
        "failures": tally.failures,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "load": os.getloadavg(),
    }
    (OUT / "hostile_corpus.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"\n{'surface':<10} {'cases':>6} {'answered':>9} {'refused':>8} {'failed':>7} {'seconds':>8}")
    for surface, c in tally.counts.items():
        print(f"{surface:<10} {c['cases']:>6} {c['answered']:>9} {c['refused']:>8} {c['failed']:>7} {seconds.get(surface, ''):>8}")
    print(f"{'all':<10} {total['cases']:>6} {total['answered']:>9} {total['refused']:>8} {total['failed']:>7}")
    print(
        f"acknowledged learns {len(bench.learned)} (every surface that learns), lost {len(lost)}; "
        f"halfway writes {halfway or 'none'}; {report['minutes']} min, load {report['load'][0]:.1f}"
    )
    for surface, kept in tally.failures.items():
        for line in kept[:5]:
            print(f"  {surface}: {line}")
    for line in lost[:10]:
        print(f"  lost: {line}")
    sys.exit(1 if total["failed"] or lost or halfway else 0)


if __name__ == "__main__":
    main()
