"""Tagging and recall metrics as the LLM4Tag paper defines them.

- Acc@k: precision of the first min(k, |T_i|) returned tags, T_i the tags returned for item i,
  averaged over the items that got at least one tag (Coverage@1 says how many did).
- Coverage@k: share of items with at least k returned tags.
- #Right: mean number of correct tags in the candidate set; HR#k: share of items whose candidate
  set holds at least k correct tags.
- Beyond the paper: micro and per-document P/R/F1, P@k, NDCG@k, F1@5; single-tag accuracy and
  micro/macro P/R/F1; confidence ECE, Brier and AUROC and the reliability diagram's bins; accuracy
  vs coverage over thresholds; a per-tag table (support, P, R, F1, ECE).
"""

from __future__ import annotations

import math
from statistics import mean
from typing import Iterable, Sequence

from knowledge_base.ranker import best_threshold

from ..confidence import confidence_of


def acc_at_k(predictions: Sequence[Sequence[str]], truths: Sequence[Iterable[str]], k: int) -> float:
    scores = []
    for pred, truth in zip(predictions, truths):
        if not pred:
            continue
        head = list(pred)[: min(k, len(pred))]
        truth = set(truth)
        scores.append(sum(t in truth for t in head) / len(head))
    return mean(scores) if scores else 0.0


def coverage_at_k(predictions: Sequence[Sequence[str]], k: int) -> float:
    return mean(len(p) >= k for p in predictions) if predictions else 0.0


def recall_hits(candidates: Sequence[Sequence[str]], truths: Sequence[Iterable[str]], ks: Sequence[int] = (1, 2, 3)) -> dict:
    rights = [len(set(c) & set(t)) for c, t in zip(candidates, truths)]
    out = {"#Right": mean(rights) if rights else 0.0}
    for k in ks:
        out[f"HR#{k}"] = mean(r >= k for r in rights) if rights else 0.0
    return out


def tagging_report(predictions: Sequence[Sequence[str]], truths: Sequence[Iterable[str]], ks: Sequence[int] = (1, 2, 3)) -> dict:
    report = {f"Acc@{k}": acc_at_k(predictions, truths, k) for k in ks}
    report |= {f"Coverage@{k}": coverage_at_k(predictions, k) for k in ks}
    return report


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _column_means(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(mean(x[i] for x in rows) if rows else 0.0 for i in range(3))  # type: ignore[return-value]


def precision_recall_f1(predictions: Sequence[Sequence[str]], truths: Sequence[Iterable[str]]) -> dict:
    tp = fp = fn = 0
    per_doc = []
    for pred, truth in zip(predictions, truths):
        pred, truth = set(pred), set(truth)
        hit = len(pred & truth)
        tp, fp, fn = tp + hit, fp + len(pred) - hit, fn + len(truth) - hit
        p = hit / len(pred) if pred else 0.0
        r = hit / len(truth) if truth else 0.0
        per_doc.append((p, r, _f1(p, r)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    doc_p, doc_r, doc_f1 = _column_means(per_doc)
    return {"precision_micro": p, "recall_micro": r, "f1_micro": _f1(p, r), "precision_doc": doc_p, "recall_doc": doc_r, "f1_doc": doc_f1}


def precision_at_k(predictions, truths, k: int) -> float:
    return mean(sum(t in set(truth) for t in list(pred)[:k]) / k for pred, truth in zip(predictions, truths)) if predictions else 0.0


def ndcg_at_k(predictions, truths, k: int) -> float:
    scores = []
    for pred, truth in zip(predictions, truths):
        truth = set(truth)
        dcg = sum(1 / math.log2(i + 2) for i, t in enumerate(list(pred)[:k]) if t in truth)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(truth))))
        scores.append(dcg / ideal if ideal else 0.0)
    return mean(scores) if scores else 0.0


def f1_at_k(predictions, truths, k: int) -> float:
    return precision_recall_f1([list(p)[:k] for p in predictions], truths)["f1_doc"]


def multi_tag_metrics(predictions, truths) -> dict:
    out = {f"Acc@{k}": acc_at_k(predictions, truths, k) for k in (1, 2, 3)}
    out |= {f"Coverage@{k}": coverage_at_k(predictions, k) for k in (1, 2, 3)}
    out |= precision_recall_f1(predictions, truths)
    out |= {f"P@{k}": precision_at_k(predictions, truths, k) for k in (1, 3, 5)}
    out |= {f"NDCG@{k}": ndcg_at_k(predictions, truths, k) for k in (3, 5)}
    out["F1@5"] = f1_at_k(predictions, truths, 5)
    return out


def single_tag_metrics(predictions, truths) -> dict:
    """Top-1 prediction vs the first true tag: accuracy, micro and macro P/R/F1, coverage."""
    pairs = [(p[0] if p else None, list(t)[0]) for p, t in zip(predictions, truths)]
    answered = [(p, t) for p, t in pairs if p is not None]
    correct = sum(p == t for p, t in answered)
    precision = correct / len(answered) if answered else 0.0
    recall = correct / len(pairs) if pairs else 0.0
    labels = {t for _, t in pairs} | {p for p, _ in answered}
    per_label = []
    for label in labels:
        tp = sum(p == label and t == label for p, t in answered)
        pp = sum(p == label for p, _ in answered)
        ap = sum(t == label for _, t in pairs)
        lp, lr = (tp / pp if pp else 0.0), (tp / ap if ap else 0.0)
        per_label.append((lp, lr, _f1(lp, lr)))
    macro_p, macro_r, macro_f1 = _column_means(per_label)
    return {
        "accuracy": recall,
        "precision_micro": precision,
        "recall_micro": recall,
        "f1_micro": _f1(precision, recall),
        "precision_macro": macro_p,
        "recall_macro": macro_r,
        "f1_macro": macro_f1,
        "Coverage@1": len(answered) / len(pairs) if pairs else 0.0,
    }


