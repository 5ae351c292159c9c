"""The LangChain tool inside a real LangGraph graph, and the langgraph.json that serves the tagging graph."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
import pytest

from agent import Context
from agent.explanation import why as explain_tag
from agent.results import TagResult, tag_result
from agent.tools import TOOL_NAME, TagContentArgs, make_tagging_tool
from knowledge_base.demo import demo_examples

ROOT = Path(__file__).resolve().parents[1]
TEXT = demo_examples()[0]["text"]


def test_tool_has_a_typed_argument_schema():
    tool = make_tagging_tool(Context())
    assert tool.name == TOOL_NAME == "tag_content"
    assert tool.args_schema is TagContentArgs
    schema = tool.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"text", "mode", "max_tags", "threshold", "llm", "explain", "label_language"}
    assert schema["required"] == ["text"]
    assert "confidence" in tool.description


def test_tool_runs_inside_a_langgraph_tool_node(small_kb_dir):
    tool = make_tagging_tool(Context(kb_dir=str(small_kb_dir), budget=5, use_knowledge=False, max_examples=1))
    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode([tool]))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    app = builder.compile()
    call = {"name": "tag_content", "args": {"text": TEXT, "max_tags": 2, "threshold": 0.0}, "id": "call-1", "type": "tool_call"}
    out = app.invoke({"messages": [AIMessage(content="", tool_calls=[call])]})
    message = out["messages"][-1]
    assert isinstance(message, ToolMessage) and message.tool_call_id == "call-1" and message.status == "success"
    payload = json.loads(message.content)
    assert TagResult.model_validate(payload).model_dump(mode="json") == payload  # the shape every surface returns
    assert 1 <= len(payload["tags"]) <= 2 and payload["candidates_considered"] <= 5 and payload["threshold"] == 0.0
    for t in payload["tags"]:
        assert t["words"] is None and t["label"] is None
        assert 0.0 <= t["confidence"] <= 1.0
        assert t["why"].endswith(f"confidence {t['confidence']:.2f}")
        assert "C2T" in t["why"] or "C2C2T" in t["why"] or "match" in t["why"]
    # with explain, each tag lists the words of the text behind it
    explained = tool.invoke({"text": TEXT, "max_tags": 2, "threshold": 0.0, "llm": "fast", "explain": True})
    assert explained["tags"] and all(isinstance(t["words"], list) for t in explained["tags"])
    assert any(t["words"] for t in explained["tags"]) and all(w in TEXT for t in explained["tags"] for w in t["words"])


def test_unusable_input_comes_back_as_the_tools_answer(small_kb_dir):
    tool = make_tagging_tool(Context(kb_dir=str(small_kb_dir)))
    answer = tool.invoke({"text": "  \n "})
    assert isinstance(answer, str) and "empty" in answer


def test_why_names_the_paths_and_the_judge():
    candidate = {
        "tag": "works-with::image",
        "evidence": [
            {"path": "C2C2T", "score": 0.62, "via": [{"id": f"pkg-{i}", "similarity": 0.7} for i in range(4)]},
            {"path": "C2T", "score": 0.41, "via": []},
        ],
    }
    assert explain_tag({"tag": "works-with::image", "confidence": 0.71, "origin": "llm"}, candidate) == (
        "C2C2T via 4 similar items (vote 0.62); C2T sim 0.41; confidence 0.71"
    )
    assert explain_tag({"tag": "works-with::image", "confidence": 0.71, "origin": "recall"}, candidate).endswith(
        "ranked high by recall (the LLM did not choose it); confidence 0.71"
    )
    one = {"tag": "x", "evidence": [{"path": "C2C2T", "score": 1.0, "via": [{"id": "a", "similarity": 0.9}]}]}
    assert explain_tag({"tag": "x", "confidence": None, "origin": "history"}, one) == (
        "C2C2T via 1 similar item (vote 1.00); kept because similar items carry it; no confidence (no judge, no ranker)"
    )
    result = {
        "tags": [{"tag": "x", "confidence": 0.9, "origin": "llm", "rank": 1, "paths": ["C2C2T"]}],
        "candidates": [one],
        "judgments": [{"tag": "x", "confidence": 0.9}, {"tag": "y", "confidence": 0.2}, {"tag": "z", "confidence": 0.4}],
        "content_id": "c",
        "notes": ["n"],
        "threshold": 0.5,
        "mode": "single",
        "route": {"mode": "auto", "llm": False, "reason": "r"},
    }
    assert tag_result(result).model_dump(exclude_none=True) == {
        "content_id": "c",
        "tags": [
            {
                "tag": "x",
                "confidence": 0.9,
                "rank": 1,
                "description": "",
                "paths": ["C2C2T"],
                "origin": "llm",
                "why": "C2C2T via 1 similar item (vote 1.00); confidence 0.90",
            }
        ],
        "below_threshold": [{"tag": "z", "confidence": 0.4}, {"tag": "y", "confidence": 0.2}],
        "threshold": 0.5,
        "mode": "single",
        "llm": False,
        "route": {"mode": "auto", "llm": False, "reason": "r"},
        "candidates_considered": 1,
        "notes": ["n"],
    }


def test_langgraph_json_points_at_the_compiled_graph():
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert "." in config["dependencies"]
    assert config["graphs"]
    for name, spec in config["graphs"].items():
        assert len(spec["description"]) > 40, "LangGraph's server shows the description as the MCP tool's"
        path, _, variable = spec["path"].rpartition(":")
        file = (ROOT / path).resolve()
        assert file.is_file(), spec
        # LangGraph's server loads a graph file under a made-up module name, outside its package
        module_name = f"lg_{uuid.uuid4().hex}"
        loader_spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        graph = getattr(module, variable)
        assert isinstance(graph, CompiledStateGraph), name
        assert graph.get_graph().nodes.keys() >= {
            "prepare",
            "recall",
            "examples",
            "knowledge",
            "generate",
            "calibrate",
            "review",
            "record_review",
            "write_back",
        }


def test_out_of_range_arguments_come_back_plainly_on_the_tool_and_mcp(small_kb_dir):
    """A calling model that passes threshold 7 or max_tags 0 is told which argument and what was
    wrong — the tool's answer, not an exception, and no pydantic documentation link; the MCP
    server refuses the same way."""
    import asyncio

    from ui.mcp import build_server

    tool = make_tagging_tool(Context(kb_dir=str(small_kb_dir), llm="fast"))
    answer = tool.invoke({"text": "a text", "threshold": 7})
    assert answer.startswith("tag_content was called with invalid arguments — threshold: input should be less than or equal to 1 (got 7)")
    assert "pydantic" not in answer
    assert "max_tags: input should be greater than or equal to 1 (got 0)" in tool.invoke({"text": "a text", "max_tags": 0})
    server = build_server(Context(kb_dir=str(small_kb_dir)))
    with pytest.raises(Exception) as refused:
        asyncio.run(server.call_tool("search_tags", {"query": "x", "limit": 0}))
    assert "search_tags was called with invalid arguments — limit: input should be greater than or equal to 1 (got 0)" in str(refused.value)
    assert "pydantic" not in str(refused.value)
