"""The façade every surface calls — the Gradio page, the CLI, REST, MCP and the LangChain tool.

::

    from agent import tagging

    result = tagging.tag("A command-line tool that converts PNG images to PDF", kb_dir="my-kb", max_tags=3)
    for t in result["tags"]:                  # best first
        print(t["tag"], t["confidence"], t["paths"])   # e.g. works-with::image 0.71 ['C2C2T', 'C2T']
    for node, changes, so_far in tagging.tag_stream("...", kb_dir="my-kb"):
        ...                                   # one step at a time: recall, examples, …, write_back
    tagging.recall("...", kb_dir="my-kb")     # Φ(c) with its evidence, no LLM call
    tagging.learn(result["text"], ["works-with::image"], ["use::editing"], kb_dir="my-kb")
    tagging.explain(result, "works-with::image")   # what each step knew about one tag
    tagging.search_tags("image", kb_dir="my-kb")

A result is the tagging graph's output (``agent.state.OutputState``): ``text`` (the cleaned
content the pipeline worked on), ``content_id``, ``tags``, ``candidates``, ``similar_contents``,
``examples``, ``knowledge``, ``selection``, ``judgments``, ``notes``, ``timings``, ``metadata``.
Settings are a ``Context`` (``context=``) and/or keyword overrides of its fields; an empty text
raises ``knowledge_base.InputError``, an unknown tag in ``learn`` ``knowledge_base.UnknownTagsError``.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from knowledge_base.config import RecallConfig
from knowledge_base.loaders import require_text, verdict
from knowledge_base.recall import RecallResult

from .context import Context
from .explanation import explain
from .graph import graph
from .runtime import runtime_for

__all__ = ["explain", "learn", "recall", "search_tags", "tag", "tag_stream"]


def _context(context: Context | None, overrides: dict) -> Context:
    return (context or Context.from_env()).with_overrides(**overrides)


def _payload(text: str, title: str | None, content_id: str | None, metadata: dict | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"content": text}
    if title:
        payload["title"] = title
    if content_id:
        payload["content_id"] = content_id
    if metadata:
        payload["metadata"] = metadata
    return payload


def tag(text: str, *, title: str | None = None, content_id: str | None = None, metadata: dict[str, Any] | None = None,
        context: Context | None = None, **overrides) -> dict:
    """Tag one content with the full pipeline; returns the graph's output (tags, candidates, why).

    ``overrides`` are Context fields, e.g. ``tag(text, kb_dir="kb", mode="single", threshold=0.6)``.
    """
    return graph.invoke(_payload(text, title, content_id, metadata), context=_context(context, overrides))


def tag_stream(text: str, *, title: str | None = None, content_id: str | None = None, metadata: dict[str, Any] | None = None,
               context: Context | None = None, **overrides) -> Iterator[tuple[str, dict, dict]]:
    """Tag one content step by step: yields ``(node, its changes, the result so far)`` as each node
    finishes; the last "result so far" equals what ``tag`` returns. The graph's own reducers merge
    the steps (LangGraph's ``values`` stream), so no surface re-implements them."""
    ctx = _context(context, overrides)
    node, changes = None, None
    for mode, data in graph.stream(_payload(text, title, content_id, metadata), context=ctx, stream_mode=["updates", "values"]):
        if mode == "updates":
            node, changes = next(iter(data.items())) if data else (None, None)
        elif node is not None:  # the state after that node (the first ``values`` is the input)
            yield node, changes or {}, dict(data)
            node = None


def recall(text: str, *, context: Context | None = None, base: RecallConfig | None = None, **overrides) -> RecallResult:
    """The candidate set Φ(c) with every candidate's evidence, exactly as tagging recalls it (no LLM).

    ``base`` replaces the knowledge base's recall settings (e.g. ``RecallConfig.paper()``); the
    run's ``Context`` overrides are applied on top of it."""
    ctx = _context(context, overrides)
    rt = runtime_for(ctx.kb_dir)
    return rt.recall(require_text(text), ctx.recall_config(base or rt.kb.config.recall))


def learn(text: str, correct: Iterable[str], incorrect: Iterable[str] = (), *, sample_id: str | None = None,
          kb_dir: str | None = None, replace: bool = False) -> dict:
    """Record a verdict on a text: its correct and incorrect tags become a sample (an in-context
    example for similar texts) and deterministic graph edges (C2C2T recall).

    A ``sample_id`` that already holds a different text is a conflict
    (``knowledge_base.ConflictError``, nothing written) unless ``replace`` is true.

    The one path every surface's correction takes. The text's embedding comes from the runtime
    (a text just tagged is not encoded again); the tags are validated once, by the knowledge base,
    inside its write lock. Once enough new samples arrived since the learned recall path was
    trained, it is retrained in the background (``retraining``: whether this call started it).
    Returns ``{"id", "correct", "incorrect", "samples", "retraining"}``.
    """
    rt = runtime_for(kb_dir)
    cleaned = require_text(text)
    correct, incorrect = verdict(correct, incorrect)
    vector, _ = rt.embed(cleaned)
    cid = rt.kb.record_feedback(cleaned, correct, incorrect, cid=sample_id or None, vector=vector, replace=replace)
    samples = rt.kb.collection("samples").count()
    return {"id": cid, "correct": list(correct), "incorrect": list(incorrect), "samples": samples,
            "retraining": rt.retrain_if_due(samples) is not None}


def search_tags(query: str, limit: int = 10, *, kb_dir: str | None = None) -> list[dict]:
    """Tags of the repository whose name contains the query, then the nearest in meaning:
    ``[{"tag", "similarity", "description"}]``."""
    hits = runtime_for(kb_dir).kb.search_tags(query, limit)
    return [{"tag": h.id, "similarity": round(h.similarity, 4), "description": h.metadata.get("description", "") or ""} for h in hits]
