"""What tagging needs at run time to turn judgments into final tags: the evidence features of a
judged tag, applying a fitted calibration, ranking and thresholding.

The paper's confidence is the judge's softmax over its Yes/No logits. A small judge is badly
calibrated, so a knowledge base may hold a fitted calibration (``calibration.json``, written by
``llm4tag calibrate``, see ``agent.evaluation.calibration``) that maps the judge's P(Yes)
together with what recall already knows — the C2T similarity, the C2C2T vote share, the match
cosine, the generator's rank, whether history kept it — to P(tag is right):

- ``logistic``: logistic regression on those features (like Annif's ensemble backends);
- ``isotonic``: isotonic regression (pool-adjacent-violators) on P(Yes) alone.

The model is plain JSON, never a pickle, and is applied with numpy. Fitting lives with the
offline workflows (``agent.evaluation``); this module only reads and applies.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from knowledge_base.errors import KnowledgeBaseError

Kind = Literal["logistic", "isotonic"]
FEATURES = ("logit_p_yes", "c2t", "c2c2t", "match", "inverse_rank", "from_history", "learned")
FILE_NAME = "calibration.json"
DEFAULT_THRESHOLD = 0.5  # the paper's


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def confidence_of(judged: dict) -> float:
    """A judged tag's final confidence (the learned calibration's, when one was used), else P(Yes)."""
    return judged.get("confidence", judged["p_yes"])


def evidence_features(p_yes: float, candidate: dict | None, rank: int, from_history: bool) -> dict[str, float]:
    """The features of one judged tag; ``candidate`` is a recall candidate dict (or None)."""
    scores = {"C2T": 0.0, "C2C2T": 0.0, "match": 0.0, "learned": 0.0}
    for ev in (candidate or {}).get("evidence", []):
        scores[ev["path"]] = max(scores.get(ev["path"], 0.0), float(ev["score"]))
    return {
        "logit_p_yes": logit(p_yes),
        "c2t": scores["C2T"],
        "c2c2t": scores["C2C2T"],
        "match": scores["match"],
        "inverse_rank": 1.0 / max(rank, 1),
        "from_history": 1.0 if from_history else 0.0,
        "learned": scores["learned"],
    }


def rank_tags(judgments: list[dict], threshold: float | None) -> list[dict]:
    """Final tags from judged tags: drop those under the threshold, rank by confidence."""
    kept = [j for j in judgments if threshold is None or j["confidence"] is None or j["confidence"] >= threshold]
    if all(j["confidence"] is not None for j in kept):
        kept = sorted(kept, key=lambda j: -j["confidence"])
    return [{**j, "rank": i} for i, j in enumerate(kept, 1)]


def scored_tags(result: dict) -> list[dict]:
    """Every generated tag of a tagging result with its confidence, before any threshold."""
    selection = result.get("selection") or {}
    by_tag = {c["tag"]: c for c in result.get("candidates") or []}
    confidence = {j["tag"]: confidence_of(j) for j in result.get("judgments") or []}
    from_history = set(selection.get("from_history") or [])
    return [
        {
            "tag": t,
            "confidence": confidence.get(t),
            "description": by_tag.get(t, {}).get("description", ""),
            "paths": by_tag.get(t, {}).get("paths", []),
            "origin": "history" if t in from_history else "llm",
        }
        for t in selection.get("tags") or []
    ]


def rethreshold(result: dict, threshold: float) -> list[dict]:
    """A result's final tags at another threshold, from the judgments already made (no model call)."""
    if not result.get("judgments"):
        return list(result.get("tags") or [])
    return rank_tags(scored_tags(result), threshold)


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
    features: list[str] = field(default_factory=lambda: list(FEATURES))  # the inputs, in coefficient order

    def predict(self, features: dict[str, float]) -> float:
        if self.kind == "isotonic":
            return float(np.interp(sigmoid(features["logit_p_yes"]), self.x_thresholds, self.y_thresholds))
        x = (np.array([features.get(f, 0.0) for f in self.features]) - np.array(self.scale_mean)) / np.array(self.scale_std)
        return sigmoid(float(np.dot(self.coefficients, x) + self.intercept))

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
            data.setdefault("features", list(FEATURES[:6]))  # written before the learned path existed
            model = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise KnowledgeBaseError(f"{path} is not a valid calibration ({exc}); delete it or run llm4tag calibrate again") from exc
        if model.kind not in ("logistic", "isotonic"):
            raise KnowledgeBaseError(f"{path} has unknown kind {model.kind!r}; delete it or run llm4tag calibrate again")
        return model
