"""The MCP server (``llm4tag mcp``): tagging tools for other agents, over stdio, with the official ``mcp`` package.

A thin surface over the façade (``agent.tagging``), like the REST API and the Gradio page.

Tools:

- ``tag(text, mode?, max_tags?, threshold?)`` — the full pipeline; tags with confidence and why.
- ``recall(text, budget?)`` — the candidate set Φ(c) with the meta-path evidence of each candidate
  (no LLM call: fast).
- ``learn(text, correct, incorrect?, id?, replace?)`` — record a verdict; it becomes a sample and graph
  edges. An ``id`` that already holds a different text is an error unless ``replace`` is true.
- ``search_tags(query, limit?)`` — find tags in the repository by name or meaning.

Register it with an MCP client, e.g. in a client's JSON configuration::

    {"mcpServers": {"llm4tag": {"command": "llm4tag", "args": ["--kb", "/path/to/kb", "mcp"]}}}

Everything happens inside the one knowledge base the server was started with; no tool takes a
file path. The protocol owns standard output: anything else the process (or a native library)
writes to it is sent to standard error instead.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Literal

import anyio
from mcp.server.fastmcp import FastMCP
from pydantic import Field

from agent import tagging
from agent.context import Context
from agent.explanation import compact_result, evidence_parts
from agent.runtime import runtime_for
from knowledge_base.errors import UnknownTagsError

INSTRUCTIONS = (
    "llm4tag tags content with tags from a fixed tag repository. Use search_tags to find tag names, "
    "recall to see which tags are candidates for a text and why, tag to get the final tags with "
    "confidences, and learn to record which tags were right or wrong for a text (it improves later results)."
)


def build_server(context: Context | None = None) -> FastMCP:
    """A FastMCP server whose tools work on ``context.kb_dir`` (the demo knowledge base when None)."""
    base = context or Context.from_env()
    server = FastMCP("llm4tag", instructions=INSTRUCTIONS)

    @server.tool()
    async def tag(
        text: str = Field(description="The content to tag."),
        mode: Literal["multi", "single"] | None = Field(default=None, description="multi: several tags; single: exactly one."),
        max_tags: int | None = Field(default=None, ge=1, le=20, description="At most this many tags."),
        threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="Drop tags whose confidence is below this (default 0.5)."),
    ) -> dict:
        """Tag a text: tags from the repository, each with a confidence (the judge's P(yes)) and why it was chosen."""
        ctx = base.with_overrides(mode=mode, max_tags=max_tags, threshold=threshold)
        result = await anyio.to_thread.run_sync(lambda: tagging.tag(text, context=ctx))
        return compact_result(result)

    @server.tool()
    async def recall(
        text: str = Field(description="The content whose candidate tags you want."),
        budget: int | None = Field(default=None, ge=1, le=100, description="Size of the candidate set."),
    ) -> dict:
        """Recall candidate tags for a text through the content–tag graph (C2T and C2C2T meta-paths), with the evidence for each. No LLM call."""
        result = await anyio.to_thread.run_sync(lambda: tagging.recall(text, context=base.with_overrides(budget=budget)))
        candidates = []
        for c in result.to_dict()["candidates"]:
            evidence = [{"path": ev["path"], "score": round(ev["score"], 4), **({"via": [v["id"] for v in ev["via"]]} if ev["via"] else {})}
                        for ev in c["evidence"]]
            candidates.append({"tag": c["tag"], "score": round(c["score"], 4), "description": c["description"], "evidence": evidence,
                               "why": "; ".join(evidence_parts(c))})
        return {
            "strategy": result.strategy,
            "candidates": candidates,
            "similar_contents": [{"id": s.id, "similarity": round(s.similarity, 4), "tags": s.tags} for s in result.similar_contents],
            "notes": result.notes,
        }

    @server.tool()
    async def learn(
        text: str = Field(description="The content the verdict is about."),
        correct: list[str] = Field(description="Tags that are right for the text (names from the repository)."),
        incorrect: list[str] | None = Field(default=None, description="Tags that are wrong for the text."),
        id: str | None = Field(default=None, max_length=200, description="Sample id; derived from the text when omitted."),
        replace: bool = Field(default=False, description="When the id already holds a different text, replace that sample (else an error)."),
    ) -> dict:
        """Record which tags are right and wrong for a text. It becomes an annotated sample (an in-context example for similar texts) and graph edges (C2C2T recall)."""

        def run():
            try:
                return tagging.learn(text, correct, incorrect or [], sample_id=id, kb_dir=base.kb_dir, replace=replace)
            except UnknownTagsError as exc:
                raise UnknownTagsError(f"{exc}. Use search_tags to find the right names", exc.tags) from exc

        return await anyio.to_thread.run_sync(run)

    @server.tool()
    async def search_tags(
        query: str = Field(description="A word, a tag name or a phrase."),
        limit: int = Field(default=10, ge=1, le=100, description="At most this many tags."),
    ) -> list[dict]:
        """Find tags in the repository: names containing the query first, then tags nearest in meaning."""

        return await anyio.to_thread.run_sync(lambda: tagging.search_tags(query, limit, kb_dir=base.kb_dir))

    return server


def protocol_stdout() -> io.TextIOWrapper:
    """Keep the real standard output for the protocol; send every other write on fd 1 to stderr.

    Native code (llama.cpp, tokenizers) may print to file descriptor 1, which would corrupt the
    JSON-RPC stream; after this, fd 1 and ``sys.stdout`` point at standard error.
    """
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return io.TextIOWrapper(protocol, encoding="utf-8", line_buffering=True)


def run_stdio(context: Context | None = None) -> None:
    """Serve the tools over stdio until the client closes the connection."""
    from mcp.server.stdio import stdio_server

    base = context or Context.from_env()
    out = protocol_stdout()  # first: building the demo knowledge base prints progress
    runtime_for(base.kb_dir)  # fail before the handshake if the knowledge base is unusable
    server = build_server(base)

    async def main() -> None:
        async with stdio_server(stdout=anyio.wrap_file(out)) as (read_stream, write_stream):
            low = server._mcp_server  # FastMCP.run_stdio_async does the same, with sys.stdout
            await low.run(read_stream, write_stream, low.create_initialization_options())

    anyio.run(main)
