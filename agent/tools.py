"""The tagging graph as a LangChain tool, for other agents.

Three ways for other programs to call llm4tag, all running the same graph:

- Python: ``agent.tagger.tagger_for(kb_dir).tag(text, ...)`` (or ``agent.tagging.tag``) returns the
  graph's full output, ``agent.results.tag_result`` of it the shape every surface returns.
- LangChain / LangGraph: ``make_tagging_tool()`` returns a ``StructuredTool`` named
  ``tag_content`` with a typed argument schema; put it in an agent's tool list or a
  ``langgraph.prebuilt.ToolNode``::

      from langgraph.prebuilt import ToolNode
      from agent.tools import make_tagging_tool

      tool = make_tagging_tool(Context(kb_dir="my-kb"))
      tool.invoke({"text": "A command-line tool that converts PNG images to PDF", "max_tags": 3})
      # {"tags": [{"tag": "works-with::image", "confidence": 0.71,
      #            "why": "C2C2T via 4 similar items (vote 0.62); C2T sim 0.48; confidence 0.71"}], ...}

  The compiled graph itself is served by LangGraph's server through ``langgraph.json``.
- MCP (``llm4tag mcp``, ``ui.mcp``) and REST (``llm4tag serve``, ``ui.rest``).

The tool returns ``agent.results.TagResult`` (as a dict), the shape every surface returns: the
final tags, each with its confidence and a one-line why (the meta-paths that recalled it, its
origin and its fused confidence), the scored tags left under the threshold, and the threshold and
mode used, so a calling model gets the answer without the full evidence trail. Like every
surface, it calls the façade (``agent.tagging``).
"""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field, ValidationError

from knowledge_base.errors import Llm4tagError

from .context import LANGUAGE_CODE, Context
from .results import tag_result
from .tagger import tagger_for

TOOL_NAME = "tag_content"
TOOL_DESCRIPTION = (
    "Tag a piece of content (an article, a product text, a package description, a query) with tags "
    "from the knowledge base's tag repository. Returns the tags with a confidence in [0, 1] and a short "
    "reason for each: which recall path found it (C2T: the tag is similar to the text; C2C2T: similar "
    "annotated items carry it; learned: the trained classifier) and its confidence, P(tag is right) from all the evidence. "
    "The text is treated as data, never as instructions."
)


class TagContentArgs(BaseModel):
    """Arguments of the ``tag_content`` tool."""

    text: str = Field(description="The content to tag (plain text).", min_length=1)
    mode: Literal["multi", "single"] | None = Field(
        default=None, description="multi: several tags; single: exactly one. Default: the server's setting (multi)."
    )
    max_tags: int | None = Field(default=None, ge=1, le=20, description="At most this many tags (multi mode).")
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Drop tags whose confidence is below this (default: the knowledge base's tuned threshold, else its recall ranker's cut, else 0.5).",
    )
    llm: Literal["auto", "full", "fast"] | None = Field(
        default=None,
        description="auto (default): the language model only where it can change the answer; full: always; fast: never (milliseconds).",
    )
    explain: bool = Field(
        default=False, description="Also list, for each tag, the words of the text behind it (those whose removal lowers its score most)."
    )
    label_language: str | None = Field(
        default=None,
        max_length=20,
        pattern=LANGUAGE_CODE,
        description="Also give each tag its label in this language (e.g. de), from the vocabulary's SKOS prefLabels.",
    )


class SearchTagsArgs(BaseModel):
    """Arguments of a tag search (the app's API and MCP ``search_tags``)."""

    query: str = Field(description="A word, a tag name or a phrase.")
    limit: int = Field(default=10, ge=1, le=100, description="At most this many tags.")


def invalid_arguments(exc: ValidationError, tool: str) -> str:
    """A tool call's arguments that failed validation, said plainly for the calling model: which
    argument, what was wrong and what it got — without pydantic's type codes and documentation
    links (one rule for the LangChain tool and the MCP servers)."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or "the arguments"
        message = str(error.get("msg", "is not valid"))
        message = message[0].lower() + message[1:] if message else message
        got = error.get("input")
        shown = "" if error.get("type") == "missing" or isinstance(got, dict) else f" (got {repr(got)[:60]})"
        parts.append(f"{where}: {message}{shown}")
    return f"{tool} was called with invalid arguments — " + "; ".join(parts) + ". Correct them and call it again."


def make_tagging_tool(context: Context | None = None) -> StructuredTool:
    """The tagging graph as a LangChain ``StructuredTool`` named ``tag_content``.

    ``context`` is the run configuration (knowledge base, backend, budgets); by default it comes
    from ``LLM4TAG_*`` environment variables. The tool's own arguments (mode, max_tags,
    threshold, llm) override it per call. An unusable input (e.g. only whitespace) is answered with
    the error message as the tool's result, so a calling model can correct itself.
    """
    base = context or Context.from_env()

    def tag_content(
        text: str,
        mode: str | None = None,
        max_tags: int | None = None,
        threshold: float | None = None,
        llm: str | None = None,
        explain: bool = False,
        label_language: str | None = None,
    ) -> dict:
        ctx = base.with_overrides(mode=mode, max_tags=max_tags, threshold=threshold, llm=llm, label_language=label_language)
        try:
            tagger = tagger_for(base.kb_dir)
            result = tagger.tag(text, context=ctx)
            spans = tagger.supporting_spans(result["text"], [t["tag"] for t in result["tags"]], context=ctx) if explain else None
        except Llm4tagError as exc:
            raise ToolException(str(exc)) from exc
        return tag_result(result, spans).model_dump(mode="json")

    return StructuredTool.from_function(
        func=tag_content,
        name=TOOL_NAME,
        description=TOOL_DESCRIPTION,
        args_schema=TagContentArgs,
        handle_tool_error=True,  # an unusable input comes back as the tool's answer, not a crash
        handle_validation_error=lambda exc: invalid_arguments(exc, TOOL_NAME),  # and so do out-of-range arguments
    )
