"""``llm4tag optimize``: sweep the recall settings and the confidence threshold on labelled data."""

from __future__ import annotations

from typing import Callable

from knowledge_base.recall import recall_candidates

from ..confidence import confidence_of, rank_tags
from ..runtime import runtime_for
from .labelled import Item
from .metrics import multi_tag_metrics, recall_hits, single_tag_metrics


def optimize_recall(
    items: list[Item],
    kb_dir: str | None,
    metric: str = "HR#3",
    grid: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Sweep recall settings on labelled items; returns every setting's figures, best first."""
    rt = runtime_for(kb_dir)
    kb = rt.kb
    grid = grid or {
        "delta_ct": [0.2, 0.25, 0.3, 0.35, 0.5],
        "delta_cc": [0.45, 0.5, 0.55, 0.6, 0.7, 0.8],
        "max_c2t": [15],
        "max_c2c2t": [5, 10],
    }
    vectors = [rt.embed(i.text)[0] for i in items]
    truths = [i.tags for i in items]
    combos = [
        dict(delta_ct=a, delta_cc=b, max_c2t=c, max_c2c2t=d)
        for a in grid["delta_ct"]
        for b in grid["delta_cc"]
        for c in grid["max_c2t"]
        for d in grid["max_c2c2t"]
    ]
    results = []
    for n, combo in enumerate(combos, 1):
        cfg = kb.config.recall.with_overrides(strategy="graph", **combo)
        cands, empty = [], 0
        for item, vector in zip(items, vectors):
            r = recall_candidates(kb, item.text, cfg, exclude_ids=[item.id], vector=vector)
            cands.append(r.tags)
            empty += all(p == "match" for c in r.candidates for p in c.paths)
        results.append({**combo, **recall_hits(cands, truths), "no_graph_candidate": empty / len(items)})
        if progress:
            progress(n, len(combos))
    return sorted(results, key=lambda r: -r[metric])


def optimize_threshold(records: list[dict], mode: str = "multi", metric: str | None = None) -> list[dict]:
    """Sweep the confidence threshold over a finished ``full`` evaluation's judgments."""
    metric = metric or "f1_micro"
    rows = [{"threshold": i / 20, **_figures(records, _predictions_at(records, i / 20), mode)} for i in range(0, 21)]
    return sorted(rows, key=lambda r: -r[metric])


def _predictions_at(records: list[dict], threshold: float) -> list[list[str]]:
    """Each record's scored tags with a confidence of at least ``threshold``, best first."""
    out = []
    for r in records:
        scored = [{"tag": j["tag"], "confidence": confidence_of(j)} for j in r["judged"]]
        out.append([t["tag"] for t in rank_tags([s for s in scored if s["confidence"] is not None], threshold)])
    return out


def _figures(records: list[dict], predictions: list[list[str]], mode: str) -> dict[str, float]:
    truths = [r["truth"] for r in records]
    m = single_tag_metrics(predictions, truths) if mode == "single" else multi_tag_metrics(predictions, truths)
    return {k: v for k, v in m.items() if isinstance(v, float)}


def threshold_for_coverage(records: list[dict], coverage: float, mode: str = "multi") -> dict:
    """The highest confidence threshold (in steps of 0.01) at which at least ``coverage`` of the
    items keep a tag, over a finished ``full`` evaluation's scored tags; with its figures there."""
    from knowledge_base.errors import InputError

    if not 0.0 < coverage <= 1.0:
        raise InputError(f"coverage must be above 0 and at most 1, not {coverage}")
    best = None
    for i in range(0, 101):
        preds = _predictions_at(records, i / 100)
        share = sum(1 for p in preds if p) / len(records) if records else 0.0
        if share + 1e-9 < coverage:  # coverage only falls as the threshold rises
            break
        best = {"threshold": i / 100, "coverage": share, **_figures(records, preds, mode)}
    if best is None:
        raise InputError(
            f"no threshold keeps a tag for {coverage:.0%} of the items; the scored tags have no confidence (run with the judge or a ranker)"
        )
    return best
