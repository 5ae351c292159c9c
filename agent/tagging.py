"""The one-call Python API: ``tag(text, ...) -> dict``.

::

    from agent import tag, Context

    result = tag("A command-line tool that converts PNG images to PDF", kb_dir="my-kb", max_tags=3)
    for t in result["tags"]:                  # best first
        print(t["tag"], t["confidence"], t["paths"])   # e.g. works-with::image 0.71 ['C2C2T', 'C2T']
    result["candidates"]   # Φ(c): every candidate with its evidence (C2T similarity, C2C2T votes and via-items)
    result["notes"]        # what a person should know (truncation, fallbacks)

The result is the tagging graph's output (``agent.state.OutputState``): ``tags``, ``candidates``,
``similar_contents``, ``examples``, ``knowledge``, ``selection``, ``judgments``, ``notes``,
``timings``, ``content_id``, ``metadata``. Settings are a ``Context`` (``context=``) and/or
keyword overrides of its fields; an empty text raises ``knowledge_base.InputError``.

The same pipeline is also served as: the compiled graph ``agent.graph.graph`` (streamable, and
served by LangGraph's server through ``langgraph.json``), a LangChain tool
(``agent.tools.make_tagging_tool``), an MCP server (``llm4tag mcp``, ``agent.mcp_server``) and a
REST API (``llm4tag serve``, ``agent.api``).
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .graph import graph


def tag(text: str, *, title: str | None = None, content_id: str | None = None, metadata: dict[str, Any] | None = None,
        context: Context | None = None, **overrides) -> dict:
    """Tag one content with the full pipeline; returns the graph's output (tags, candidates, why).

    ``overrides`` are Context fields, e.g. ``tag(text, kb_dir="kb", mode="single", threshold=0.6)``.
    """
    ctx = (context or Context.from_env()).with_overrides(**overrides)
    payload: dict[str, Any] = {"content": text}
    if title:
        payload["title"] = title
    if content_id:
        payload["content_id"] = content_id
    if metadata:
        payload["metadata"] = metadata
    return graph.invoke(payload, context=ctx)
