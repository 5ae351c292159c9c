"""Node 3: retrieval-augmented knowledge — domain-document passages and (optionally) web snippets."""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from ..context import Context, context_of
from ..runtime import runtime_for
from ..state import State
from ..web_search import search_web


def document_snippet(hit) -> dict:
    """A retrieved passage as a snippet: its file (``source``), the page (PDF) or row (CSV) and its
    index among the file's passages where the knowledge base knows them (passages stored by an
    older llm4tag have only a source), and the passage's own ``id``."""
    meta = hit.metadata or {}
    snippet = {"kind": "document", "source": meta.get("source") or hit.id, "id": hit.id}
    for key in ("page", "row", "index"):
        if meta.get(key) is not None:
            snippet[key] = meta[key]
    return snippet | {"text": hit.text, "similarity": round(hit.similarity, 4)}


def retrieve_knowledge(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = context_of(runtime)
    documents: list[dict] = []
    web: list[dict] = []
    notes: list[str] = []
    if ctx.use_knowledge and ctx.max_snippets > 0 and ctx.use_generation:  # only the generation prompt shows knowledge
        rt = runtime_for(ctx.kb_dir)
        vector, _ = rt.embed(state["text"])
        documents = [
            document_snippet(hit)
            for hit in rt.kb.search_documents(vector, ctx.max_snippets, refresh=False)
            if hit.similarity >= ctx.min_snippet_similarity
        ]
        if ctx.use_web_search:
            web, note = search_web(state["text"], ctx.max_snippets, ctx.web_timeout_s)
            if note:
                notes.append(note)
    # web results, when there are any, get up to half of the snippet budget
    web_quota = min(len(web), max(1, ctx.max_snippets // 2)) if web else 0
    snippets = documents[: ctx.max_snippets - web_quota] + web[:web_quota]
    return {"knowledge": snippets, "notes": notes, "timings": {"knowledge": round(time.perf_counter() - started, 4)}}
