"""Node 1: the candidate set Φ(c) by graph meta-paths (or match-based recall when turned off)."""

from __future__ import annotations

import time
from dataclasses import asdict

from langgraph.runtime import Runtime

from knowledge_base.loaders import content_id, require_text
from knowledge_base.recall import recall_candidates

from ..context import Context
from ..resources import embed, get_knowledge_base
from ..state import State


def recall_tags(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = runtime.context
    title = (state.get("title") or "").strip()
    text = require_text(f"{title}\n\n{state['content']}" if title else state["content"])
    cid = state.get("content_id") or content_id(text)
    kb = get_knowledge_base(ctx.kb_dir)
    config = kb.config.recall.with_overrides(
        strategy="graph" if ctx.use_graph_recall else "match",
        delta_ct=ctx.delta_ct,
        delta_cc=ctx.delta_cc,
        max_c2t=ctx.max_c2t,
        max_c2c2t=ctx.max_c2c2t,
        budget=ctx.budget,
    )
    vector, truncated = embed(kb, text)
    result = recall_candidates(kb, text, config, exclude_ids=[cid], vector=vector)
    notes = list(result.notes)
    if truncated:
        notes.append(f"the text is longer than the encoder's {kb.encoder.max_tokens}-token window; recall used its start")
    return {
        "text": text,
        "content_id": cid,
        "candidates": [{**asdict(c), "paths": c.paths} for c in result.candidates],
        "similar_contents": [asdict(s) for s in result.similar_contents],
        "notes": notes,
        "timings": {"recall": round(time.perf_counter() - started, 4)},
    }
