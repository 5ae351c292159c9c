"""One text, every surface: the same tags, threshold, mode and shape (issue 27).

The façade, the LangChain tool, the page's API (the function the app's MCP tool serves too),
REST, the CLI and the stdio MCP server each tag the same text on a copy of the trained knowledge
base, whose tuned threshold is not the 0.5 default (a surface that passed its own default would
show here), with no option but fused recall (``llm: fast``, milliseconds, deterministic), and
must return the same ``agent.results.TagResult``. LangGraph's own server is compared in
``tests/test_langgraph_server.py``, which starts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from starlette.testclient import TestClient

from agent import Context, tagging
from agent.results import TagResult, tag_result
from agent.runtime import runtime_for
from agent.tools import make_tagging_tool
from conftest import copy_kb
from ui.app import TaggingApp
from ui.cli import main
from ui.rest import create_app

ROOT = Path(__file__).resolve().parents[1]
TEXT = "A graphical editor for vector drawings in SVG format, with layers and export to PNG."


@pytest.fixture(scope="module")
def kb_dir(trained_kb_dir, tmp_path_factory) -> Path:
    return copy_kb(trained_kb_dir, tmp_path_factory.mktemp("surfaces") / "kb")


def comparable(answer: dict) -> dict:
    """A surface's answer as a TagResult (REST adds its own fields around it)."""
    return TagResult.model_validate({k: answer[k] for k in TagResult.model_fields if k in answer}).model_dump(mode="json")


async def _mcp_tag(kb_dir: Path) -> dict:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ui.cli", "--kb", str(kb_dir), "mcp"], env=dict(os.environ), cwd=str(ROOT)
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("tag", {"text": TEXT, "llm": "fast"})
            assert not result.isError, result.content
            return result.structuredContent


def test_every_surface_returns_the_same_result_for_the_same_text(kb_dir):
    directory = str(kb_dir)
    ctx = Context.from_env(kb_dir=directory, llm="fast")
    tuned = runtime_for(directory).threshold(ctx)
    assert tuned != 0.5  # the knowledge base's own threshold, so a surface passing 0.5 would differ
    expected = tag_result(tagging.tag(TEXT, context=ctx)).model_dump(mode="json")
    assert expected["threshold"] == tuned and expected["mode"] == "multi" and expected["llm"] is False
    assert expected["tags"] and all(t["confidence"] >= tuned for t in expected["tags"])
    assert all(t["confidence"] < tuned for t in expected["below_threshold"])
    answers = {
        "LangChain tool": make_tagging_tool(Context.from_env(kb_dir=directory)).invoke({"text": TEXT, "llm": "fast"}),
        "page API and app MCP": TaggingApp(directory).tag(TEXT, llm="fast"),
    }
    with TestClient(create_app(directory)) as client:
        response = client.post("/v1/tag", json={"text": TEXT, "llm": "fast"})
        assert response.status_code == 200, response.text
        answers["REST"] = response.json()
    cli = CliRunner().invoke(main, ["--kb", directory, "tag", TEXT, "--llm", "fast", "--json"])
    assert cli.exit_code == 0, cli.output
    answers["CLI"] = json.loads(cli.output)
    answers["stdio MCP"] = asyncio.run(asyncio.wait_for(_mcp_tag(kb_dir), timeout=600))
    for surface, answer in answers.items():
        assert comparable(answer) == expected, surface
    # each of them returns exactly that shape; REST adds its own fields around it
    for surface, answer in answers.items():
        extra = set(answer) - set(TagResult.model_fields)
        assert extra == ({"id", "text_sha256", "candidates", "seconds", "details"} if surface == "REST" else set()), surface
