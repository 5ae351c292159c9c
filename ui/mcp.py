"""The MCP server (``llm4tag mcp``): tagging tools for other agents, over stdio, with the official ``mcp`` package.

A thin surface over the façade (``agent.tagging``), like the REST API and the Gradio page.

Tools:

- ``tag(text, mode?, max_tags?, threshold?, llm?, review?)`` — the full pipeline; tags with confidence and why
  (with ``review``: held until a ``learn`` of the same text decides). A call with a progress token
  gets fused recall's answer first, as a progress notification, then the result.
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
import json
import os
import sys
from contextlib import asynccontextmanager
from typing import Literal

import anyio
from mcp.server.fastmcp import Context as McpContext
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import Field, ValidationError

from agent.context import LANGUAGE_CODE, Context, llm_mode
from agent.explanation import evidence_parts
from agent.results import TagResult, tag_result
from agent.tools import invalid_arguments
from agent.tagger import tagger_for
from knowledge_base.errors import UnknownTagsError
from knowledge_base.loaders import encodable

INSTRUCTIONS = (
    "llm4tag tags content with tags from a fixed tag repository. Use search_tags to find tag names, "
    "recall to see which tags are candidates for a text and why, tag to get the final tags with "
    "confidences, and learn to record which tags were right or wrong for a text (it improves later results)."
)


async def _run(fn):
    """Run a tool's work in a thread; whatever it returns or raises is made sendable first.

    The protocol's JSON writer refuses lone surrogates and NaN: one in a result or an error
    message would leave the request without any reply, so both are escaped or nulled here.
    """
    try:
        return encodable(await anyio.to_thread.run_sync(fn))
    except Exception as exc:  # FastMCP turns a ToolError into an error reply carrying its message
        raise ToolError(encodable(str(exc))) from exc


class _Server(FastMCP):
    """FastMCP whose refusal of a tool call's arguments says plainly what was wrong
    (``agent.tools.invalid_arguments``) instead of pydantic's report with its links."""

    async def call_tool(self, name: str, arguments: dict):
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(invalid_arguments(exc.__cause__, name)) from None
            raise


def _tagger(base: Context):
    """The knowledge base's Tagger, opened by the first call that needs it (one per process)."""
    return tagger_for(base.kb_dir)


def build_server(context: Context | None = None) -> FastMCP:
    """A FastMCP server whose tools work on ``context.kb_dir`` (the demo knowledge base when None)."""
    base = context or Context.from_env()
    server = _Server("llm4tag", instructions=INSTRUCTIONS)
    for add in (_add_tag, _add_recall, _add_learn, _add_vocabulary):
        add(server, base)
    return server


def _add_tag(server: FastMCP, base: Context) -> None:
    """The ``tag`` tool."""

    @server.tool()
    async def tag(
        text: str = Field(description="The content to tag."),
        mode: Literal["multi", "single"] | None = Field(default=None, description="multi: several tags; single: exactly one."),
        max_tags: int | None = Field(default=None, ge=1, le=20, description="At most this many tags."),
        threshold: float | None = Field(
            default=None,
            ge=0.0,
            le=1.0,
            allow_inf_nan=False,
            description="Drop tags whose confidence is below this (default: the knowledge base's tuned threshold, else its recall ranker's cut, else 0.5).",
        ),
        llm: Literal["auto", "full", "fast"] | bool | None = Field(
            default=None,
            description="auto (default): the language model only where it can change the answer; full (or true): always; "
            "fast (or false): fused recall only, no language model (milliseconds).",
        ),
        review: bool | None = Field(
            default=None, description="true: hold the tags for a person's review; a later learn of the same text resumes it."
        ),
        explain: bool = Field(
            default=False,
            description="Also list, for each tag, the words of the text behind it (those whose removal lowers its score most).",
        ),
        label_language: str | None = Field(
            default=None,
            max_length=20,
            pattern=LANGUAGE_CODE,
            description="Also give each tag its label in this language (e.g. de), from the vocabulary's SKOS prefLabels.",
        ),
        call: McpContext = None,
    ) -> TagResult:
        """Tag a text: tags from the repository, each with a confidence (P(tag is right), fused from recall and the LLM) and why it was chosen. A client that asks for progress gets fused recall's answer first, as a progress message, while the language model refines it."""
        ctx = base.with_overrides(
            mode=mode, max_tags=max_tags, threshold=threshold, review=review, llm=llm_mode(llm), label_language=label_language
        )
        if (
            call is not None
            and ctx.llm != "fast"
            and not ctx.review
            and call.request_context.meta
            and call.request_context.meta.progressToken is not None
        ):
            fast = await _run(lambda: tag_result(_tagger(base).tag(text, context=ctx.with_overrides(llm="fast"))).model_dump(mode="json"))
            shown = ", ".join(f"{t['tag']} {t['confidence']:.2f}" for t in fast["tags"] if t.get("confidence") is not None) or "no tag"
            await call.report_progress(1, 2, message=f"first answer (fused recall, no language model): {shown}")

        def run() -> dict:
            result = _tagger(base).tag(text, context=ctx)
            spans = _tagger(base).supporting_spans(result["text"], [t["tag"] for t in result["tags"]], context=ctx) if explain else None
            return tag_result(result, spans).model_dump(mode="json")

        return await _run(run)


