"""The one place that puts a tag's "why" into words: its recall evidence, its origin, its confidence.

Every surface shows evidence through these functions — the one-line ``why`` of every result's
tags (``agent.results``); the detailed evidence of the Gradio page and the CLI — so
the same candidate reads the same everywhere. ``explain`` (used by the façade) gathers what the
pipeline knew about one tag of a result: recall, generation, judgment, examples.
"""

from __future__ import annotations

from typing import Callable

from knowledge_base.hierarchy import path as tree_path
from .confidence import confidence_of, remembered_verdict

DEPARTURE = 0.3  # a confidence this far from the judge's P(Yes) says what moved it


def evidence_parts(candidate: dict | None, detail: bool = False, via_limit: int = 3, quote: Callable[[str], str] = str) -> list[str]:
    """A candidate's evidence, one phrase per meta-path.

    Short (``detail=False``): ``C2C2T via 4 similar items (vote 0.62)``, ``C2T sim 0.41``.
    Detailed: ``C2C2T vote 0.62 via a (0.81), b (0.77) +2``, ``C2T similarity 0.41``; ``quote``
    escapes the item ids for the output format (Markdown, say).
    """
    parts: list[str] = []
    for ev in (candidate or {}).get("evidence", []):
        path, score = ev["path"], ev["score"]
        if path == "C2C2T":
            via = ev.get("via") or []
            if detail:
                named = ", ".join(f"{quote(v['id'])} ({v['similarity']:.2f})" for v in via[:via_limit])
                more = f" +{len(via) - via_limit}" if len(via) > via_limit else ""
                parts.append(f"C2C2T vote {score:.2f} via {named}{more}")
            else:
                parts.append(f"C2C2T via {len(via)} similar item{'s' if len(via) != 1 else ''} (vote {score:.2f})")
        elif path == "learned":
            parts.append(f"learned {'score ' if detail else ''}{score:.2f}")
        elif path == "memory":
            v = (ev.get("via") or [{}])[0]
            text = (
                "this same text"
                if score >= 0.999
                else f"a near-duplicate text ({score:.2f}{', ' + quote(v['id']) if detail and v.get('id') else ''})"
            )
            parts.append(f"a person marked it {v.get('verdict', 'right')} on {text}")
        else:
            parts.append(f"{path} {'similarity' if detail else 'sim'} {score:.2f}")
    return parts


def departure(judgment: dict | None, candidate: dict | None, fit: dict | None = None) -> str | None:
    """When a tag's confidence is more than ``DEPARTURE`` away from the judge's P(Yes), the
    sentence that says which evidence moved it; None otherwise (or when nothing was judged)."""
    p_yes, confidence = (judgment or {}).get("p_yes"), confidence_of(judgment or {})
    if p_yes is None or confidence is None or abs(confidence - p_yes) <= DEPARTURE:
        return None
    moved = "raised" if confidence > p_yes else "lowered"
    memory = remembered_verdict(candidate)
    in_domain = float((fit or {}).get("in_domain", 1.0))
    if memory is not None:
        reason = evidence_parts({"evidence": [e for e in candidate["evidence"] if e["path"] == "memory"]})[0]
    elif confidence < p_yes and in_domain < 1.0:
        likeness = fit.get("history_likeness")
        reason = (
            f"the text's poor fit to this knowledge base (nearest history item {fit.get('top_content_similarity', 0):.2f}, "
            + (
                f"likeness to the history rather than to everyday text {likeness:+.1f}"
                if likeness is not None
                else f"nearest tag {fit.get('top_tag_similarity', 0):.2f}"
            )
            + f": in domain with probability {in_domain:.2f})"
        )
    else:
        parts = [e for e in evidence_parts(candidate) if not e.startswith("match")]
        if confidence > p_yes:
            reason = f"recall's evidence ({'; '.join(parts)})" if parts else "recall's ranker"
        else:
            reason = (
                f"recall's weak evidence ({'; '.join(parts)})" if parts else "recall, which found it only by similarity to its description"
            )
    return f"the judge's P(Yes) {p_yes:.2f} was {moved} to {confidence:.2f} by {reason}"


