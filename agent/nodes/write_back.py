"""Node 6: write back — the final tags become deterministic edges and the content joins the history."""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from ..context import Context, context_of
from ..runtime import runtime_for
from ..state import State


def write_back(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = context_of(runtime)
    notes: list[str] = []
    if ctx.write_back and state.get("tags"):
        rt = runtime_for(ctx.kb_dir)
        vector, _ = rt.embed(state["text"])
        annotated = rt.kb.get_sample(state["content_id"])
        rt.kb.insert_content(state["text"], [t["tag"] for t in state["tags"]], cid=state["content_id"], origin="writeback", vector=vector)
        if annotated is not None and annotated.text == state["text"]:
            notes.append(f"{state['content_id']} is an annotated sample: its person-given tags were kept, nothing was written back")
        else:
            notes.append(f"wrote {len(state['tags'])} tags back to the knowledge base as {state['content_id']}")
    return {"notes": notes, "timings": {"write_back": round(time.perf_counter() - started, 4)}}