def _add_recall(server: FastMCP, base: Context) -> None:
    """The ``recall`` tool."""

    @server.tool()
    async def recall(
        text: str = Field(description="The content whose candidate tags you want."),
        budget: int | None = Field(default=None, ge=1, le=100, description="Size of the candidate set."),
    ) -> dict:
        """Recall candidate tags for a text through the content–tag graph (C2T and C2C2T meta-paths), with the evidence for each. No LLM call."""
        return await _run(lambda: _recall_payload(_tagger(base).recall_text(text, context=base.with_overrides(budget=budget))))

    def _recall_payload(result) -> dict:
        candidates = []
        for c in result.to_dict()["candidates"]:
            evidence = [
                {"path": ev["path"], "score": round(ev["score"], 4), **({"via": [v["id"] for v in ev["via"]]} if ev["via"] else {})}
                for ev in c["evidence"]
            ]
            candidates.append(
                {
                    "tag": c["tag"],
                    "score": round(c["score"], 4),
                    "probability": None if c["probability"] is None else round(c["probability"], 4),
                    "evidence_score": c["evidence_score"],
                    "description": c["description"],
                    "evidence": evidence,
                    "why": "; ".join(evidence_parts(c)),
                }
            )
        return {
            "strategy": result.strategy,
            "candidates": candidates,
            "similar_contents": [{"id": s.id, "similarity": round(s.similarity, 4), "tags": s.tags} for s in result.similar_contents],
            "notes": result.notes,
        }


def _add_learn(server: FastMCP, base: Context) -> None:
    """The ``learn`` tool."""

    @server.tool()
    async def learn(
        text: str = Field(description="The content the verdict is about."),
        correct: list[str] = Field(description="Tags that are right for the text (names from the repository)."),
        incorrect: list[str] | None = Field(default=None, description="Tags that are wrong for the text."),
        id: str | None = Field(default=None, max_length=200, description="Sample id; derived from the text when omitted."),
        replace: bool = Field(
            default=False, description="When the id already holds a different text, replace that sample (else an error)."
        ),
    ) -> dict:
        """Record which tags are right and wrong for a text. It becomes an annotated sample (an in-context example for similar texts) and graph edges (C2C2T recall)."""

        def run():
            try:
                return _tagger(base).learn(text, correct, incorrect or [], sample_id=id, replace=replace)
            except UnknownTagsError as exc:
                raise UnknownTagsError(f"{exc}. Use search_tags to find the right names", exc.tags) from exc

        return await _run(run)


