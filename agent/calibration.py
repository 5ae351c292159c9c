"""Learned calibration (beyond the paper): P(tag is right) from the judge and the recall evidence.

The paper's confidence is the judge's softmax over its Yes/No logits. A small judge is badly
calibrated: its P(Yes) sits in a narrow band whatever the tag. Fitted on a labelled validation
run (``llm4tag calibrate``), a tiny model maps the judge's P(Yes) together with what recall
already knows — the C2T similarity, the C2C2T vote share of similar history items, the match
cosine, the generator's rank — to a probability that the tag is right:

- ``logistic``: logistic regression on those features (like Annif's ensemble backends);
- ``isotonic``: isotonic regression (pool-adjacent-violators) on P(Yes) alone.

The fitted model is stored as plain JSON (``calibration.json`` in the knowledge base), never as
a pickle, and applied with numpy. ``cross_validated`` gives out-of-fold predictions, so a
calibration's error is always reported on pairs it was not fitted on.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from knowledge_base.errors import InputError, KnowledgeBaseError

Kind = Literal["logistic", "isotonic"]
FEATURES = ("logit_p_yes", "c2t", "c2c2t", "match", "inverse_rank", "from_history")
FILE_NAME = "calibration.json"


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def confidence_of(judged: dict) -> float:
    """A judged tag's final confidence (the learned calibration's, when one was used), else P(Yes)."""
    return judged.get("confidence", judged["p_yes"])


def judged_pairs(records: Sequence[dict]) -> tuple[list[dict[str, float]], list[bool], list[str], list[float]]:
    """From evaluation records: each judged tag's features, whether it is right, its item, its P(Yes)."""
    rows = [(r["id"], j, j["tag"] in set(r["truth"])) for r in records for j in r.get("judged", []) if "features" in j]
    return [j["features"] for _, j, _ in rows], [y for _, _, y in rows], [g for g, _, _ in rows], [j["p_yes"] for _, j, _ in rows]


def evidence_features(p_yes: float, candidate: dict | None, rank: int, from_history: bool) -> dict[str, float]:
    """The features of one judged tag; ``candidate`` is a recall candidate dict (or None)."""
    scores = {"C2T": 0.0, "C2C2T": 0.0, "match": 0.0}
    for ev in (candidate or {}).get("evidence", []):
        scores[ev["path"]] = max(scores.get(ev["path"], 0.0), float(ev["score"]))
    return {
        "logit_p_yes": _logit(p_yes),
        "c2t": scores["C2T"],
        "c2c2t": scores["C2C2T"],
        "match": scores["match"],
        "inverse_rank": 1.0 / max(rank, 1),
        "from_history": 1.0 if from_history else 0.0,
    }


@dataclass
class LearnedCalibration:
    kind: Kind
    coefficients: list[float] = field(default_factory=list)  # logistic: one per FEATURES entry
    intercept: float = 0.0
    scale_mean: list[float] = field(default_factory=list)  # logistic: feature standardisation
    scale_std: list[float] = field(default_factory=list)
    x_thresholds: list[float] = field(default_factory=list)  # isotonic: P(Yes) → P(right) steps
    y_thresholds: list[float] = field(default_factory=list)
    pairs: int = 0
    share_right: float = 0.0
    fitted_at: str = ""
    source: str = ""

    def predict(self, features: dict[str, float]) -> float:
        if self.kind == "isotonic":
            return float(np.interp(_sigmoid(features["logit_p_yes"]), self.x_thresholds, self.y_thresholds))
        x = (np.array([features[f] for f in FEATURES]) - np.array(self.scale_mean)) / np.array(self.scale_std)
        return _sigmoid(float(np.dot(self.coefficients, x) + self.intercept))

    def describe(self) -> str:
        return f"learned {self.kind} calibration ({self.pairs} pairs, {self.fitted_at[:10]})"

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "LearnedCalibration | None":
        path = Path(directory) / FILE_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            model = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise KnowledgeBaseError(f"{path} is not a valid calibration ({exc}); delete it or run llm4tag calibrate again") from exc
        if model.kind not in ("logistic", "isotonic"):
            raise KnowledgeBaseError(f"{path} has unknown kind {model.kind!r}; delete it or run llm4tag calibrate again")
        return model


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

        p = np.array([_sigmoid(f["logit_p_yes"]) for f in features])
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return LearnedCalibration("isotonic", x_thresholds=[float(v) for v in iso.X_thresholds_],
                                  y_thresholds=[float(v) for v in iso.y_thresholds_], **common)
    from sklearn.linear_model import LogisticRegression

    x = np.array([[f[name] for name in FEATURES] for f in features], dtype=float)
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
    from .evaluation import confidence_metrics

    out = {}
    for kind in kinds:
        try:
            out[kind] = confidence_metrics(list(zip(cross_validated(features, labels, groups, kind, folds), labels)))
        except InputError:
            continue
    return out


def choose_and_fit(kb, validation: str | Path, context, out_dir: str | Path, limit: int | None = 300, seed: int | None = 13,
                   kind: str = "auto", offset: int = 0) -> dict:
    """Run the pipeline on labelled items (resumable), compare the raw P(Yes) with each learned
    calibration out of fold, and save the chosen one into the knowledge base.

    ``auto`` keeps whichever has the lowest Brier score (a proper scoring rule: calibration and
    separation together; ECE alone rewards a model that says the base rate for everything), and
    none at all when the raw P(Yes) scores better (an earlier calibration.json is then removed)."""
    from .evaluation import confidence_metrics, evaluate, load_labelled

    items = load_labelled(validation, limit, seed, offset)
    evaluate(items, context.with_overrides(kb_dir=str(kb.directory)), out_dir, ["full"])
    from .batch import read_finished

    wanted = {i.id for i in items}
    records = [r for r in read_finished(Path(out_dir) / "items-full.jsonl").values() if r["id"] in wanted]
    features, labels, groups, p_yes = judged_pairs(records)
    kinds = ["isotonic", "logistic"] if kind == "auto" else [kind]
    report: dict = {"items": len(records), "pairs": len(labels), "raw": confidence_metrics(list(zip(p_yes, labels))),
                    **compare_out_of_fold(features, labels, groups, kinds)}
    fitted = [k for k in kinds if k in report]
    if not fitted:
        raise InputError(f"no calibration could be fitted on {len(labels)} judged tags ({sum(labels)} right); evaluate more labelled items")
    best = min(fitted, key=lambda k: (report[k]["Brier"], report[k]["ECE"]))
    if kind == "auto" and report["raw"]["Brier"] <= report[best]["Brier"]:
        (Path(kb.directory) / FILE_NAME).unlink(missing_ok=True)
        report["chosen"] = "raw P(Yes) (no learned calibration beats it out of fold)"
        return report
    model = fit_calibration(features, labels, best, source=f"{validation} ({len(records)} items)")
    report["chosen"] = best
    report["saved"] = str(model.save(kb.directory))
    return report
