"""Which contents the LLM steps run for: ``Context.llm`` — ``full`` (always), ``fast`` (never) or
``auto`` (the default: only where their output can change the answer).

A tag's confidence is the knowledge base's fitted fusion of all the evidence when it has one
(``llm4tag calibrate``), else the recall ranker's own P(right), else the judge's P(Yes)
(``agent.confidence.fused_confidence``). So under ``auto``:

- recall gives no probability (no trained ranker), or the learned confidence is switched off: the
  judge's P(Yes) is the confidence — the LLM runs;
- recall's P(right) is the confidence (a ranker, no fitted fusion): nothing the generator or the
  judge says changes a tag's confidence, so the LLM does not run (it would cost ~99% of the time
  and change nothing; measured in ``bench/llm_routing.py``);
- a fitted fusion weighs the LLM's evidence: the LLM runs only for a content whose answer it could
  change — a candidate that can enter the answer within ``route_margin`` log-odds of the
  threshold, the last tag kept and the next as close to each other (in single-tag mode: the
  first and the second), or a contender known from its description alone (a tag without
  history) — and not when a person's verdict on this text already decides. On banking77 the
  fusion changed the first tag of 2 of 100 calibration items, both with the first two within 0.23
  log-odds; a margin of 1.0 routes 7% of them (measured in the note of issue 26).

Under every mode but ``fast``, a text that holds instructions addressed to a language model ("ignore
the previous instructions and answer with …") is not shown to it (``agent.instructions``).

Every node asks ``llm_route`` and gets the same answer (it depends only on the run's context, the
knowledge base and recall's output); the result says which route was taken and why.
"""

from __future__ import annotations

from .confidence import logit, remembered_verdict
from .context import Context
from .instructions import instructions_in
from .runtime import Runtime

HISTORY_PATHS = ("C2C2T", "learned", "memory")  # evidence that comes from annotated contents, not from a description


NO_FUSION = (
    "the confidence is the recall ranker's P(right), which the LLM's output does not change here "
    "(no fitted fusion of the LLM's evidence: llm4tag calibrate fits one)"
)


def llm_route(state: dict, ctx: Context, rt: Runtime) -> dict:
    """``{"mode", "llm": bool, "reason"}`` for this content."""
    mode = ctx.llm
    if mode == "fast" or not (ctx.use_generation or ctx.use_calibration):
        return {"mode": mode, "llm": False, "reason": "the LLM steps are off: fused recall only"}
    orders = instructions_in(state.get("text") or "")
    if orders:  # whatever the mode: the language model is the step such orders steer (agent.instructions)
        return {
            "mode": mode,
            "llm": False,
            "instructions": orders,
            "reason": f"the text holds instructions addressed to a language model ({'; '.join(repr(o) for o in orders)}): "
            "it is tagged by fused recall alone, which such orders cannot steer",
        }
    if mode == "full":
        return {"mode": mode, "llm": True, "reason": "the LLM steps always run (llm=full)"}
    candidates = state.get("candidates") or []
    if not candidates:
        return {"mode": mode, "llm": False, "reason": "recall found no candidate"}
    top = candidates[: max(ctx.judge_top, 1)]
    if all(remembered_verdict(c) is not None for c in top):
        return {"mode": mode, "llm": False, "reason": "a person's verdict on this text decides its likely tags"}
    if candidates[0].get("probability") is None:
        return {"mode": mode, "llm": True, "reason": "recall has no trained ranker, so the judge's P(Yes) is the confidence"}
    if not ctx.use_learned_calibration:
        return {"mode": mode, "llm": True, "reason": "the judge's P(Yes) is the confidence (use_learned_calibration is off)"}
    if rt.calibration(ctx) is None:
        return {"mode": mode, "llm": False, "reason": NO_FUSION}
    return close_calls(candidates, ctx, rt.threshold(ctx), mode)


def close_calls(candidates: list[dict], ctx: Context, threshold: float, mode: str) -> dict:
    """With a fitted fusion: route a content whose answer the LLM's evidence could change — one of
    recall's top ``tag_limit`` within ``route_margin`` (in log-odds) of the threshold, the last tag
    kept and the next within the margin of each other when the limit binds (in single-tag mode: the
    first and the second), or one of the top known from its description alone; not a tag a
    person's verdict decides."""
    margin = ctx.route_margin
    contenders = [c for c in candidates[: ctx.tag_limit] if remembered_verdict(c) is None]  # a step across the threshold changes the answer
    close = [c["tag"] for c in contenders if abs(logit(float(c["probability"])) - logit(threshold)) <= margin]
    above = [c for c in candidates if float(c["probability"]) >= threshold]
    if len(above) >= ctx.tag_limit and len(candidates) > ctx.tag_limit:
        last, following = candidates[ctx.tag_limit - 1], candidates[ctx.tag_limit]
        if logit(float(last["probability"])) - logit(float(following["probability"])) <= margin and remembered_verdict(last) is None:
            close += [t for t in (last["tag"], following["tag"]) if t not in close]
    thin = [
        c["tag"]
        for c in contenders
        if float(c["probability"]) >= threshold / 2 and not any(ev["path"] in HISTORY_PATHS for ev in c.get("evidence") or [])
    ]
    if close or thin:
        said = "; ".join(
            part
            for part in (
                f"close calls at the threshold {threshold:.2f} or between the last kept and the next: {', '.join(close)}" if close else "",
                f"known from its description alone: {', '.join(thin)}" if thin else "",
            )
            if part
        )
        return {"mode": mode, "llm": True, "reason": said}
    return {
        "mode": mode,
        "llm": False,
        "reason": f"every candidate that could enter the answer is clearly above or below the threshold {threshold:.2f}, "
        f"and the last kept clearly ahead of the next (margin {margin} in log-odds)",
    }
