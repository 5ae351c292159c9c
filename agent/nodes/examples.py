"""Node 2: in-context examples — similar annotated samples with correct and incorrect tags."""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from knowledge_base.store import sample_from_neighbour

from ..context import Context
from ..resources import embed, get_knowledge_base
from ..state import State


def retrieve_examples(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = runtime.context
    examples: list[dict] = []
    if ctx.use_examples and ctx.max_examples > 0:
        kb = get_knowledge_base(ctx.kb_dir)
        vector, _ = embed(kb, state["text"])
        for hit in kb.similar_samples(vector, ctx.max_examples, exclude=[state["content_id"]]):
            sample = sample_from_neighbour(hit)
            examples.append(
                {
                    "id": sample.id,
                    "similarity": round(hit.similarity, 4),
                    "text": sample.text,
                    "tags": list(sample.tags),
                    "incorrect_tags": list(sample.incorrect_tags),
                }
            )
    return {"examples": examples, "timings": {"examples": round(time.perf_counter() - started, 4)}}
