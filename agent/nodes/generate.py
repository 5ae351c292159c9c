"""Node 4: knowledge-enhanced tag generation — the LLM selects tags from the candidate set.

Template_r (examples and knowledge) when any were retrieved, Template_b otherwise (see
``prompts.fill``). Decoding is constrained to candidate names and the output is validated again.
Candidates that the history strongly supports (a C2C2T vote share of at least ``history_keep``)
are kept even when the LLM skips them, and marked as such: a small model must not throw away
what the history shows. The generator's choice and rank are evidence for the calibrate node,
which scores recall's top candidates whether or not the generator chose them. Switched off
(``use_generation=False``), or not needed for this content (``agent.routing``), no prompt is
built and the selection is empty; the route taken is the state's ``route``.
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from prompts.fill import generation_prompt

from ..context import Context, context_of
from ..retries import attempt_key, failures_noted
from ..routing import llm_route
from ..runtime import runtime_for
from ..state import State


def history_supported(candidates: list[dict], share: float | None) -> list[str]:
    if share is None:
        return []
    return [c["tag"] for c in candidates if any(ev["path"] == "C2C2T" and ev["score"] >= share for ev in c["evidence"])]


def generate_tags(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = context_of(runtime)
    candidates = state.get("candidates") or []
    route = llm_route(state, ctx, runtime_for(ctx.kb_dir))
    notes: list[str] = []
    if not candidates or not ctx.use_generation or not route["llm"]:
        return {
            "selection": {
                "tags": [],
                "raw": "",
                "prompt_tokens": 0,
                "reused_tokens": 0,
                "completion_tokens": 0,
                "rejected": [],
                "from_history": [],
                "limit": ctx.tag_limit,
                "skipped": bool(candidates),
            },
            "route": route,
            "timings": {"generate": round(time.perf_counter() - started, 4)},
            **({"notes": [route["reason"]]} if route.get("instructions") else {}),
        }
    prompt = generation_prompt(
        state["text"], candidates, ctx.mode, ctx.tag_limit, ctx.content_chars, state.get("examples"), state.get("knowledge")
    )
    if prompt.content_cut:
        notes.append(f"the content was cut to {ctx.content_chars} characters in the prompts")
    with failures_noted("generate", attempt_key(runtime, state["content_id"]), notes):  # a failure that may pass is retried (agent.retries)
        backend = runtime_for(ctx.kb_dir).backend(ctx)
        gen = backend.select_tags(prompt.system, prompt.user, [c["tag"] for c in candidates], ctx.tag_limit, head=prompt.head)
    if gen.rejected:
        notes.append(
            f"the generator named {len(gen.rejected)} tag{'s' if len(gen.rejected) != 1 else ''} outside the candidate set; "
            f"{'they were' if len(gen.rejected) != 1 else 'it was'} dropped"
        )
    selected = list(gen.tags)
    from_history = [t for t in history_supported(candidates, ctx.history_keep) if t not in selected]
    if ctx.mode == "single":
        if not selected and candidates:
            selected = [from_history[0] if from_history else candidates[0]["tag"]]
            notes.append("the generator chose no tag; the top-ranked candidate was used")
        from_history = []
    else:
        selected = (selected + from_history)[: max(ctx.tag_limit, len(selected))]
    return {
        "selection": {
            "tags": selected,
            "raw": gen.raw,
            "prompt_tokens": gen.prompt_tokens,
            "reused_tokens": gen.reused_tokens,
            "completion_tokens": gen.completion_tokens,
            "rejected": gen.rejected,
            "from_history": [t for t in from_history if t in selected],
            "limit": ctx.tag_limit,
            "template": prompt.template,
            "backend": backend.describe(),
        },
        "route": route,
        "notes": notes,
        "timings": {"generate": round(time.perf_counter() - started, 4)},
    }
