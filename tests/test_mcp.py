"""The MCP server over stdio, driven by the official MCP client: a real subprocess, real knowledge base, real LLM."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from agent.results import TagResult
from knowledge_base import KnowledgeBase
from knowledge_base.demo import demo_examples

ROOT = Path(__file__).resolve().parents[1]


def payload(result) -> object:
    """A tool result's structured content (FastMCP wraps non-object results as {"result": ...})."""
    assert not result.isError, result.content
    data = result.structuredContent
    if data is None:
        data = json.loads(result.content[0].text)
    return data.get("result", data) if isinstance(data, dict) and set(data) == {"result"} else data


async def session_run(kb_dir: Path, known: list[str]) -> dict:
    env = {
        **os.environ,
        "LLM4TAG_BUDGET": "5",
        "LLM4TAG_MAX_TAGS": "2",
        "LLM4TAG_USE_KNOWLEDGE": "false",
        "LLM4TAG_MAX_EXAMPLES": "1",
        "LLM4TAG_THRESHOLD": "0",
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "ui.cli", "--kb", str(kb_dir), "mcp"], env=env, cwd=str(ROOT))
    seen: dict = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            seen["server"] = init.serverInfo.name
            seen["tools"] = {t.name: t for t in (await session.list_tools()).tools}
            seen["search"] = payload(await session.call_tool("search_tags", {"query": "game", "limit": 3}))
            seen["recall"] = payload(await session.call_tool("recall", {"text": demo_examples()[0]["text"], "budget": 6}))
            seen["learn"] = payload(
                await session.call_tool(
                    "learn",
                    {"text": "An MCP-taught sample about a chess engine", "correct": [known[0]], "incorrect": [known[1]], "id": "mcp-1"},
                )
            )
            seen["tag_learned_raw"] = await session.call_tool(
                "tag", {"text": "An MCP-taught sample about a chess engine", "llm": False, "explain": True}
            )
            seen["tag_learned"] = payload(seen["tag_learned_raw"])
            seen["recall_learned"] = payload(
                await session.call_tool("recall", {"text": "An MCP-taught sample about a chess engine", "budget": 6})
            )
            seen["learn_unknown"] = await session.call_tool("learn", {"text": "anything", "correct": ["no::such-tag"]})
            seen["tag_empty"] = await session.call_tool("tag", {"text": "   "})
            progress: list[tuple[float, str]] = []

            async def on_progress(done, total, message):
                progress.append((done, message))

            seen["tag"] = payload(
                await session.call_tool("tag", {"text": demo_examples()[0]["text"], "llm": "full"}, progress_callback=on_progress)
            )
            seen["progress"] = progress
            seen["change_wrong"] = await session.call_tool("change_tag", {"tag": known[1], "action": "merge", "into": "no::such-tag"})
            seen["change"] = payload(
                await session.call_tool("change_tag", {"tag": known[1], "action": "rename", "into": "renamed::by-mcp"})
            )
    return seen


def test_mcp_tools_over_stdio(small_kb_dir, tmp_path):
    kb_dir = tmp_path / "kb"
    shutil.copytree(small_kb_dir, kb_dir, ignore=shutil.ignore_patterns(".write.lock"))
    kb = KnowledgeBase(kb_dir)
    known = sorted(kb.tag_names())[:2]
    before = kb.collection("samples").count()

    seen = asyncio.run(asyncio.wait_for(session_run(kb_dir, known), timeout=900))  # a busy machine: generous

    assert seen["server"] == "llm4tag"
    assert set(seen["tools"]) == {"tag", "recall", "learn", "search_tags", "change_tag"}
    assert seen["tools"]["learn"].inputSchema["required"] == ["text", "correct"]
    assert set(seen["tools"]["tag"].inputSchema["properties"]) == {
        "text",
        "mode",
        "max_tags",
        "threshold",
        "llm",
        "review",
        "explain",
        "label_language",
    }
    assert all(tool.description for tool in seen["tools"].values())
    # tag answers in the shape every surface returns, with it as the tool's output schema and as structured content
    assert set(seen["tools"]["tag"].outputSchema["properties"]) == set(TagResult.model_fields)
    assert (
        TagResult.model_validate(seen["tag_learned_raw"].structuredContent).model_dump(mode="json")
        == seen["tag_learned_raw"].structuredContent
    )

    hits = seen["search"]
    assert 1 <= len(hits) <= 3 and "game" in hits[0]["tag"] and set(hits[0]) == {"tag", "similarity", "description"}

    recall = seen["recall"]
    assert 1 <= len(recall["candidates"]) <= 6
    assert all(c["evidence"] and c["evidence"][0]["path"] in ("C2T", "C2C2T", "match") for c in recall["candidates"])
    assert any(e["path"] == "C2C2T" and e["via"] for c in recall["candidates"] for e in c["evidence"])

    assert seen["learn"] == {"id": "mcp-1", "correct": [known[0]], "incorrect": [known[1]], "samples": before + 1, "retraining": False}
    fresh = KnowledgeBase(kb_dir)
    assert fresh.collection("samples").count() == before + 1
    sample = fresh.get_sample("mcp-1")
    assert sample.tags == (known[0],)  # its incorrect tag was renamed at the end of the session (below)

    # the verdict decides the next answer for that text, in tag and recall alike
    learned = [t["tag"] for t in seen["tag_learned"]["tags"]]
    assert learned[0] == known[0] and known[1] not in learned
    # with explain, each tag lists the words of the text behind it
    assert all(
        "words" in t and all(w in "An MCP-taught sample about a chess engine" for w in t["words"]) for t in seen["tag_learned"]["tags"]
    )
    assert seen["recall_learned"]["candidates"][0]["tag"] == known[0]
    assert any(e["path"] == "memory" for e in seen["recall_learned"]["candidates"][0]["evidence"])

    unknown = seen["learn_unknown"]
    assert unknown.isError and "no::such-tag" in unknown.content[0].text
    assert fresh.collection("samples").count() == before + 1

    assert seen["tag_empty"].isError and "empty" in seen["tag_empty"].content[0].text

    tagged = seen["tag"]
    assert 1 <= len(tagged["tags"]) <= 2 and tagged["candidates_considered"] <= 5
    # the fast answer came first, as a progress message naming fused recall's tags
    assert len(seen["progress"]) == 1 and seen["progress"][0][1].startswith("first answer (fused recall, no language model): ")
    assert tagged["llm"] is True
    assert all("confidence" in t["why"] for t in tagged["tags"])

    # a tag renamed over MCP: the history moves (the sample's wrong verdict included); a wrong action says which fits
    assert seen["change_wrong"].isError and "rename instead of merge" in seen["change_wrong"].content[0].text
    assert seen["change"]["change"] == "rename" and seen["change"]["samples"] >= 1
    renamed = KnowledgeBase(kb_dir)
    assert renamed.has_tag("renamed::by-mcp") and not renamed.has_tag(known[1])
    assert renamed.get_sample("mcp-1").incorrect_tags == ("renamed::by-mcp",)
