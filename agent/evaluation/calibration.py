"""Fitting the learned calibration (beyond the paper) on a labelled run, without leakage.

``fit_calibration`` fits a ``LearnedCalibration`` (``agent.confidence``: the model tagging
applies) on (features, is-right) pairs; ``cross_validated`` gives out-of-fold predictions, so a
calibration's error is always reported on pairs it was not fitted on.
Running the pipeline and saving the chosen one is the calibrate workflow (``agent.evaluation.calibrate``, ``llm4tag calibrate``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

import numpy as np

from knowledge_base.errors import InputError

from ..confidence import FEATURES, Kind, LearnedCalibration, sigmoid
from .metrics import confidence_metrics


def judged_pairs(records: Sequence[dict]) -> tuple[list[dict[str, float]], list[bool], list[str], list[float | None]]:
    """From evaluation records: each scored tag's features, whether it is right, its item, and
    its confidence without a fitted fusion (recall's P(right) when the run had one, else P(Yes))."""
    rows = [(r["id"], j, j["tag"] in set(r["truth"])) for r in records for j in r.get("judged", []) if "features" in j]
    unfitted = [j.get("recall_probability") if j.get("recall_probability") is not None else j.get("p_yes") for _, j, _ in rows]
    return [j["features"] for _, j, _ in rows], [y for _, _, y in rows], [g for g, _, _ in rows], unfitted


def fit_calibration(
    features: Sequence[dict[str, float]], labels: Sequence[bool], kind: Kind = "logistic", source: str = "", names: Sequence[str] = FEATURES
) -> LearnedCalibration:
    """Fit a calibration (the fusion) on (features, is-right) pairs from a labelled run; ``names``
    are the features a logistic fusion uses (all of them by default)."""
    if kind not in ("logistic", "isotonic"):
        raise InputError(f"unknown calibration kind {kind!r}; choose logistic or isotonic")
    y = np.array([1 if v else 0 for v in labels])
    if len(y) < 20 or y.min() == y.max():
        raise InputError(
            f"a calibration needs at least 20 judged tags with both right and wrong ones; got {len(y)} "
            f"({int(y.sum())} right) — evaluate more labelled items first"
        )
    common = dict(
        pairs=int(len(y)), share_right=float(y.mean()), fitted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), source=source
    )
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        p = np.array([sigmoid(f["logit_p_yes"]) for f in features])
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return LearnedCalibration(
            "isotonic", x_thresholds=[float(v) for v in iso.X_thresholds_], y_thresholds=[float(v) for v in iso.y_thresholds_], **common
        )
    from sklearn.linear_model import LogisticRegression

    x = np.array([[f.get(name, 0.0) for name in names] for f in features], dtype=float)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / std, y)
    return LearnedCalibration(
        "logistic",
        coefficients=[float(c) for c in model.coef_[0]],
        intercept=float(model.intercept_[0]),
        scale_mean=[float(v) for v in mean],
        scale_std=[float(v) for v in std],
        features=list(names),
        **common,
    )


def cross_validated(
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    groups: Sequence[str],
    kind: Kind,
    folds: int = 5,
    names: Sequence[str] = FEATURES,
) -> list[float]:
    """Out-of-fold predictions: each item's tags are scored by a calibration fitted without that item."""
    fold_of = {g: i % folds for i, g in enumerate(sorted(set(groups)))}
    out = [0.0] * len(labels)
    for k in range(folds):
        train = [i for i, g in enumerate(groups) if fold_of[g] != k]
        test = [i for i, g in enumerate(groups) if fold_of[g] == k]
        if not test:
            continue
        model = fit_calibration([features[i] for i in train], [labels[i] for i in train], kind, names=names)
        for i in test:
            out[i] = model.predict(features[i])
    return out


def compare_out_of_fold(features, labels, groups, kinds=("isotonic", "logistic"), folds: int = 5) -> dict[str, dict]:
    """Each kind's confidence metrics on out-of-fold predictions (a kind that cannot be fitted is left out)."""
    out = {}
    for kind in kinds:
        try:
            out[kind] = confidence_metrics(list(zip(cross_validated(features, labels, groups, kind, folds), labels)))
        except InputError:
            continue
    return out