def confidence_metrics(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> dict:
    """Expected calibration error, Brier score and AUROC of confidence for right vs wrong tags."""
    if not pairs:
        return {}
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(c, y) for c, y in pairs if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if members:
            ece += len(members) / len(pairs) * abs(mean(c for c, _ in members) - mean(y for _, y in members))
    brier = mean((c - y) ** 2 for c, y in pairs)
    pos = sorted(c for c, y in pairs if y)
    neg = sorted(c for c, y in pairs if not y)
    auroc = None
    if pos and neg:
        wins = sum(sum(1.0 if p > n else 0.5 if p == n else 0.0 for n in neg) for p in pos)
        auroc = wins / (len(pos) * len(neg))
    return {"ECE": ece, "Brier": brier, "AUROC": auroc, "pairs": len(pairs), "share_correct": mean(y for _, y in pairs)}


def reliability_bins(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> list[dict]:
    """The reliability diagram's points: per confidence bin, how many tags fell in it, their mean
    confidence and the share of them that were right (a calibrated system lies on the diagonal)."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(c, y) for c, y in pairs if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if members:
            out.append(
                {
                    "lo": lo,
                    "hi": hi,
                    "count": len(members),
                    "mean_confidence": mean(c for c, _ in members),
                    "share_right": mean(y for _, y in members),
                }
            )
    return out


def per_tag_table(
    predictions: Sequence[Sequence[str]], truths: Sequence[Iterable[str]], scored: Sequence[Sequence[tuple[str, float | None]]] = ()
) -> list[dict]:
    """Per tag (Annif's ``--results-file``): support (items carrying it), how often it was
    returned, true positives, precision, recall, F1 and — from ``scored`` (each item's tags with
    their confidences) — the ECE of its confidences; the worst first (lowest F1, then most
    support), every tag that was either true or returned."""
    truth_sets = [set(t) for t in truths]
    support: dict[str, int] = {}
    returned: dict[str, int] = {}
    hits: dict[str, int] = {}
    for predicted, truth in zip(predictions, truth_sets):
        for tag in truth:
            support[tag] = support.get(tag, 0) + 1
        for tag in dict.fromkeys(predicted):
            returned[tag] = returned.get(tag, 0) + 1
            hits[tag] = hits.get(tag, 0) + (tag in truth)
    pairs: dict[str, list[tuple[float, bool]]] = {}
    for answer, truth in zip(scored, truth_sets):
        for tag, confidence in answer:
            if confidence is not None:
                pairs.setdefault(tag, []).append((confidence, tag in truth))
    rows = []
    for tag in sorted(set(support) | set(returned)):
        tp = hits.get(tag, 0)
        precision = tp / returned[tag] if returned.get(tag) else 0.0
        recall = tp / support[tag] if support.get(tag) else 0.0
        ece = confidence_metrics(pairs[tag])["ECE"] if pairs.get(tag) else None
        rows.append(
            {
                "tag": tag,
                "support": support.get(tag, 0),
                "returned": returned.get(tag, 0),
                "true_positives": tp,
                "precision": precision,
                "recall": recall,
                "f1": _f1(precision, recall),
                "ECE": ece,
            }
        )
    return sorted(rows, key=lambda r: (r["f1"], -r["support"], r["tag"]))


def accuracy_vs_coverage(records: list[dict], steps: int = 20) -> list[dict]:
    """For each confidence threshold: share of items keeping a tag, and Acc@1 on those items."""
    curve = []
    for i in range(steps + 1):
        th = i / steps
        kept = []
        for r in records:
            tags = sorted(((c, j["tag"]) for j in r.get("judged", []) if (c := confidence_of(j)) is not None and c >= th), reverse=True)
            if tags:
                kept.append(tags[0][1] in set(r["truth"]))
        curve.append({"threshold": th, "coverage": len(kept) / len(records) if records else 0.0, "accuracy": mean(kept) if kept else None})
    return curve


def best_cut(
    scored: Sequence[Sequence[tuple[str, float | None]]], truths: Sequence[Iterable[str]], limit: int | None = None
) -> dict | None:
    """A system's micro-F1 at the confidence cut that suits it best (each item's tags with their
    confidences, best first): ``{"threshold", "f1_micro", "precision_micro", "recall_micro"}``;
    None when the system gives no confidences. The cut is chosen on the items scored, so this is
    each system at its best, the fairest comparison for a system whose threshold was never tuned."""
    if not any(c is not None for tags in scored for _, c in tags):
        return None
    truth_sets = [set(t) for t in truths]
    items = [[(c, tag in truth) for tag, c in tags if c is not None] for tags, truth in zip(scored, truth_sets)]
    cut = best_threshold(items, [len(t) for t in truth_sets], limit)
    if cut is None:
        return None
    kept = [
        [tag for tag, c in sorted(((t, c) for t, c in tags if c is not None), key=lambda x: -x[1]) if c >= cut][:limit] for tags in scored
    ]
    m = precision_recall_f1(kept, truth_sets)
    return {"threshold": cut, "f1_micro": m["f1_micro"], "precision_micro": m["precision_micro"], "recall_micro": m["recall_micro"]}