def why(tag: dict, candidate: dict | None, judgment: dict | None = None, fit: dict | None = None) -> str:
    """One line on why a final tag was returned: its meta-paths, whether history kept it, its
    confidence, and what moved that confidence away from the judge's when it did."""
    origin = tag.get("origin")
    if origin == "review":
        return "added by a person in review"
    in_tree = f"in the tree: {' › '.join(tag['path'])}" if len(tag.get("path") or []) > 1 else ""
    if origin == "hierarchy":
        return f"an ancestor of a kept tag (hierarchy_output add-ancestors); {in_tree}; confidence {tag.get('confidence') or 0:.2f}"
    parts = evidence_parts(candidate) or ["chosen by the LLM"]
    if origin == "history":
        parts.append("kept because similar items carry it")
    elif origin == "recall":
        parts.append("ranked high by recall (the LLM did not choose it)")
    confidence = tag.get("confidence")
    parts.append("no confidence (no judge, no ranker)" if confidence is None else f"confidence {confidence:.2f}")
    moved = departure(judgment, candidate, fit)
    if moved:
        parts.append(moved)
    if in_tree:
        parts.append(in_tree)
    return "; ".join(parts)


def explain(result: dict, tag: str) -> dict:
    """What the pipeline knew about ``tag`` for this result, step by step (plain data).

    Keys: ``tag``; ``candidate`` (None when recall did not find it) with ``rank`` of
    ``candidates`` and its ``evidence`` phrases; ``generation`` — ``chosen`` (with
    ``position``), ``history`` (kept because similar items carry it), ``skipped`` or None;
    ``judgment`` (P(Yes) and logits — None when the judge did not run —, the final fused
    confidence, ``learned``: whether it differs from P(Yes)) or None when the tag was not scored; ``examples`` that mark
    it correct or incorrect; ``final`` (whether it is among the result's tags); ``path``: its place
    in the tag tree, root first (None outside a tree).
    """
    candidates = [c["tag"] for c in result.get("candidates") or []]
    by_tag = {c["tag"]: c for c in result.get("candidates") or []}
    selection = result.get("selection") or {}
    parents = (result.get("tree") or {}).get("parents") or {}
    out: dict = {
        "tag": tag,
        "candidate": None,
        "generation": None,
        "judgment": None,
        "examples": [],
        "final": any(t["tag"] == tag for t in result.get("tags") or []),
        "candidates": len(candidates),
        "path": tree_path(tag, parents) if tag in parents else None,
    }
    cand = by_tag.get(tag)
    if cand is not None:
        out["candidate"] = {
            "rank": candidates.index(tag) + 1,
            "score": cand["score"],
            "description": cand.get("description") or "",
            "paths": list(cand.get("paths") or []),
            "evidence": evidence_parts(cand, detail=True, via_limit=5),
        }
        chosen = selection.get("tags") or []
        if tag in (selection.get("from_history") or []):
            out["generation"] = {"kind": "history"}
        elif tag in chosen:
            out["generation"] = {"kind": "chosen", "position": chosen.index(tag) + 1}
        else:
            out["generation"] = {"kind": "skipped"}
    scored = next((j for j in result.get("judgments") or [] if j["tag"] == tag), None)
    if scored:
        confidence = confidence_of(scored)
        out["judgment"] = {
            "p_yes": scored.get("p_yes"),
            "logit_yes": scored.get("logit_yes"),
            "logit_no": scored.get("logit_no"),
            "confidence": confidence,
            "learned": confidence is not None and confidence != scored.get("p_yes"),
            "moved_by": departure(scored, cand, result.get("recall_fit")),
        }
    for ex in result.get("examples") or []:
        if tag in ex["tags"] or tag in ex.get("incorrect_tags", []):
            out["examples"].append(
                {"id": ex["id"], "similarity": ex["similarity"], "marked": "correct" if tag in ex["tags"] else "incorrect"}
            )
    return out
