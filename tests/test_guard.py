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
    done = subprocess.run([sys.executable, "-m", "ui.cli", "--kb", str(small_kb_dir), "app", "--port", "7999", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                                                                         "LLM4TAG_HOME": "/tmp/l4t-home"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "without a token" in done.stderr and "--token" in done.stderr and "Traceback" not in done.stderr


def test_gated_app_needs_the_token_for_page_api_and_mcp(small_kb_dir):
    from ui.app import build_app, gated_app

    demo = build_app(str(small_kb_dir))
    with TestClient(gated_app(demo, "s3cret", mcp=True)) as c:
        for method, path in [("get", "/"), ("get", "/config"), ("post", "/gradio_api/call/learn"), ("get", "/gradio_api/mcp/sse"),
                             ("post", "/gradio_api/mcp/messages/"), ("get", "/gradio_api/info")]:
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