def _add_vocabulary(server: FastMCP, base: Context) -> None:
    """The ``change_tag`` and ``search_tags`` tools."""

    @server.tool()
    async def change_tag(
        tag: str = Field(max_length=200, description="The tag to change (its exact name; use search_tags)."),
        action: Literal["rename", "merge", "retire"] = Field(
            description="rename: give it a new name; merge: into an existing tag; retire: never suggest it again."
        ),
        into: str | None = Field(
            default=None, max_length=200, description="The new name (rename) or the existing tag to merge into (merge)."
        ),
    ) -> dict:
        """Rename, merge or retire a tag. Its history (every annotation with it) moves to the replacement, or is set aside when retired; nothing is deleted."""

        return await _run(lambda: _tagger(base).change_tag(tag, action, into))

    @server.tool()
    async def search_tags(
        query: str = Field(description="A word, a tag name or a phrase."),
        limit: int = Field(default=10, ge=1, le=100, description="At most this many tags."),
    ) -> list[dict]:
        """Find tags in the repository: names containing the query first, then tags nearest in meaning."""

        return await _run(lambda: _tagger(base).search_tags(query, limit))


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


def _refusal(line: str, exc: Exception):
    """The JSON-RPC error answering a request line the protocol library cannot read, or None when
    the line names no request to answer. A lone surrogate escape (``"\\udc80"``) is valid to
    Python's JSON reader but not to the library's, which would otherwise drop the request silently."""
    from mcp import types

    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than any request (no id to answer)
        return None
    rid = data.get("id") if isinstance(data, dict) else None
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or "method" not in data:
        return None
    errors = getattr(exc, "errors", None)
    reason = errors()[0].get("msg", str(exc)) if callable(errors) and errors() else str(exc)
    hint = (
        "; a string holds a lone surrogate (such as \\udc80), which is not valid Unicode: send valid text" if "surrogate" in reason else ""
    )
    return types.JSONRPCMessage(
        types.JSONRPCError(
            jsonrpc="2.0",
            id=rid,
            error=types.ErrorData(code=types.INVALID_PARAMS, message=encodable(f"the request cannot be read ({reason}){hint}")),
        )
    )


@asynccontextmanager
async def _stdio_transport(stdout):
    """MCP's stdio transport (``mcp.server.stdio.stdio_server``), made to answer every request:
    a request line the library cannot parse gets an error reply, and a reply its JSON writer
    refuses (a lone surrogate quoted in a message) is sent with its strings escaped."""
    from mcp import types
    from mcp.shared.message import SessionMessage

    stdin = anyio.wrap_file(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))
    read_writer, read_stream = anyio.create_memory_object_stream(0)
    write_stream, write_reader = anyio.create_memory_object_stream(0)
    refusals = write_stream.clone()

    async def stdin_reader():
        try:
            async with read_writer, refusals:
                async for line in stdin:
                    try:
                        message = types.JSONRPCMessage.model_validate_json(line)
                    except Exception as exc:
                        refusal = _refusal(line, exc)
                        await (refusals.send(SessionMessage(refusal)) if refusal is not None else read_writer.send(exc))
                        continue
                    await read_writer.send(SessionMessage(message))
        except anyio.ClosedResourceError:
            await anyio.lowlevel.checkpoint()

    async def stdout_writer():
        try:
            async with write_reader:
                async for session_message in write_reader:
                    try:
                        text = session_message.message.model_dump_json(by_alias=True, exclude_none=True)
                    except Exception:
                        data = encodable(session_message.message.model_dump(by_alias=True, exclude_none=True))
                        text = json.dumps(data, ensure_ascii=False, default=str)
                    await stdout.write(text + "\n")
                    await stdout.flush()
        except anyio.ClosedResourceError:
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stdin_reader)
        tg.start_soon(stdout_writer)
        yield read_stream, write_stream


def run_stdio(context: Context | None = None) -> None:
    """Serve the tools over stdio until the client closes the connection."""
    base = context or Context.from_env()
    out = protocol_stdout()  # first: building the demo knowledge base prints progress
    tagger_for(base.kb_dir)  # fail before the handshake if the knowledge base is unusable
    server = build_server(base)

    async def main() -> None:
        async with _stdio_transport(anyio.wrap_file(out)) as (read_stream, write_stream):
            low = server._mcp_server  # FastMCP.run_stdio_async does the same, with sys.stdout
            await low.run(read_stream, write_stream, low.create_initialization_options())

    anyio.run(main)