def learned_confidence_metrics(records: list[dict], folds: int = 5) -> dict:
    """Calibration error of each learned calibration, out of fold (fitted without the item scored)."""
    features, labels, groups, _ = judged_pairs(records)
    if len(labels) < 5 * folds or len(set(labels)) < 2:
        return {}
    return compare_out_of_fold(features, labels, groups, folds=folds)


RECALL_EVIDENCE = ("c2t", "c2c2t", "match", "learned", "recall_score", "recall_inverse_rank", "recall_logit")
GENERATOR_EVIDENCE = ("generated", "inverse_rank", "from_history")
JUDGE_EVIDENCE = ("logit_p_yes", "judged")
EVIDENCE_SETS = {
    "recall only": RECALL_EVIDENCE,
    "recall + generator": RECALL_EVIDENCE + GENERATOR_EVIDENCE,
    "recall + judge": RECALL_EVIDENCE + JUDGE_EVIDENCE,
    "all (recall + generator + judge)": FEATURES,
    "judge alone": JUDGE_EVIDENCE,
}


def fusion_ablation(
    records: Sequence[dict], truths: Sequence[Sequence[str]], single: bool, folds: int = 5, kinds: dict[str, set[str]] | None = None
) -> dict[str, dict]:
    """What each kind of evidence adds, measured without leakage and without another model call:
    the full run's scored tags re-ranked by a logistic fusion of each evidence set, fitted out of
    fold (each item scored by a fusion fitted on the other items). Per set: the headline metric at
    full coverage and the fused confidence's ECE, Brier and AUROC; with ``kinds`` (name → item
    ids, e.g. in-domain, cold, foreign), the same for each kind of item apart (``by_kind``; for
    foreign items, whose truth is empty, the confidence figures and the share whose best fused
    confidence stays under 0.5)."""
    from .metrics import multi_tag_metrics, single_tag_metrics

    features, labels, groups, _ = judged_pairs(records)
    if len(labels) < 5 * folds or len(set(labels)) < 2:
        return {}
    headline = "f1_micro" if single else "Acc@1"
    tags = [j["tag"] for r in records for j in r.get("judged", []) if "features" in j]  # in judged_pairs' order
    out: dict[str, dict] = {}
    for name, names in EVIDENCE_SETS.items():
        try:
            predicted = cross_validated(features, labels, groups, "logistic", folds, names)
        except InputError:
            continue
        by_item: dict[str, list[tuple[float, str]]] = {}
        for g, p, t in zip(groups, predicted, tags):
            by_item.setdefault(g, []).append((p, t))
        ranked = [[t for _, t in sorted(by_item.get(r["id"], []), key=lambda x: -x[0])][: (1 if single else 5)] for r in records]
        metric = single_tag_metrics if single else multi_tag_metrics
        scoring = [n for n, t in enumerate(truths) if t]  # foreign items have no right tag to rank
        score = metric([ranked[n] for n in scoring], [truths[n] for n in scoring])
        out[name] = {headline: score[headline], **confidence_metrics(list(zip(predicted, labels)))}
        for kind, ids in (kinds or {}).items():
            chosen = [n for n, r in enumerate(records) if r["id"] in ids]
            pairs = [(p, y) for g, p, y in zip(groups, predicted, labels) if g in ids]
            if not chosen or not pairs:
                continue
            figures = confidence_metrics(pairs)
            if any(truths[n] for n in chosen):
                figures[headline] = metric([ranked[n] for n in chosen], [truths[n] for n in chosen])[headline]
            else:
                figures["left_untagged_at_0.5"] = sum(
                    1 for n in chosen if max((p for p, _ in by_item.get(records[n]["id"], [])), default=0.0) < 0.5
                ) / len(chosen)
            out[name].setdefault("by_kind", {})[kind] = figures
    return out
