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


def judged_pairs(records: Sequence[dict]) -> tuple[list[dict[str, float]], list[bool], list[str], list[float]]:
    """From evaluation records: each judged tag's features, whether it is right, its item, its P(Yes)."""
    rows = [(r["id"], j, j["tag"] in set(r["truth"])) for r in records for j in r.get("judged", []) if "features" in j]
    return [j["features"] for _, j, _ in rows], [y for _, _, y in rows], [g for g, _, _ in rows], [j["p_yes"] for _, j, _ in rows]


def fit_calibration(features: Sequence[dict[str, float]], labels: Sequence[bool], kind: Kind = "logistic", source: str = "") -> LearnedCalibration:
    """Fit a calibration on (features, is-right) pairs from a labelled run."""
    if kind not in ("logistic", "isotonic"):
        raise InputError(f"unknown calibration kind {kind!r}; choose logistic or isotonic")
    y = np.array([1 if v else 0 for v in labels])
    if len(y) < 20 or y.min() == y.max():
        raise InputError(f"a calibration needs at least 20 judged tags with both right and wrong ones; got {len(y)} "
                         f"({int(y.sum())} right) — evaluate more labelled items first")
    common = dict(pairs=int(len(y)), share_right=float(y.mean()), fitted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), source=source)
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        p = np.array([sigmoid(f["logit_p_yes"]) for f in features])
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return LearnedCalibration("isotonic", x_thresholds=[float(v) for v in iso.X_thresholds_],
                                  y_thresholds=[float(v) for v in iso.y_thresholds_], **common)
    from sklearn.linear_model import LogisticRegression

    x = np.array([[f.get(name, 0.0) for name in FEATURES] for f in features], dtype=float)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / std, y)
    return LearnedCalibration("logistic", coefficients=[float(c) for c in model.coef_[0]], intercept=float(model.intercept_[0]),
                              scale_mean=[float(v) for v in mean], scale_std=[float(v) for v in std], **common)


def cross_validated(features: Sequence[dict[str, float]], labels: Sequence[bool], groups: Sequence[str], kind: Kind, folds: int = 5) -> list[float]:
    """Out-of-fold predictions: each item's tags are scored by a calibration fitted without that item."""
    names = sorted(set(groups))
    fold_of = {g: i % folds for i, g in enumerate(names)}
    out = [0.0] * len(labels)
    for k in range(folds):
        train = [i for i, g in enumerate(groups) if fold_of[g] != k]
        test = [i for i, g in enumerate(groups) if fold_of[g] == k]
        if not test:
            continue
        model = fit_calibration([features[i] for i in train], [labels[i] for i in train], kind)
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
