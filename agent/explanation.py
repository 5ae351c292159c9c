"""The one place that puts a tag's "why" into words: its recall evidence, its origin, its confidence.

Every surface shows evidence through these functions — the one-line ``why`` of the REST API,
the MCP tools and the LangChain tool; the detailed evidence of the Gradio page and the CLI — so
the same candidate reads the same everywhere. ``explain`` (used by the façade) gathers what the
pipeline knew about one tag of a result: recall, generation, judgment, examples.
"""

from __future__ import annotations

from typing import Callable

from .confidence import confidence_of


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
        else:
            parts.append(f"{path} {'similarity' if detail else 'sim'} {score:.2f}")
    return parts


def why(tag: dict, candidate: dict | None) -> str:
    """One line on why a final tag was returned: its meta-paths, whether history kept it, its confidence."""
    origin = tag.get("origin")
    if origin == "review":
        return "added by a person in review"
    parts = evidence_parts(candidate) or ["chosen by the LLM"]
    if origin == "history":
        parts.append("kept because similar items carry it")
    elif origin == "recall":
        parts.append("ranked high by recall (the LLM did not choose it)")
    confidence = tag.get("confidence")
    parts.append("no confidence (no judge, no ranker)" if confidence is None else f"confidence {confidence:.2f}")
    return "; ".join(parts)


def tags_with_why(result: dict) -> list[dict]:
    """The final tags of a result as ``{"tag", "confidence", "why"}``, best first."""
    by_tag = {c["tag"]: c for c in result.get("candidates") or []}
    return [{"tag": t["tag"], "confidence": t["confidence"], "why": why(t, by_tag.get(t["tag"]))} for t in result.get("tags") or []]


def compact_result(result: dict) -> dict:
    """A model-friendly summary of a result (what the LangChain and MCP tools return)."""
    return {
        "tags": tags_with_why(result),
        "candidates_considered": len(result.get("candidates") or []),
        "content_id": result.get("content_id"),
        "notes": list(result.get("notes") or []),
        **({"review": result["review"]} if result.get("review") else {}),
    }


def explain(result: dict, tag: str) -> dict:
    """What the pipeline knew about ``tag`` for this result, step by step (plain data).

    Keys: ``tag``; ``candidate`` (None when recall did not find it) with ``rank`` of
    ``candidates`` and its ``evidence`` phrases; ``generation`` — ``chosen`` (with
    ``position``), ``history`` (kept because similar items carry it), ``skipped`` or None;
    ``judgment`` (P(Yes) and logits — None when the judge did not run —, the final fused
    confidence, ``learned``: whether it differs from P(Yes)) or None when the tag was not scored; ``examples`` that mark
    it correct or incorrect; ``final`` (whether it is among the result's tags).
    """
    candidates = [c["tag"] for c in result.get("candidates") or []]
    by_tag = {c["tag"]: c for c in result.get("candidates") or []}
    selection = result.get("selection") or {}
    out: dict = {"tag": tag, "candidate": None, "generation": None, "judgment": None, "examples": [],
                 "final": any(t["tag"] == tag for t in result.get("tags") or []), "candidates": len(candidates)}
    cand = by_tag.get(tag)
    if cand is not None:
        out["candidate"] = {"rank": candidates.index(tag) + 1, "score": cand["score"], "description": cand.get("description") or "",
                            "paths": list(cand.get("paths") or []), "evidence": evidence_parts(cand, detail=True, via_limit=5)}
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
        out["judgment"] = {"p_yes": scored.get("p_yes"), "logit_yes": scored.get("logit_yes"), "logit_no": scored.get("logit_no"),
                           "confidence": confidence, "learned": confidence is not None and confidence != scored.get("p_yes")}
    for ex in result.get("examples") or []:
        if tag in ex["tags"] or tag in ex.get("incorrect_tags", []):
            out["examples"].append({"id": ex["id"], "similarity": ex["similarity"], "marked": "correct" if tag in ex["tags"] else "incorrect"})
    return out
