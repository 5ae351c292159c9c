"""Tagging and recall metrics as the LLM4Tag paper defines them.

- Acc@k: precision of the first min(k, |T_i|) returned tags, T_i the tags returned for item i,
  averaged over the items that got at least one tag (Coverage@1 says how many did).
- Coverage@k: share of items with at least k returned tags.
- #Right: mean number of correct tags in the candidate set; HR#k: share of items whose candidate
  set holds at least k correct tags.
"""

from __future__ import annotations

from statistics import mean
from typing import Iterable, Sequence


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
