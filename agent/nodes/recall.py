"""Node 1: the candidate set Φ(c) by graph meta-paths (or match-based recall when turned off).

The content is cleaned and encoded here, once; every later node (and a correction of the
result) reuses the cleaned ``text`` in the state and the embedding held by the runtime.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from langgraph.runtime import Runtime

from knowledge_base.loaders import content_id, require_text

from ..context import Context
from ..runtime import runtime_for
from ..state import State


def recall_tags(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = runtime.context
    title = (state.get("title") or "").strip()
    text = require_text(f"{title}\n\n{state['content']}" if title else state["content"])
    cid = state.get("content_id") or content_id(text)
    rt = runtime_for(ctx.kb_dir)
    result = rt.recall(text, ctx.recall_config(rt.kb.config.recall), exclude_ids=[cid])
    return {
        "text": text,
        "content_id": cid,
        "candidates": [{**asdict(c), "paths": c.paths} for c in result.candidates],
        "recall_scores": result.scores,
        "similar_contents": [asdict(s) for s in result.similar_contents],
        "notes": result.notes,
        "timings": {"recall": round(time.perf_counter() - started, 4)},
    }
