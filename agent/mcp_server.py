"""The MCP server (``llm4tag mcp``): tagging tools for other agents, over stdio, with the official ``mcp`` package.

Tools:

- ``tag(text, mode?, max_tags?, threshold?)`` — the full pipeline; tags with confidence and why.
- ``recall(text, budget?)`` — the candidate set Φ(c) with the meta-path evidence of each candidate
  (no LLM call: fast).
- ``learn(text, correct, incorrect?, id?)`` — record a verdict; it becomes a sample and graph edges.
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

from knowledge_base.errors import InputError

from .context import Context
from .resources import get_knowledge_base
from .tools import compact_result

INSTRUCTIONS = (
    "llm4tag tags content with tags from a fixed tag repository. Use search_tags to find tag names, "
    "recall to see which tags are candidates for a text and why, tag to get the final tags with "
    "confidences, and learn to record which tags were right or wrong for a text (it improves later results)."
)


def build_server(context: Context | None = None) -> FastMCP:
    """A FastMCP server whose tools work on ``context.kb_dir`` (the demo knowledge base when None)."""
    base = context or Context.from_env()
    server = FastMCP("llm4tag", instructions=INSTRUCTIONS)

    def kb():
        return get_knowledge_base(base.kb_dir)

    @server.tool()
    async def tag(
        text: str = Field(description="The content to tag."),
        mode: Literal["multi", "single"] | None = Field(default=None, description="multi: several tags; single: exactly one."),
        max_tags: int | None = Field(default=None, ge=1, le=20, description="At most this many tags."),
        threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="Drop tags whose confidence is below this (default 0.5)."),
    ) -> dict:
        """Tag a text: tags from the repository, each with a confidence (the judge's P(yes)) and why it was chosen."""
        from .tagging import tag as run_tag

        ctx = base.with_overrides(mode=mode, max_tags=max_tags, threshold=threshold)
        result = await anyio.to_thread.run_sync(lambda: run_tag(text, context=ctx))
        return compact_result(result)

    @server.tool()
    async def recall(
        text: str = Field(description="The content whose candidate tags you want."),
        budget: int | None = Field(default=None, ge=1, le=100, description="Size of the candidate set."),
    ) -> dict:
        """Recall candidate tags for a text through the content–tag graph (C2T and C2C2T meta-paths), with the evidence for each. No LLM call."""
        from knowledge_base import recall_candidates

        def run():
            k = kb()
            cfg = k.config.recall.with_overrides(strategy="graph" if base.use_graph_recall else "match", budget=budget or base.budget)
            return recall_candidates(k, text, cfg)

        result = await anyio.to_thread.run_sync(run)
        candidates = []
        for c in result.candidates:
            evidence = []
            for ev in c.evidence:
                item = {"path": ev.path, "score": round(ev.score, 4)}
                if ev.via:
                    item["via"] = [v["id"] for v in ev.via]
                evidence.append(item)
            candidates.append({"tag": c.tag, "score": round(c.score, 4), "description": c.description, "evidence": evidence})
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
    ) -> dict:
        """Record which tags are right and wrong for a text. It becomes an annotated sample (an in-context example for similar texts) and graph edges (C2C2T recall)."""

        def run():
            k = kb()
            with k.write_lock():
                unknown = sorted({t for t in [*correct, *(incorrect or [])] if not k.has_tag(t)})
                if unknown:
                    raise InputError(f"unknown tags (not in the tag repository): {', '.join(unknown)}; nothing was written. Use search_tags to find the right names")
                cid = k.record_feedback(text, correct, incorrect or [], cid=id or None)
                return {"id": cid, "samples": k.collection("samples").count()}

        return await anyio.to_thread.run_sync(run)

    @server.tool()
    async def search_tags(
        query: str = Field(description="A word, a tag name or a phrase."),
        limit: int = Field(default=10, ge=1, le=100, description="At most this many tags."),
    ) -> list[dict]:
        """Find tags in the repository: names containing the query first, then tags nearest in meaning."""

        def run():
            return [
                {"tag": h.id, "similarity": round(h.similarity, 4), "description": h.metadata.get("description", "") or ""}
                for h in kb().search_tags(query, limit)
            ]

        return await anyio.to_thread.run_sync(run)

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
    get_knowledge_base(base.kb_dir)  # fail before the handshake if the knowledge base is unusable
    server = build_server(base)

    async def main() -> None:
        async with stdio_server(stdout=anyio.wrap_file(out)) as (read_stream, write_stream):
            low = server._mcp_server  # FastMCP.run_stdio_async does the same, with sys.stdout
            await low.run(read_stream, write_stream, low.create_initialization_options())

    anyio.run(main)
