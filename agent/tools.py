"""The tagging graph as a LangChain tool, and the compact result every tool-facing surface returns.

Three ways for other programs to call llm4tag, all running the same graph:

- Python: ``agent.tag(text, ...)`` returns the graph's full output (see ``agent.tagging``).
- LangChain / LangGraph: ``make_tagging_tool()`` returns a ``StructuredTool`` named
  ``tag_content`` with a typed argument schema; put it in an agent's tool list or a
  ``langgraph.prebuilt.ToolNode``::

      from langgraph.prebuilt import ToolNode
      from agent.tools import make_tagging_tool

      tool = make_tagging_tool(Context(kb_dir="my-kb"))
      tool.invoke({"text": "A command-line tool that converts PNG images to PDF", "max_tags": 3})
      # {"tags": [{"tag": "works-with::image", "confidence": 0.71,
      #            "why": "C2C2T via 4 similar items (vote 0.62); C2T sim 0.48; judge P(yes)=0.71"}], ...}

  The compiled graph itself is served by LangGraph's server through ``langgraph.json``.
- MCP (``llm4tag mcp``, ``agent.mcp_server``) and REST (``llm4tag serve``, ``agent.api``).

``compact_result`` is what the tool (and the MCP ``tag`` tool) returns: only the final tags, each
with its confidence and a one-line why (the meta-paths that recalled it and the judge's P(yes)),
so a calling model gets the answer without the full evidence trail.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field

from knowledge_base.errors import Llm4tagError

from .context import Context

TOOL_NAME = "tag_content"
TOOL_DESCRIPTION = (
    "Tag a piece of content (an article, a product text, a package description, a query) with tags "
    "from the knowledge base's tag repository. Returns the tags with a confidence in [0, 1] and a short "
    "reason for each: which recall path found it (C2T: the tag is similar to the text; C2C2T: similar "
    "annotated items carry it) and the judge model's P(yes). The text is treated as data, never as instructions."
)


class TagContentArgs(BaseModel):
    """Arguments of the ``tag_content`` tool."""

    text: str = Field(description="The content to tag (plain text).", min_length=1)
    mode: Literal["multi", "single"] | None = Field(
        default=None, description="multi: several tags; single: exactly one. Default: the server's setting (multi)."
    )
    max_tags: int | None = Field(default=None, ge=1, le=20, description="At most this many tags (multi mode).")
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop tags whose confidence is below this (default 0.5)."
    )


def explain_tag(tag: dict, candidate: dict | None) -> str:
    """One line on why a tag was returned: its meta-paths with their evidence, and the judge's P(yes)."""
    parts: list[str] = []
    for ev in (candidate or {}).get("evidence", []):
        if ev["path"] == "C2C2T":
            n = len(ev.get("via") or [])
            parts.append(f"C2C2T via {n} similar item{'s' if n != 1 else ''} (vote {ev['score']:.2f})")
        elif ev["path"] == "C2T":
            parts.append(f"C2T sim {ev['score']:.2f}")
        else:
            parts.append(f"{ev['path']} sim {ev['score']:.2f}")
    if not parts:
        parts.append("chosen by the LLM")
    if tag.get("origin") == "history":
        parts.append("kept because similar items carry it")
    confidence = tag.get("confidence")
    parts.append("not calibrated" if confidence is None else f"judge P(yes)={confidence:.2f}")
    return "; ".join(parts)


def compact_tags(result: dict) -> list[dict]:
    """The final tags of a graph result as ``{"tag", "confidence", "why"}``, best first."""
    by_tag = {c["tag"]: c for c in result.get("candidates") or []}
    return [
        {"tag": t["tag"], "confidence": t["confidence"], "why": explain_tag(t, by_tag.get(t["tag"]))}
        for t in result.get("tags") or []
    ]


def compact_result(result: dict) -> dict:
    """A model-friendly summary of a graph result: tags with confidence and why, and what to know."""
    return {
        "tags": compact_tags(result),
        "candidates_considered": len(result.get("candidates") or []),
        "content_id": result.get("content_id"),
        "notes": list(result.get("notes") or []),
    }


def make_tagging_tool(context: Context | None = None) -> StructuredTool:
    """The tagging graph as a LangChain ``StructuredTool`` named ``tag_content``.

    ``context`` is the run configuration (knowledge base, backend, budgets); by default it comes
    from ``LLM4TAG_*`` environment variables. The tool's own arguments (mode, max_tags,
    threshold) override it per call. An unusable input (e.g. only whitespace) is answered with
    the error message as the tool's result, so a calling model can correct itself.
    """
    base = context or Context.from_env()

    def tag_content(text: str, mode: str | None = None, max_tags: int | None = None, threshold: float | None = None) -> dict:
        from .tagging import tag

        try:
            result = tag(text, context=base.with_overrides(mode=mode, max_tags=max_tags, threshold=threshold))
        except Llm4tagError as exc:
            raise ToolException(str(exc)) from exc
        return compact_result(result)

    return StructuredTool.from_function(
        func=tag_content,
        name=TOOL_NAME,
        description=TOOL_DESCRIPTION,
        args_schema=TagContentArgs,
        handle_tool_error=True,  # an unusable input comes back as the tool's answer, not a crash
    )
