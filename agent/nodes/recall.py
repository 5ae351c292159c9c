"""Node 1: the candidate set Φ(c) by graph meta-paths (or match-based recall when turned off).

The content (cleaned by ``prepare``) is encoded here, once; every later node (and a correction
of the result) reuses the embedding held by the runtime. Cached per text, settings and
knowledge-base revision (``agent.graph``).
"""

from __future__ import annotations

import time
from dataclasses import asdict

from langgraph.runtime import Runtime

from ..context import Context, context_of
from ..runtime import runtime_for
from ..state import State


def recall_tags(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = context_of(runtime)
    text, cid = state["text"], state["content_id"]
    rt = runtime_for(ctx.kb_dir)
    result = rt.recall(text, ctx.recall_config(rt.kb.config.recall), own_id=cid)
    return {
        "candidates": [{**asdict(c), "paths": c.paths} for c in result.candidates],
        "recall_scores": result.scores,
        "recall_fit": result.fit,
        "similar_contents": [asdict(s) for s in result.similar_contents],
        "notes": result.notes,
        "timings": {"recall": round(time.perf_counter() - started, 4)},
    }
