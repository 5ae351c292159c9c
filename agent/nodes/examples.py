"""Node 2: in-context examples — similar annotated samples with correct and incorrect tags."""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from knowledge_base.store import sample_from_neighbour

from ..context import Context, context_of
from ..routing import llm_route
from ..runtime import runtime_for
from ..state import State


def retrieve_examples(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = context_of(runtime)
    examples: list[dict] = []
    rt = runtime_for(ctx.kb_dir)
    if ctx.use_examples and ctx.max_examples > 0 and llm_route(state, ctx, rt)["llm"]:  # prompt material: nothing to do without the LLM
        vector, _ = rt.embed(state["text"])
        for hit in rt.kb.similar_samples(vector, ctx.max_examples, exclude=[state["content_id"]], refresh=False):
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
