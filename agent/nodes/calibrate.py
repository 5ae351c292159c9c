"""Node 5: tag confidence calibration — Conf = softmax over the judge's Yes/No next-token logits.

Every generated tag is judged with Template_c(c, t); tags under the threshold are dropped and the
rest ranked by confidence (``agent.confidence``). When the knowledge base has a fitted
calibration (``llm4tag calibrate``), the confidence is that model's probability from P(Yes) and
the recall evidence; P(Yes) and the evidence features stay in the judgments. Turned off, the
generator's order is kept and confidence is None.
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from prompts import load_prompt
from prompts.fill import judgment_examples, judgment_prompts

from ..confidence import evidence_features, rank_tags, scored_tags
from ..context import Context
from ..runtime import runtime_for
from ..state import State


def calibrate_confidence(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = runtime.context
    rt = runtime_for(ctx.kb_dir)
    selection = state.get("selection") or {}
    tags = selection.get("tags") or []
    by_tag = {c["tag"]: c for c in state.get("candidates") or []}
    from_history = set(selection.get("from_history") or [])
    descriptions = {t: by_tag[t].get("description", "") for t in tags if t in by_tag}
    judgments: list[dict] = []
    notes = []
    if ctx.use_calibration and tags:
        shots = judgment_examples(state.get("examples") or [], list(by_tag))
        results = rt.backend(ctx).judge(load_prompt("system"), judgment_prompts(state["text"], tags, descriptions, ctx.content_chars, shots))
        learned = rt.calibration(ctx)
        for rank, (tag, r) in enumerate(zip(tags, results), 1):
            features = evidence_features(r.p_yes, by_tag.get(tag), rank, tag in from_history)
            confidence = learned.predict(features) if learned else r.p_yes
            judgments.append(
                {"tag": tag, "p_yes": round(r.p_yes, 4), "confidence": round(confidence, 4), "logit_yes": round(r.logit_yes, 3),
                 "logit_no": round(r.logit_no, 3), "prompt_tokens": r.prompt_tokens, "reused_tokens": r.reused_tokens,
                 "features": features}
            )
        if learned:
            notes.append(f"confidence: the judge's P(Yes) mapped by the knowledge base's {learned.describe()}")
    threshold = rt.threshold(ctx)
    scored = scored_tags({"selection": selection, "candidates": state.get("candidates"), "judgments": judgments})
    final = rank_tags(scored, threshold if ctx.use_calibration else None)
    if tags and not final:
        notes.append(f"every generated tag scored below the confidence threshold {threshold}; lower it to see them")
    return {"tags": final, "judgments": judgments, "notes": notes, "timings": {"calibrate": round(time.perf_counter() - started, 4)}}
