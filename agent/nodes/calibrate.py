"""Node 5: tag confidence — every likely candidate judged, all the evidence fused into P(right).

The tags scored are recall's top ``judge_top`` candidates plus every tag the generator chose or
history kept, in that order of trust: generated first, then the rest in recall's order. The
Yes/No judge (Template_c, the paper's softmax over its Yes/No next-token logits) scores each of
them with the content's KV cache shared across tags, and each judgment is sent on LangGraph's
custom stream (``{"judgment": {...}}``) as soon as it is computed. Each scored tag's confidence is the fused
probability of ``agent.confidence.fused_confidence`` — the knowledge base's fitted fusion of the
judge's P(Yes), the generator's choice and rank and recall's evidence when there is one, else
recall's own P(right), else P(Yes) — so an LLM step adds evidence and cannot throw away what
recall found. Tags under the threshold are dropped, the rest ranked by confidence, at most
``tag_limit`` kept. With the judge off, nothing is judged and the same fusion runs without it.
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from prompts import load_prompt
from prompts.fill import judgment_examples, judgment_head, judgment_prompts

from ..confidence import evidence_features, final_confidence, fused_confidence, rank_tags, remembered_verdict, scored_tags
from ..context import Context, context_of
from ..retries import attempt_key, failures_noted
from ..routing import NO_FUSION, llm_route
from ..runtime import runtime_for
from ..state import State


def tags_to_score(candidates: list[dict], selection: dict, judge_top: int) -> list[tuple[str, str]]:
    """(tag, origin) for every tag the confidence step scores: those a person marked right on
    this text or a near-duplicate ("memory"), generated ("llm"), kept from history ("history"),
    then recall's top ``judge_top`` ("recall"); each once."""
    memory = [(c["tag"], "memory") for c in candidates if (remembered_verdict(c) or {}).get("verdict") == "right"]
    chosen = [(t, "llm") for t in selection.get("tags") or [] if t not in set(selection.get("from_history") or [])]
    kept = [(t, "history") for t in selection.get("from_history") or []]
    top = [(c["tag"], "recall") for c in candidates[:judge_top]]
    seen: set[str] = set()
    out = []
    for tag, origin in memory + chosen + kept + top:
        if tag not in seen:
            seen.add(tag)
            out.append((tag, origin))
    return out


def calibrate_confidence(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = context_of(runtime)
    rt = runtime_for(ctx.kb_dir)
    selection = state.get("selection") or {}
    candidates = state.get("candidates") or []
    by_tag = {c["tag"]: c for c in candidates}
    recall_rank = {c["tag"]: i for i, c in enumerate(candidates, 1)}
    generated = list(selection.get("tags") or [])
    ranked = any(c.get("probability") is not None for c in candidates)  # recall's scores are a ranker's P(right)
    in_domain = float((state.get("recall_fit") or {}).get("in_domain", 1.0))
    to_score = tags_to_score(candidates, selection, ctx.judge_top)
    notes: list[str] = []
    fitted = rt.calibration(ctx)
    route = state.get("route") or llm_route(state, ctx, rt)
    judge = ctx.use_calibration and route["llm"]
    prompts: list[str | None] = [None] * len(to_score)
    if judge and to_score:
        shots = judgment_examples(state.get("examples") or [], list(by_tag))
        descriptions = {t: by_tag[t].get("description", "") for t, _ in to_score if t in by_tag}
        prompts = judgment_prompts(state["text"], [t for t, _ in to_score], descriptions, ctx.content_chars, shots)
        system, head = load_prompt("system"), judgment_head()
    judgments: list[dict] = []
    with failures_noted(
        "calibrate", attempt_key(runtime, state["content_id"]), notes
    ):  # a failure that may pass is retried (agent.retries)
        backend = rt.backend(ctx) if judge and to_score else None
        for (tag, origin), prompt in zip(to_score, prompts):
            # one prompt at a time, so each judgment streams as soon as it is known; the content's
            # KV cache is still shared, since every prompt starts with it
            r = backend.judge(system, [prompt], head=head)[0] if prompt is not None else None
            p_yes = r.p_yes if r is not None else None
            recall_probability = by_tag[tag].get("probability") if tag in by_tag else None
            features = evidence_features(
                p_yes,
                by_tag.get(tag),
                generated.index(tag) + 1 if tag in generated else None,
                origin == "history",
                recall_rank.get(tag),
                recall_probability,
            )
            confidence = fused_confidence(features, p_yes, recall_probability, fitted, ctx.use_learned_calibration)
            # a fitted fusion is not scaled by the content's fit to the domain (recall's own P(right) is): cap it
            fused = fitted is not None and ctx.use_learned_calibration
            confidence = final_confidence(confidence, by_tag.get(tag), in_domain if fused else 1.0)
            judgment = {
                "tag": tag,
                "origin": origin,
                "confidence": None if confidence is None else round(confidence, 4),
                "recall_probability": recall_probability,
                "p_yes": None if r is None else round(r.p_yes, 4),
                "logit_yes": None if r is None else round(r.logit_yes, 3),
                "logit_no": None if r is None else round(r.logit_no, 3),
                "prompt_tokens": 0 if r is None else r.prompt_tokens,
                "reused_tokens": 0 if r is None else r.reused_tokens,
                "features": features,
            }
            judgments.append(judgment)
            runtime.stream_writer({"judgment": judgment})
    if route["mode"] == "auto" and not route["llm"]:
        notes.append(f"llm=auto: the LLM steps did not run for this content — {route['reason']}")
    if fitted is not None and ctx.use_learned_calibration:
        notes.append(f"confidence: the knowledge base's {fitted.describe()} of the judge, the generator and recall")
    elif ctx.use_learned_calibration and ranked and route.get("reason") != NO_FUSION:  # else the note above said so
        notes.append("confidence: recall's own P(right) (no fitted fusion yet: llm4tag calibrate fits one)")
    threshold = rt.threshold(ctx)
    scored = scored_tags({"candidates": candidates, "judgments": judgments})
    if any(j["confidence"] is None for j in judgments):
        # no confidence at all (no judge, no ranker): the generator's tags, else recall's top ones
        scored = [s for s in scored if s["origin"] != "recall"] if ctx.use_generation and route["llm"] else scored
    tree = tag_tree(rt.kb, [s["tag"] for s in scored])
    final = rank_tags(scored, threshold, ctx.tag_limit, tree)
    if ctx.label_language:  # each tag's label in the language asked for, else its name (the vocabulary's default)
        stored = rt.kb.get_tags([t["tag"] for t in final])
        final = [{**t, "label": stored[t["tag"]].label(ctx.label_language) if t["tag"] in stored else t["tag"]} for t in final]
    if judgments and not final:
        notes.append(f"every scored tag is below the confidence threshold {threshold}: no tag fits well enough; lower it to see them")
    return {
        "tags": final,
        "judgments": judgments,
        "threshold": threshold,
        "mode": ctx.mode,
        "route": route,
        "notes": notes,
        **({"tree": tree} if tree else {}),
        "timings": {"calibrate": round(time.perf_counter() - started, 4)},
    }


def tag_tree(kb, tags: list[str]) -> dict | None:
    """The part of the knowledge base's tag tree these tags need (their ancestors) and its output
    rule, kept in the result so that another threshold cuts it the same way; None for a flat repository."""
    parents = kb.hierarchy()
    needed = {}
    for tag in tags:
        while tag in parents and tag not in needed:
            needed[tag] = parents[tag]
            tag = parents[tag]
    return {"parents": needed, "output": kb.config.hierarchy_output} if needed else None
