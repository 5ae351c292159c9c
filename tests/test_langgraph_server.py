"""LangGraph's own server (``langgraph dev`` from langgraph-cli[inmem], offline) serves the tagging
graph from ``langgraph.json``: through its HTTP API (``/runs/wait`` with a context), as an MCP
tool on its ``/mcp`` endpoint, and with a review that waits at an interrupt and is resumed with a
``Command`` — also after the server was restarted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
LANGGRAPH = Path(sys.executable).with_name("langgraph")
TEXT = "A command-line tool that converts scanned PNG images into searchable PDF documents."
FAST = {"use_generation": False, "use_calibration": False, "budget": 10, "max_tags": 3, "threshold": 0.0}

pytestmark = pytest.mark.skipif(not LANGGRAPH.exists(), reason="langgraph-cli[inmem] is not installed (pip install -e '.[server]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``langgraph dev`` process on loopback; its state folder lives in ``workdir``."""

    def __init__(self, workdir: Path, kb_dir: Path):
        self.workdir, self.kb_dir = workdir, kb_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def config(self) -> Path:
        """The repository's ``langgraph.json``, with the graph's path made absolute: the server
        resolves paths from its working folder, and its state folder (``.langgraph_api``) is
        created there, so the test runs it in a folder of its own."""
        config = json.loads((REPO / "langgraph.json").read_text())
        for spec in config["graphs"].values():
            spec["path"] = str(REPO / spec["path"])
        config["dependencies"] = [str(REPO)]
        path = self.workdir / "langgraph.json"
        path.write_text(json.dumps(config))
        return path

    def start(self) -> "Server":
        env = {
            **os.environ,
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LLM4TAG_KB_DIR": str(self.kb_dir),
            "LLM4TAG_SERVED_WRITES": "true",
            **{f"LLM4TAG_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in FAST.items()},
        }
        self.log = open(self.workdir / f"server-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [
                str(LANGGRAPH),
                "dev",
                "--config",
                str(self.config()),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-browser",
                "--no-reload",
            ],
            cwd=self.workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"langgraph dev exited: {(self.workdir / f'server-{self.port}.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError("langgraph dev did not start within 180 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # a clean stop: the in-memory runtime saves its state
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()

    def post(self, path: str, body: dict) -> dict:
        r = httpx.post(f"{self.url}{path}", json=body, timeout=300)
        assert r.status_code == 200, r.text[:2000]
        return r.json()


@pytest.fixture(scope="module")
def server_setup(small_kb_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("langgraph-server")
    kb_dir = workdir / "kb"
    shutil.copytree(small_kb_dir, kb_dir, ignore=shutil.ignore_patterns(".write.lock"))
    server = Server(workdir, kb_dir).start()
    yield server
    server.stop()


def test_the_server_tags_through_runs_wait_with_a_context(server_setup):
    out = server_setup.post(
        "/runs/wait",
        {"assistant_id": "llm4tag", "input": {"content": TEXT}, "context": {"kb_dir": str(server_setup.kb_dir), **FAST, "max_tags": 2}},
    )
    candidates = [c["tag"] for c in out["candidates"]]
    assert len(candidates) == 10 and 1 <= len(out["tags"]) <= 2
    assert all(t["tag"] in candidates and t["paths"] for t in out["tags"])
    assert out["text"] == TEXT and out["content_id"].startswith("sha1:")
    assert "cache_keys" not in out, "the output schema keeps working state out of the answer"


def test_the_server_answers_as_every_other_surface(server_setup):
    """Issue 27: LangGraph's server returns the graph's whole output; the result in it is the one
    the façade (and every other surface, tests/test_surfaces_agree.py) returns for the same text."""
    from agent import Context, tagging
    from agent.results import tag_result

    out = server_setup.post(
        "/runs/wait",
        {"assistant_id": "llm4tag", "input": {"content": TEXT}, "context": {"kb_dir": str(server_setup.kb_dir), **FAST, "llm": "fast"}},
    )
    here = tagging.tag(TEXT, context=Context.from_env(kb_dir=str(server_setup.kb_dir), **FAST, llm="fast"))
    assert tag_result(out).model_dump() == tag_result(here).model_dump()
    assert out["threshold"] == here["threshold"] and out["mode"] == "multi"


def test_a_run_cannot_name_another_folder_or_model_file(server_setup, tmp_path):
    """Issue 31 (2): a run's context.kb_dir created any folder on the server."""
    elsewhere = tmp_path / "deep" / "dir"
    for context, said in (
        ({"kb_dir": str(elsewhere)}, "not the knowledge base this server serves"),
        ({"backend": "llamacpp:/etc/shadow"}, "not one this server allows"),
    ):
        r = httpx.post(
            f"{server_setup.url}/runs/wait", json={"assistant_id": "llm4tag", "input": {"content": TEXT}, "context": context}, timeout=300
        )
        assert said in r.text, (r.status_code, r.text[:2000])
        assert "cannot load" not in r.text and "not found" not in r.text
    assert not (tmp_path / "deep").exists()


def test_the_graph_is_listed_and_called_as_an_mcp_tool(server_setup):
    import anyio
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session_calls():
        # generous timeouts: on a loaded machine the first call loads the encoder (the default 30 s failed in CI)
        client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=60.0))
        async with client, streamable_http_client(f"{server_setup.url}/mcp", http_client=client) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = (await session.list_tools()).tools
                called = await session.call_tool("llm4tag", {"content": TEXT})
                return tools, called

    tools, called = anyio.run(session_calls)
    tool = next(t for t in tools if t.name == "llm4tag")
    described = json.loads((REPO / "langgraph.json").read_text())["graphs"]["llm4tag"]["description"]
    assert tool.description == described
    assert tool.inputSchema["required"] == ["content"] and "content" in tool.inputSchema["properties"]
    assert not called.isError, called.content
    answer = called.content[0].text
    # the server's default context comes from the LLM4TAG_* environment: this knowledge base, no LLM
    assert "works-with" in answer and "'candidates'" in answer


def test_a_review_waits_on_the_server_and_is_resumed_after_a_restart(server_setup):
    server = server_setup
    thread = server.post("/threads", {})["thread_id"]
    context = {"kb_dir": str(server.kb_dir), **FAST, "review": True}
    waiting = server.post(f"/threads/{thread}/runs/wait", {"assistant_id": "llm4tag", "input": {"content": TEXT}, "context": context})
    interrupts = waiting["__interrupt__"]
    proposed = [t["tag"] for t in interrupts[0]["value"]["proposed"]]
    assert proposed and interrupts[0]["value"]["text"] == TEXT

    server.stop()
    server.port = free_port()
    server.url = f"http://127.0.0.1:{server.port}"
    server.start()

    state = httpx.get(f"{server.url}/threads/{thread}/state", timeout=30).json()
    assert state["next"] == ["review"], state
    done = server.post(
        f"/threads/{thread}/runs/wait",
        {"assistant_id": "llm4tag", "command": {"resume": {"accept": proposed[:1], "reject": proposed[1:]}}, "context": context},
    )
    assert done["review"]["status"] == "reviewed" and done["review"]["accepted"] == proposed[:1]
    from knowledge_base import KnowledgeBase

    sample = KnowledgeBase(server.kb_dir).get_sample(done["content_id"])
    assert sample is not None and list(sample.tags) == proposed[:1] and list(sample.incorrect_tags) == proposed[1:]
