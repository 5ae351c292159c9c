"""The Ollama backend against a local stand-in that speaks Ollama's HTTP wire format.

The real server cannot be installed here, so a ThreadingHTTPServer answers exactly the calls the
backend makes, in the shapes Ollama documents:

- ``GET /api/version`` → ``{"version": "0.12.11"}`` (docs.ollama.com/api-reference/get-version,
  OpenAPI ``VersionResponse``).
- ``POST /api/show`` → model details, or 404 ``{"error": "model 'x' not found"}`` (docs/api.md,
  "Show Model Information"; the ollama-python 0.6.3 ``ShowResponse`` requires ``model_info``).
- ``POST /api/chat`` with ``"stream": false`` → one object with ``model``, ``created_at``,
  ``message``, ``done``, ``done_reason``, ``prompt_eval_count``, ``eval_count`` (docs/api.md), and,
  when the request has ``"logprobs": true``, ``"logprobs": [{"token", "logprob", "top_logprobs":
  [{"token", "logprob"}, ...]}]`` — one entry per generated token, ``top_logprobs`` at most the
  request's ``top_logprobs`` (0–20). Source: Ollama's ``api/types.go`` (``ChatRequest.Logprobs`` /
  ``TopLogprobs``, ``ChatResponse.Logprobs []Logprob``, ``Logprob{TokenLogprob; TopLogprobs}``,
  ``TokenLogprob{Token, Logprob}``), mirrored by ollama-python's ``_types.py`` (``Logprob``,
  ``TokenLogprob``, ``ChatResponse.logprobs``) and its ``examples/chat-logprobs.py`` (PR #601).
  A server older than 0.12.11 ignores ``logprobs`` and answers without the field.

The stand-in records every request body, so the tests check what the client really sent.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.llm import BackendError, load_backend
from agent.llm.base import tag_selection_schema
from agent.llm.ollama import OllamaBackend, yes_no_scores

MARKER = "<<relevant>>"
SYSTEM = "You are a test system prompt."
FILLER = [
    (w, -6.0 - 0.25 * i)
    for i, w in enumerate(
        ["Maybe", "The", "I", "It", "Not", "This", "Rel", "A", "**", "Answer", "Y", "N", "Sure", "Unfortunately", "Based", "Certainly"]
    )
]
YES_TOP = [("Yes", -0.1), ("No", -2.4), (" Yes", -3.2), ("no", -4.0)] + FILLER
NO_TOP = [("No", -0.05), ("Yes", -3.1), (" No", -3.9), ("yes", -5.2)] + FILLER


def expected_p_yes(top: list[tuple[str, float]]) -> float:
    """The paper's confidence, computed here from first principles: a softmax over the summed
    probabilities of the Yes variants and of the No variants."""
    p_yes = sum(math.exp(lp) for t, lp in top if t.strip().lower() == "yes")
    p_no = sum(math.exp(lp) for t, lp in top if t.strip().lower() == "no")
    return p_yes / (p_yes + p_no)


def marker_rule(user: str) -> list[tuple[str, float]]:
    return YES_TOP if MARKER in user else NO_TOP


class StandIn:
    """The stand-in's behaviour and what it saw; tests change the attributes."""

    def __init__(self):
        self.version = "0.12.11"
        self.models = {"stand-in-model", "test-model"}
        self.with_logprobs = True  # False: behave like a server older than 0.12.11
        self.chat_delay = 0.0
        self.top_for = marker_rule  # user message → ranked (token, logprob) alternatives
        self.inject = "not-a-candidate"  # a name the "model" adds to every selection
        self.requests: list[tuple[str, dict]] = []
        self.selected: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.selections_in_flight = 0  # /api/chat requests with a tag-selection "format": one per content tagged
        self.max_selections_in_flight = 0
        self.fail_chats = 0  # answer this many /api/chat requests with 503 (a server restarting or overloaded)
        self.lock = threading.Lock()
        self.host = ""

    def chats(self) -> list[dict]:
        return [body for path, body in self.requests if path == "/api/chat"]

    def chat(self, body: dict) -> dict:
        user = body["messages"][-1]["content"]
        reply = {
            "model": body["model"],
            "created_at": "2025-11-20T10:00:00.000000Z",
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": len(user.split()),
            "total_duration": 1000,
            "eval_duration": 500,
        }
        if body.get("logprobs"):
            top = self.top_for(user)
            n = body.get("top_logprobs", 0)
            reply["message"] = {"role": "assistant", "content": top[0][0]}
            reply["eval_count"] = 1
            reply["done_reason"] = "length"
            if self.with_logprobs:
                reply["logprobs"] = [
                    {"token": top[0][0], "logprob": top[0][1], "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top[:n]]}
                ]
        else:
            enum = body["format"]["items"]["enum"]
            chosen = enum[: min(2, body["format"]["maxItems"])]
            with self.lock:
                self.selected = list(chosen)
            reply["message"] = {"role": "assistant", "content": json.dumps(chosen + [self.inject])}
            reply["eval_count"] = 7
        return reply


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output quiet
        pass

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        stand_in: StandIn = self.server.stand_in
        with stand_in.lock:
            stand_in.requests.append((self.path, {}))
        if self.path == "/api/version":
            self._send(200, {"version": stand_in.version})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        stand_in: StandIn = self.server.stand_in
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with stand_in.lock:
            stand_in.requests.append((self.path, body))
        if self.path == "/api/show":
            if body.get("model") not in stand_in.models:
                self._send(404, {"error": f"model '{body.get('model')}' not found"})
                return
            self._send(
                200,
                {
                    "modelfile": "FROM stand-in",
                    "parameters": "",
                    "template": "{{ .Prompt }}",
                    "details": {"format": "gguf", "family": "llama", "parameter_size": "135M", "quantization_level": "Q4_1"},
                    "model_info": {"general.architecture": "llama"},
                    "capabilities": ["completion"],
                    "modified_at": "2025-11-20T10:00:00.000000Z",
                },
            )
        elif self.path == "/api/chat":
            with stand_in.lock:
                failing = stand_in.fail_chats > 0
                stand_in.fail_chats -= failing
            if failing:
                self._send(503, {"error": "server busy, please try again"})
                return
            selection = "format" in body
            with stand_in.lock:
                stand_in.in_flight += 1
                stand_in.max_in_flight = max(stand_in.max_in_flight, stand_in.in_flight)
                stand_in.selections_in_flight += selection
                stand_in.max_selections_in_flight = max(stand_in.max_selections_in_flight, stand_in.selections_in_flight)
            try:
                time.sleep(stand_in.chat_delay)
                reply = stand_in.chat(body)
            finally:
                with stand_in.lock:
                    stand_in.in_flight -= 1
                    stand_in.selections_in_flight -= selection
            try:
                self._send(200, reply)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass
        else:
            self._send(404, {"error": "not found"})


@pytest.fixture
def stand_in(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.stand_in = StandIn()
    server.stand_in.host = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("OLLAMA_HOST", server.stand_in.host)
    monkeypatch.delenv("LLM4TAG_OLLAMA_TIMEOUT", raising=False)
    monkeypatch.delenv("LLM4TAG_OLLAMA_PARALLEL", raising=False)
    monkeypatch.delenv("LLM4TAG_OLLAMA_CONNECT_TIMEOUT", raising=False)
    try:
        yield server.stand_in
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fresh_backends():
    """agent.llm caches one backend per spec; drop the Ollama ones around a test."""
    import agent.llm as llm

    def drop():
        for spec in [s for s in llm._backends if s.startswith("ollama:")]:
            llm._backends.pop(spec)

    drop()
    yield
    drop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- start-up checks ------------------------------------------------------------------------------


def test_connects_and_describes_itself(stand_in):
    backend = OllamaBackend("stand-in-model")
    assert backend.describe() == f"ollama · stand-in-model @ {stand_in.host}"
    assert backend.server_version == "0.12.11"
    assert [p for p, _ in stand_in.requests] == ["/api/version", "/api/show"]
    assert stand_in.requests[1][1]["model"] == "stand-in-model"


def test_server_down_says_how_to_start_it(monkeypatch):
    host = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OLLAMA_HOST", host)
    with pytest.raises(BackendError) as err:
        OllamaBackend("stand-in-model")
    message = str(err.value)
    assert "not reachable" in message and host in message
    assert "ollama serve" in message and "OLLAMA_HOST" in message


def test_old_server_is_refused(stand_in):
    stand_in.version = "0.12.10"
    with pytest.raises(BackendError, match=r"0\.12\.10, too old to return logprobs.*0\.12\.11.*upgrade"):
        OllamaBackend("stand-in-model")


@pytest.mark.parametrize("version", ["0.12.11", "0.13.0-rc1", "1.0.0", "0.0.0"])
def test_new_enough_and_source_built_servers_are_accepted(stand_in, version):
    stand_in.version = version
    assert OllamaBackend("stand-in-model").server_version == version


def test_missing_model_says_pull_it(stand_in):
    with pytest.raises(BackendError, match=r"no model 'qwen2\.5:7b'.*`ollama pull qwen2\.5:7b`"):
        OllamaBackend("qwen2.5:7b")


def test_bad_settings_are_reported(stand_in, monkeypatch):
    monkeypatch.setenv("LLM4TAG_OLLAMA_TIMEOUT", "soon")
    with pytest.raises(BackendError, match="LLM4TAG_OLLAMA_TIMEOUT"):
        OllamaBackend("stand-in-model")


@pytest.fixture
def hanging_server(monkeypatch):
    """A stand-in for a stuck server: it accepts connections and never answers (it lets them go
    after 20 s, so a client without its own timeout fails the test instead of hanging it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("OLLAMA_HOST", host)
    for name in ("LLM4TAG_OLLAMA_TIMEOUT", "LLM4TAG_OLLAMA_PARALLEL", "LLM4TAG_OLLAMA_CONNECT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    release = threading.Timer(20.0, lambda: [c.close() for c in list(held)])
    release.start()
    try:
        yield host
    finally:
        release.cancel()
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


def test_a_server_that_accepts_and_hangs_is_reported_within_seconds_by_default(hanging_server):
    started = time.perf_counter()
    with pytest.raises(BackendError) as err:
        OllamaBackend("stand-in-model")
    elapsed = time.perf_counter() - started
    assert elapsed < 9, f"waited {elapsed:.1f} s for a server that never answers"
    message = str(err.value)
    assert hanging_server in message and "did not answer /api/version within 5 s" in message
    assert "LLM4TAG_OLLAMA_CONNECT_TIMEOUT" in message


def test_the_start_up_wait_is_configurable(hanging_server, monkeypatch):
    monkeypatch.setenv("LLM4TAG_OLLAMA_CONNECT_TIMEOUT", "0.3")
    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"within 0\.3 s"):
        OllamaBackend("stand-in-model")
    assert time.perf_counter() - started < 3


def test_default_timeouts_are_ones_a_person_would_wait_for(stand_in):
    backend = OllamaBackend("stand-in-model")
    assert backend.timeout == 60 and backend.connect_timeout == 5


# -- selection ------------------------------------------------------------------------------------


def test_select_tags_sends_the_candidate_schema_and_keeps_only_candidates(stand_in):
    backend = OllamaBackend("stand-in-model")
    candidates = ["game::strategy", "uitoolkit::gtk", "use::gameplaying"]
    gen = backend.select_tags(SYSTEM, "Pick tags for: a real-time strategy game.", candidates, 3)
    assert gen.tags == ["game::strategy", "uitoolkit::gtk"]
    assert gen.rejected == ["not-a-candidate"]
    assert json.loads(gen.raw) == ["game::strategy", "uitoolkit::gtk", "not-a-candidate"]
    assert gen.prompt_tokens == len("Pick tags for: a real-time strategy game.".split()) and gen.completion_tokens == 7

    (body,) = stand_in.chats()
    assert body["model"] == "stand-in-model" and body["stream"] is False
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Pick tags for: a real-time strategy game."},
    ]
    assert body["format"] == tag_selection_schema(candidates, 3)
    assert body["format"]["items"]["enum"] == candidates
    assert body["options"]["temperature"] == 0
    assert "logprobs" not in body


def test_select_tags_single_mode_and_no_candidates(stand_in):
    backend = OllamaBackend("stand-in-model")
    gen = backend.select_tags(SYSTEM, "x", ["a", "b"], 1)
    assert gen.tags == ["a"]
    assert stand_in.chats()[-1]["format"]["minItems"] == 1 and stand_in.chats()[-1]["format"]["maxItems"] == 1
    assert backend.select_tags(SYSTEM, "x", [], 3).tags == []
    assert len(stand_in.chats()) == 1  # no request without candidates


# -- judgments ------------------------------------------------------------------------------------


def test_judge_is_the_softmax_over_yes_and_no_logprobs(stand_in):
    backend = OllamaBackend("stand-in-model")
    yes, no = backend.judge(SYSTEM, [f"content {MARKER}\nTag: a", "content\nTag: b"])
    assert yes.p_yes == pytest.approx(expected_p_yes(YES_TOP), abs=1e-12)
    assert no.p_yes == pytest.approx(expected_p_yes(NO_TOP), abs=1e-12)
    assert yes.logit_yes == pytest.approx(math.log(math.exp(-0.1) + math.exp(-3.2)))
    assert yes.logit_no == pytest.approx(math.log(math.exp(-2.4) + math.exp(-4.0)))
    assert yes.p_yes > 0.5 > no.p_yes
    assert yes.reused_tokens == 0 and yes.prompt_tokens == len(f"content {MARKER}\nTag: a".split())

    for body in stand_in.chats():
        assert body["logprobs"] is True and body["top_logprobs"] == 20
        assert body["options"] == {"temperature": 0, "num_predict": 1}
        assert body["stream"] is False and "format" not in body
        assert body["messages"][0] == {"role": "system", "content": SYSTEM}


def test_a_variant_missing_from_the_top_20_gets_an_upper_bound_estimate(stand_in):
    top = [("Yes", -0.02)] + FILLER  # no "No" variant among the alternatives
    stand_in.top_for = lambda user: top
    (j,) = OllamaBackend("stand-in-model").judge(SYSTEM, ["anything"])
    floor = min(lp for _, lp in top) - math.log(2)
    assert j.logit_yes == pytest.approx(-0.02) and j.logit_no == pytest.approx(floor)
    assert j.p_yes == pytest.approx(math.exp(-0.02) / (math.exp(-0.02) + math.exp(floor)))


def test_yes_no_scores_match_case_and_space_variants():
    ly, ln = yes_no_scores([("\nYES", -1.0), ("yes ", -2.0), (" NO", -0.5), ("Nope", -0.7)])
    assert ly == pytest.approx(math.log(math.exp(-1.0) + math.exp(-2.0)))
    assert ln == pytest.approx(-0.5)


def test_a_server_without_logprobs_is_too_old(stand_in):
    stand_in.with_logprobs = False
    backend = OllamaBackend("stand-in-model")
    with pytest.raises(BackendError, match=r"server too old to return logprobs \(needs Ollama ≥ 0\.12\.11\)"):
        backend.judge(SYSTEM, ["content\nTag: a"])


def test_a_slow_server_times_out_with_a_clear_message(stand_in):
    stand_in.chat_delay = 1.5
    backend = OllamaBackend("stand-in-model", timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(
        BackendError, match=r"did not answer /api/chat for 'stand-in-model' within the 0\.3 s timeout.*LLM4TAG_OLLAMA_TIMEOUT"
    ):
        backend.judge(SYSTEM, ["content\nTag: a"])
    assert time.perf_counter() - started < 1.4


def test_timeout_comes_from_the_environment(stand_in, monkeypatch):
    monkeypatch.setenv("LLM4TAG_OLLAMA_TIMEOUT", "0.25")
    stand_in.chat_delay = 1.0
    backend = OllamaBackend("stand-in-model")
    assert backend.timeout == 0.25
    with pytest.raises(BackendError, match="0.25 s timeout"):
        backend.select_tags(SYSTEM, "x", ["a"], 1)


def test_parallel_judgments_keep_their_own_results(stand_in, monkeypatch):
    monkeypatch.setenv("LLM4TAG_OLLAMA_PARALLEL", "3")

    def per_item(user: str) -> list[tuple[str, float]]:
        # Each item gets its own numbers, so a swapped answer cannot go unnoticed.
        item = int(re.search(r"item (\d+)", user).group(1))
        base = YES_TOP if MARKER in user else NO_TOP
        return [(t, lp - 0.05 * item if t == base[0][0] else lp) for t, lp in base]

    stand_in.top_for = per_item
    stand_in.chat_delay = 0.15
    backend = OllamaBackend("stand-in-model")
    prompts = {i: f"content of item {i} {MARKER if i % 2 else ''}\nTag: t{i}" for i in range(8)}
    results: dict[int, float] = {}
    errors: list[BaseException] = []

    def work(i: int):
        try:
            results[i] = backend.judge(SYSTEM, [prompts[i]])[0].p_yes
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    for i in range(8):
        assert results[i] == pytest.approx(expected_p_yes(per_item(prompts[i])), abs=1e-12), i
        assert (results[i] > 0.5) == bool(i % 2)
    assert len({round(p, 12) for p in results.values()}) == 8
    assert 2 <= stand_in.max_in_flight <= 3  # ran in parallel, never above the limit


# -- through load_backend and the tagging graph ---------------------------------------------------


def test_load_backend_builds_an_ollama_backend(stand_in, fresh_backends):
    backend = load_backend("ollama:test-model")
    assert isinstance(backend, OllamaBackend) and backend.spec == "ollama:test-model"
    assert load_backend("ollama:test-model") is backend


def test_tagging_graph_runs_on_the_ollama_backend(stand_in, fresh_backends, small_kb_dir):
    from agent import Context, graph
    from knowledge_base.demo import demo_examples

    def first_selected_is_relevant(user: str) -> list[tuple[str, float]]:
        tag = re.findall(r"^Tag: (.+)$", user, flags=re.M)[-1].strip()
        return YES_TOP if stand_in.selected and tag == stand_in.selected[0] else NO_TOP

    stand_in.top_for = first_selected_is_relevant
    ctx = Context(kb_dir=str(small_kb_dir), backend="ollama:test-model", budget=10, max_tags=3)
    result = graph.invoke({"content": demo_examples()[0]["text"]}, context=ctx)

    candidates = [c["tag"] for c in result["candidates"]]
    (selection_request,) = [b for b in stand_in.chats() if "format" in b]
    assert selection_request["format"]["items"]["enum"] == candidates
    assert selection_request["format"]["maxItems"] == 3
    selection = result["selection"]
    assert selection["backend"] == f"ollama · test-model @ {stand_in.host}"
    assert selection["rejected"] == ["not-a-candidate"]
    assert any("outside the candidate set" in n for n in result["notes"])
    assert selection["tags"][:2] == stand_in.selected and set(selection["tags"]) <= set(candidates)

    judged = [j["tag"] for j in result["judgments"]]
    # every likely candidate is judged: the generated tags, then recall's top five not among them
    assert judged[: len(selection["tags"])] == selection["tags"]
    assert judged[len(selection["tags"]) :] == [t for t in candidates[:5] if t not in selection["tags"]]
    assert len([b for b in stand_in.chats() if b.get("logprobs")]) == len(judged)
    by_tag = {j["tag"]: j["p_yes"] for j in result["judgments"]}
    assert by_tag[stand_in.selected[0]] == round(expected_p_yes(YES_TOP), 4)
    assert all(by_tag[t] == round(expected_p_yes(NO_TOP), 4) for t in judged[1:])
    # threshold 0.5: only the tag the stand-in judged relevant survives, with its confidence
    assert [(t["tag"], t["confidence"]) for t in result["tags"]] == [(stand_in.selected[0], round(expected_p_yes(YES_TOP), 4))]


def test_a_node_whose_model_call_fails_once_is_retried_and_the_failure_is_noted(stand_in, fresh_backends, small_kb_dir):
    from agent import Context, graph
    from knowledge_base.demo import demo_examples

    ctx = Context(kb_dir=str(small_kb_dir), backend="ollama:test-model", budget=10, max_tags=3, threshold=0.0)
    load_backend("ollama:test-model")  # start-up checks done: the next chat (generation) fails once
    stand_in.fail_chats = 1
    result = graph.invoke({"content": demo_examples()[0]["text"]}, context=ctx)
    generations = [b for b in stand_in.chats() if "format" in b]
    assert len(generations) == 2, "the generate node ran again after the 503"
    assert result["selection"]["tags"] and result["tags"]
    (note,) = [n for n in result["notes"] if n.startswith("generate: attempt 1 failed")]
    assert "503" in note and "retried" in note

    # a failure another try cannot fix is not retried: the run ends with its message
    stand_in.fail_chats = 0
    stand_in.with_logprobs = False  # a server too old to return logprobs
    before = len(stand_in.chats())
    with pytest.raises(BackendError, match="too old"):
        graph.invoke({"content": demo_examples()[1]["text"]}, context=ctx)
    assert len([b for b in stand_in.chats()[before:] if b.get("logprobs")]) == 1


def test_a_server_that_keeps_failing_fails_the_run_after_three_attempts(stand_in, fresh_backends, small_kb_dir):
    from agent import Context, graph
    from knowledge_base.demo import demo_examples

    ctx = Context(kb_dir=str(small_kb_dir), backend="ollama:test-model", budget=10, max_tags=3)
    load_backend("ollama:test-model")
    stand_in.fail_chats = 100
    with pytest.raises(BackendError, match="503"):
        graph.invoke({"content": demo_examples()[0]["text"]}, context=ctx)
    assert len([b for b in stand_in.chats() if "format" in b]) == 3 and stand_in.fail_chats == 97  # three attempts, each refused


def test_the_cli_reaches_the_server_before_loading_the_knowledge_base(small_kb_dir, tmp_path, monkeypatch, fresh_backends):
    """A closed port is reported before the knowledge base, its encoder and the graph are loaded."""
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from agent import runtime
    from ui.cli import main

    kb = tmp_path / "kb"
    shutil.copytree(small_kb_dir, kb, ignore=shutil.ignore_patterns(".write.lock"))
    host = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OLLAMA_HOST", host)
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "a web browser for the terminal"}\n')
    for command in (["tag", "a web browser for the terminal"], ["index", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")]):
        r = CliRunner().invoke(main, ["--kb", str(kb), *command, "--backend", "ollama:stand-in-model"])
        assert r.exit_code == 1 and "not reachable" in r.output and host in r.output, r.output
        assert str(Path(kb).resolve()) not in runtime._runtimes, command  # the knowledge base was never opened


def test_a_tagger_pool_sends_several_contents_to_the_server_at_once(stand_in, fresh_backends, small_kb_dir, monkeypatch):
    """With an Ollama backend ``TaggerPool`` is threads in this process: several contents are in
    flight at once, never more requests than ``LLM4TAG_OLLAMA_PARALLEL``, and each content gets
    the tags it gets when tagged alone."""
    from agent import Context, tagging
    from agent.workers import TaggerPool
    from knowledge_base.demo import demo_examples

    monkeypatch.setenv("LLM4TAG_OLLAMA_PARALLEL", "4")

    def by_tag(user: str) -> list[tuple[str, float]]:  # relevance fixed per tag, whatever else is in flight
        tag = re.findall(r"^Tag: (.+)$", user, flags=re.M)[-1].strip()
        return YES_TOP if sum(map(ord, tag)) % 3 == 0 else NO_TOP

    stand_in.top_for = by_tag
    texts = [ex["text"] for ex in demo_examples()[:6]]
    ctx = Context(kb_dir=str(small_kb_dir), backend="ollama:test-model", budget=10, max_tags=3, use_cache=False)
    alone = [tagging.tag(t, context=ctx) for t in texts]
    assert stand_in.max_selections_in_flight == 1

    stand_in.chat_delay = 0.1
    stand_in.max_in_flight = 0
    with TaggerPool(3, ctx) as pool:
        assert pool.kind == "threads"
        together = [f.result(timeout=120) for f in [pool.submit(t) for t in texts]]
    assert stand_in.max_selections_in_flight >= 2  # contents overlapped on the server
    assert 2 <= stand_in.max_in_flight <= 4
    for one, other in zip(alone, together):
        assert [(t["tag"], t["confidence"]) for t in other["tags"]] == [(t["tag"], t["confidence"]) for t in one["tags"]]
        assert other["selection"]["tags"] == one["selection"]["tags"]
    assert any(r["tags"] for r in together)
