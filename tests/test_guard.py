"""Issue 15 items 6 and 7: nobody let in. The Gradio app needs a token beyond loopback like the
REST server, and a loopback REST server without a token refuses DNS-rebinding requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent import Context

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["--host", "0.0.0.0"], ["--share"]])
def test_app_refuses_to_serve_others_without_a_token(small_kb_dir, args):
    # a subprocess: before the fix the app started serving (and this would time out)
    done = subprocess.run(
        [sys.executable, "-m", "ui.cli", "--kb", str(small_kb_dir), "app", "--port", "7999", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "LLM4TAG_HOME": "/tmp/l4t-home"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "without a token" in done.stderr and "--token" in done.stderr and "Traceback" not in done.stderr


def test_gated_app_needs_the_token_for_page_api_and_mcp(small_kb_dir):
    from ui.app import build_app, guarded_app

    demo = build_app(str(small_kb_dir))
    with TestClient(guarded_app(demo, "s3cret", mcp=True)) as c:
        for method, path in [
            ("get", "/"),
            ("get", "/config"),
            ("post", "/gradio_api/call/learn"),
            ("get", "/gradio_api/mcp/sse"),
            ("post", "/gradio_api/mcp/messages/"),
            ("get", "/gradio_api/info"),
        ]:
            response = getattr(c, method)(path)
            assert response.status_code == 401, (path, response.status_code)
            assert "token" in response.json()["detail"]
        assert c.post("/gradio_api/call/learn", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/config", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        opened = c.get("/?token=s3cret")  # a browser opens the page once with the token ...
        assert opened.status_code == 200 and "llm4tag_token" in opened.headers.get("set-cookie", "")
        assert c.get("/config").status_code == 200  # ... and its cookie carries it afterwards


def test_loopback_rest_without_token_refuses_other_hosts_and_origins(small_kb_dir):
    from ui.rest import create_app

    app = create_app(str(small_kb_dir), Context(budget=5), local_only=True)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/health", headers={"Origin": "http://localhost:3000"}).status_code == 200
        rebound = c.post("/v1/learn", json={"text": "x", "correct": ["y"]}, headers={"Host": "attacker.example:8000"})
        assert rebound.status_code == 403 and "attacker.example" in rebound.json()["detail"]
        cross = c.post("/v1/learn", json={"text": "x", "correct": ["y"]}, headers={"Origin": "http://attacker.example"})
        assert cross.status_code == 403 and "--token" in cross.json()["detail"]
        assert c.get("/health", headers={"Origin": "null"}).status_code == 403


def test_serve_on_loopback_without_token_guards_host_and_origin(small_kb_dir, monkeypatch):
    import uvicorn

    from ui.rest import serve

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))  # capture instead of listening
    serve(str(small_kb_dir), host="127.0.0.1", port=8123, context=Context(budget=5))
    with TestClient(served["app"], base_url="http://127.0.0.1:8123") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"Host": "rebound.example"}).status_code == 403


def test_app_without_a_token_refuses_rebound_requests_to_page_api_and_mcp(small_kb_dir):
    """Issue 31 (1): a page elsewhere that rebinds its name to 127.0.0.1 reached the app's learn and MCP."""
    from ui.app import build_app, guarded_app

    demo = build_app(str(small_kb_dir))
    with TestClient(guarded_app(demo, None, mcp=True), base_url="http://127.0.0.1:7860") as c:
        assert c.get("/config").status_code == 200
        assert c.get("/config", headers={"Origin": "http://localhost:7860"}).status_code == 200
        rebound = {"Host": "evil.example:7860", "Origin": "http://evil.example:7860"}
        for method, path in [("post", "/gradio_api/call/learn"), ("post", "/gradio_api/mcp/"), ("get", "/"), ("get", "/config")]:
            response = getattr(c, method)(path, headers=rebound)
            assert response.status_code == 403, (path, response.status_code)
            assert "access-control-allow-origin" not in response.headers
        cross = c.post("/gradio_api/call/learn", json={"data": ["x", ["y"], []]}, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "--token" in cross.json()["detail"]


def test_callers_cannot_choose_a_model_file_only_a_backend_the_operator_allowed(small_kb_dir, monkeypatch, tmp_path):
    """Issue 31 (2): ``backend=llamacpp:/etc/shadow`` was an existence oracle and each spelling of a
    model path loaded another copy."""
    import gradio as gr

    from agent.served import allowed_backends, check_backend
    from knowledge_base.errors import InputError
    from ui.app import TaggingApp

    monkeypatch.delenv("LLM4TAG_BACKEND", raising=False)
    monkeypatch.delenv("LLM4TAG_ALLOWED_BACKENDS", raising=False)
    app = TaggingApp(str(small_kb_dir))
    answers = []
    for path in ("/etc/shadow", "/no/such/file.gguf"):
        with pytest.raises(gr.Error) as refused:
            app.tag("A text", backend=f"llamacpp:{path}")
        answers.append(str(refused.value).replace(path, "PATH"))
        assert "not one this server allows" in str(refused.value) and "LLM4TAG_ALLOWED_BACKENDS" in str(refused.value)
    assert answers[0] == answers[1]  # the same answer whether the file exists or not: no oracle
    with pytest.raises(InputError):
        app.context(0.5, "multi", 1, 0, False, "ollama:other")
    # the operator allows a model at start; a caller may then pick it, in any spelling, and gets one spec
    model = tmp_path / "models" / "m.gguf"
    monkeypatch.setenv("LLM4TAG_ALLOWED_BACKENDS", f"llamacpp:{model}, ollama:qwen2.5:7b")
    assert allowed_backends() == ["llamacpp", f"llamacpp:{model}", "ollama:qwen2.5:7b"]
    assert check_backend(f"llamacpp:{tmp_path}/models/./m.gguf") == f"llamacpp:{model}"
    assert check_backend("ollama:qwen2.5:7b") == "ollama:qwen2.5:7b" and check_backend("") is None
    assert app.context(0.5, "multi", 1, 0, False, f"llamacpp:{tmp_path}/models/../models/m.gguf").backend == f"llamacpp:{model}"


def test_the_app_api_uses_the_knowledge_bases_tuned_threshold_by_default(trained_kb_dir, monkeypatch, tmp_path):
    """Issue 27: the app's API/MCP tag tool passed threshold=0.5 and so ignored the tuned one."""
    import shutil

    from agent.runtime import runtime_for
    from ui.app import TaggingApp

    trained_kb_dir = shutil.copytree(trained_kb_dir, tmp_path / "kb", ignore=shutil.ignore_patterns(".write.lock"))  # tagging caches in it

    monkeypatch.setenv("LLM4TAG_USE_GENERATION", "false")
    monkeypatch.setenv("LLM4TAG_USE_CALIBRATION", "false")
    tuned = runtime_for(str(trained_kb_dir)).threshold(Context.from_env(kb_dir=str(trained_kb_dir)))
    assert tuned != 0.5
    result = TaggingApp(str(trained_kb_dir)).tag("A graphical editor for vector drawings in SVG format, with layers and export to PNG.")
    assert result["tags"] and all(t["confidence"] >= tuned for t in result["tags"])
    assert all(t["confidence"] < tuned for t in result["below_threshold"])


def test_a_langgraph_server_run_cannot_pick_a_folder_a_model_or_turn_on_writes(kb_dir, tmp_path, monkeypatch):
    """Issue 31 (2): on ``langgraph dev`` a run's context created any folder and wrote tags."""
    from agent.served import ServedContext, graph
    from knowledge_base.errors import InputError, KnowledgeBaseError

    monkeypatch.setenv("LLM4TAG_KB_DIR", str(kb_dir))
    monkeypatch.delenv("LLM4TAG_SERVED_WRITES", raising=False)
    elsewhere = tmp_path / "deep" / "dir"
    with pytest.raises(InputError, match="not the knowledge base this server serves"):
        graph.invoke({"content": "A text"}, context={"kb_dir": str(elsewhere)})
    assert not elsewhere.exists() and not (tmp_path / "deep").exists()
    with pytest.raises(InputError, match="not one this server allows"):
        graph.invoke({"content": "A text"}, context={"backend": "llamacpp:/etc/shadow"})
    for name in ("write_back", "review"):
        with pytest.raises(InputError, match="LLM4TAG_SERVED_WRITES"):
            ServedContext(**{name: True})
    monkeypatch.setenv("LLM4TAG_SERVED_WRITES", "true")
    assert ServedContext(write_back=True, kb_dir=f"{kb_dir}/.").kb_dir == str(kb_dir)
    out = graph.invoke(
        {"content": "A graphical editor for vector drawings"}, context={"use_generation": False, "use_calibration": False, "threshold": 0.0}
    )
    assert out["tags"]  # the operator's knowledge base, without naming it
    # in-process callers name a folder, but only loaders create a knowledge base
    from agent import tagging

    with pytest.raises(KnowledgeBaseError, match="there is no knowledge base"):
        tagging.tag("A text", context=Context(kb_dir=str(elsewhere), use_generation=False, use_calibration=False))
    assert not elsewhere.exists()


def test_the_app_refuses_a_lone_surrogate_in_a_json_call_clearly(small_kb_dir):
    """``bench/hostile_corpus.py``: a Gradio API call whose JSON held a lone surrogate got a bare 500
    (or a dropped connection); the app now answers 400 with what to send instead."""
    from ui.app import build_app, guarded_app

    demo = build_app(str(small_kb_dir))
    with TestClient(guarded_app(demo, None, mcp=True), base_url="http://127.0.0.1:7860") as c:
        for body in (b'{"data": ["chess \\udc80 server", 5]}', b'{"data": ["\\ud83d"], "x": {"\\udfff": 1}}'):
            refused = c.post("/gradio_api/call/search_tags", content=body, headers={"content-type": "application/json"})
            assert refused.status_code == 400 and "lone surrogate" in refused.json()["detail"], refused.text
        not_utf8 = c.post("/gradio_api/call/search_tags", content=b'{"data": ["\xff"]}', headers={"content-type": "application/json"})
        assert not_utf8.status_code == 400 and "not UTF-8" in not_utf8.json()["detail"]
        for body in (b'{"data": Infinity}', b'{"data": ["x", "multi", -Infinity, 5]}', b'{"data": ["x", NaN]}'):  # once a 500
            refused = c.post("/gradio_api/call/tag", content=body, headers={"content-type": "application/json"})
            assert refused.status_code == 400 and "not JSON" in refused.json()["detail"], refused.text
        rpc = c.post(
            "/gradio_api/mcp/",
            content=b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "\udc80"}}',
            headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
        )
        assert rpc.status_code == 400 and rpc.json()["id"] == 7 and "lone surrogate" in rpc.json()["error"]["message"]
        paired = c.post(
            "/gradio_api/call/search_tags", content=b'{"data": ["chess \\ud83d\\ude00", 5]}', headers={"content-type": "application/json"}
        )
        assert paired.status_code == 200 and paired.json()["event_id"]  # a surrogate pair is a character: the call goes through
        # the app's MCP endpoint streams its answers: a checked body must not end the stream (it once did: "peer closed connection")
        started = c.post(
            "/gradio_api/mcp/",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
            },
            headers={"accept": "application/json, text/event-stream"},
        )
        assert started.status_code == 200 and '"serverInfo"' in started.text, started.text[:300]
