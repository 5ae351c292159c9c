"""Node 5: tag confidence calibration — Conf = softmax over the judge's Yes/No next-token logits.

Every generated tag is judged with Template_c(c, t); tags under the threshold are dropped and the
rest ranked by confidence. When the knowledge base has a fitted calibration (``llm4tag
calibrate``, see ``agent.calibration``), the confidence is that model's probability from P(Yes)
and the recall evidence; P(Yes) stays in the judgments. Turned off, the generator's order is
kept and confidence is None.
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from prompts import load_prompt, render_prompt

from ..context import Context
from ..calibration import evidence_features
from ..resources import backend_for, effective_threshold, learned_calibration
from ..state import State
from .generate import clip


def judgment_examples(examples: list[dict], candidates: list[str], limit: int = 2, chars: int = 200) -> str:
    """Yes/No demonstrations from retrieved samples: one right tag and one wrong tag each.

    A wrong tag is one marked incorrect for the sample, else a candidate the sample lacks.
    With the small base model these shots measurably separate right from wrong tags better
    than the bare question (see docs/results.md).
    """
    shots = []
    for ex in examples[:limit]:
        text = clip(ex["text"], chars)[0]
        if ex["tags"]:
            shots.append(f"Item: {text}\nTag: {ex['tags'][0]}\nRelevant: Yes")
        wrong = ex["incorrect_tags"][:1] or [t for t in candidates if t not in ex["tags"]][:1]
        if wrong:
            shots.append(f"Item: {text}\nTag: {wrong[0]}\nRelevant: No")
    return "\n\n".join(shots) or "(none)"


def judgment_prompts(text: str, tags: list[str], descriptions: dict[str, str], content_chars: int, shots: str = "(none)") -> list[str]:
    content, _ = clip(text, content_chars)
    return [render_prompt("judge", examples=shots, content=content, tag=t, tag_description=descriptions.get(t) or t) for t in tags]


def rank_tags(judgments: list[dict], threshold: float | None) -> list[dict]:
    """Final tags from judgments: drop those under the threshold, rank by confidence."""
    kept = [j for j in judgments if threshold is None or j["confidence"] is None or j["confidence"] >= threshold]
    if all(j["confidence"] is not None for j in kept):
        kept = sorted(kept, key=lambda j: -j["confidence"])
    return [{**j, "rank": i} for i, j in enumerate(kept, 1)]


def calibrate_confidence(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = runtime.context
    selection = state.get("selection") or {}
    tags = selection.get("tags") or []
    by_tag = {c["tag"]: c for c in state.get("candidates") or []}
    from_history = set(selection.get("from_history") or [])
    descriptions = {t: by_tag[t].get("description", "") for t in tags if t in by_tag}
    judgments: list[dict] = []
    scores = [None] * len(tags)
    notes = []
    if ctx.use_calibration and tags:
        backend = backend_for(ctx)
        shots = judgment_examples(state.get("examples") or [], list(by_tag))
        results = backend.judge(load_prompt("system"), judgment_prompts(state["text"], tags, descriptions, ctx.content_chars, shots))
        learned = learned_calibration(ctx)
        scores = []
        for rank, (tag, r) in enumerate(zip(tags, results), 1):
            confidence = r.p_yes
            if learned:
                confidence = learned.predict(evidence_features(r.p_yes, by_tag.get(tag), rank, tag in from_history))
            scores.append(round(confidence, 4))
            judgments.append(
                {"tag": tag, "p_yes": round(r.p_yes, 4), "confidence": round(confidence, 4), "logit_yes": round(r.logit_yes, 3),
                 "logit_no": round(r.logit_no, 3), "prompt_tokens": r.prompt_tokens, "reused_tokens": r.reused_tokens}
            )
        if learned:
            notes.append(f"confidence: the judge's P(Yes) mapped by the knowledge base's {learned.describe()}")
    scored = [
        {
            "tag": t,
            "confidence": s,
            "description": descriptions.get(t, ""),
            "paths": by_tag.get(t, {}).get("paths", []),
            "origin": "history" if t in from_history else "llm",
        }
        for t, s in zip(tags, scores)
    ]
    threshold = effective_threshold(ctx)
    final = rank_tags(scored, threshold if ctx.use_calibration else None)
    if tags and not final:
        notes.append(f"every generated tag scored below the confidence threshold {threshold}; lower it to see them")
    return {"tags": final, "judgments": judgments, "notes": notes, "timings": {"calibrate": round(time.perf_counter() - started, 4)}}
