"""Which contents the LLM steps run for: ``Context.llm`` — ``full`` (always), ``fast`` (never) or
``auto`` (the default: only where their output can change the answer).

A tag's confidence is the knowledge base's fitted fusion of all the evidence when it has one
(``llm4tag calibrate``), else the recall ranker's own P(right), else the judge's P(Yes)
(``agent.confidence.fused_confidence``). So under ``auto``:

- recall gives no probability (no trained ranker): the judge is the confidence — the LLM runs;
- recall's P(right) is the confidence (a ranker, no fitted fusion): nothing the generator or the
  judge says changes a tag's confidence, so the LLM does not run (it would cost ~99% of the time
  and change nothing; measured in ``bench/llm_routing.py``);
- a fitted fusion weighs the LLM's evidence: the LLM runs only for a content with a candidate
  whose recall P(right) lies within ``route_margin`` of the threshold (a close call), or a
  likely candidate known from its description alone (a tag without history), and not when a
  person's verdict on this text already decides.

Every node asks ``llm_route`` and gets the same answer (it depends only on the run's context, the
knowledge base and recall's output); the result says which route was taken and why.
"""

from __future__ import annotations

from .confidence import remembered_verdict
from .context import Context
from .runtime import Runtime

HISTORY_PATHS = ("C2C2T", "learned", "memory")  # evidence that comes from annotated contents, not from a description


def llm_route(state: dict, ctx: Context, rt: Runtime) -> dict:
    """``{"mode", "llm": bool, "reason"}`` for this content."""
    mode = ctx.llm
    if mode == "fast" or not (ctx.use_generation or ctx.use_calibration):
        return {"mode": mode, "llm": False, "reason": "the LLM steps are off: fused recall only"}
    if mode == "full":
        return {"mode": mode, "llm": True, "reason": "the LLM steps always run (llm=full)"}
    candidates = state.get("candidates") or []
    if not candidates:
        return {"mode": mode, "llm": False, "reason": "recall found no candidate"}
    top = candidates[: max(ctx.judge_top, 1)]
    if all(remembered_verdict(c) is not None for c in top):
        return {"mode": mode, "llm": False, "reason": "a person's verdict on this text decides its likely tags"}
    if state.get("recall_scores") != "probability":
        return {"mode": mode, "llm": True, "reason": "recall has no trained ranker, so the judge's P(Yes) is the confidence"}
    if rt.calibration(ctx) is None or not ctx.use_learned_calibration:
        return {"mode": mode, "llm": False,
                "reason": "the confidence is the recall ranker's P(right), which the LLM's output does not change here "
                          "(no fitted fusion of the LLM's evidence: llm4tag calibrate fits one)"}
    threshold = rt.threshold(ctx)
    close = [c["tag"] for c in top if abs(float(c["score"]) - threshold) <= ctx.route_margin and remembered_verdict(c) is None]
    thin = [c["tag"] for c in top if float(c["score"]) >= threshold - ctx.route_margin
            and not any(ev["path"] in HISTORY_PATHS for ev in c.get("evidence") or [])]
    if close or thin:
        said = "; ".join(part for part in (f"close to the threshold {threshold:.2f}: {', '.join(close)}" if close else "",
                                           f"known from its description alone: {', '.join(thin)}" if thin else "") if part)
        return {"mode": mode, "llm": True, "reason": said}
    return {"mode": mode, "llm": False,
            "reason": f"every likely candidate is clearly above or below the threshold {threshold:.2f} (margin {ctx.route_margin})"}
