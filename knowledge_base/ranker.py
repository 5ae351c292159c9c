"""The recall ranker (beyond the paper): P(candidate is right) from all of recall's evidence.

Recall's paths score on different scales — a C2T cosine, a C2C2T vote share, the classifier's
score, a match cosine — and summing them ranks badly. The ranker is a logistic regression over
the evidence of each candidate (one feature per path and its rank on it, how many paths found it,
the tag's prior in the history, and how close the content's nearest history item and nearest
tag are), fitted without leakage: on a held-out slice of the history, recalled
with a classifier trained without that slice and with each item's own history entry hidden
from C2C2T. It is stored with the classifier as plain JSON and applied with numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import KnowledgeBaseError

FILE_NAME = "ranker.json"
FEATURES = ("c2t", "c2c2t", "learned", "match", "paths", "log_prior", "c2t_rank", "c2c2t_rank", "learned_rank",
            "top_content_similarity", "top_tag_similarity")
RANKED = {"C2T": "c2t_rank", "C2C2T": "c2c2t_rank", "learned": "learned_rank"}
PATHS = {"C2T": "c2t", "C2C2T": "c2c2t", "learned": "learned", "match": "match"}
MIN_PRIOR = 1e-4


def path_ranks(candidates: Sequence) -> dict[tuple[str, str], int]:
    """(tag, path) → the candidate's rank within that path (1 = the path's best)."""
    by_path: dict[str, list[tuple[float, str]]] = {}
    for c in candidates:
        for ev in c.evidence:
            by_path.setdefault(ev.path, []).append((ev.score, c.tag))
    return {(tag, path): i for path, scored in by_path.items() for i, (_, tag) in enumerate(sorted(scored, key=lambda x: -x[0]), 1)}


def candidate_features(evidence: Sequence, prior: float, ranks: dict[str, int] | None = None,
                       item: dict[str, float] | None = None) -> dict[str, float]:
    """The ranker's inputs for one candidate: the best score on each path, how many paths found it,
    its prior in the history, 1/rank within each ranked path (``ranks``: path → rank), and how
    well the content fits the knowledge base at all (``item``: the similarity of its nearest
    history content and of its nearest tag) — low for content that fits no tag, so that such
    content gets low confidence instead of the most common tags."""
    out = {name: 0.0 for name in FEATURES}
    out.update(item or {})
    for path, rank in (ranks or {}).items():
        if path in RANKED:
            out[RANKED[path]] = 1.0 / rank
    for ev in evidence:
        out[PATHS[ev.path]] = max(out[PATHS[ev.path]], float(ev.score))
    out["paths"] = float(sum(1 for p in PATHS.values() if out[p] > 0))
    out["log_prior"] = math.log(max(prior, MIN_PRIOR))
    return out


@dataclass
class RecallRanker:
    coefficients: list[float]
    intercept: float
    scale_mean: list[float]
    scale_std: list[float]
    priors: dict[str, float] = field(default_factory=dict)  # tag → share of the history's samples carrying it
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    items: int = 0  # held-out items it was fitted on
    pairs: int = 0
    share_right: float = 0.0

    def prior(self, tag: str) -> float:
        return self.priors.get(tag, 0.0)

    def predict(self, features: dict[str, float]) -> float:
        x = (np.array([features[f] for f in self.features]) - np.array(self.scale_mean)) / np.array(self.scale_std)
        return 1.0 / (1.0 + math.exp(-(float(np.dot(self.coefficients, x)) + self.intercept)))

    @classmethod
    def fit(cls, rows: list[dict[str, float]], labels: list[bool], priors: dict[str, float], items: int) -> "RecallRanker | None":
        """Fit on (features, is-right) pairs; None when the pairs cannot support a fit."""
        y = np.array([1 if v else 0 for v in labels])
        if len(y) < 20 or y.min() == y.max():
            return None
        from sklearn.linear_model import LogisticRegression

        x = np.array([[r[f] for f in FEATURES] for r in rows], dtype=float)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0
        model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / std, y)
        return cls([float(c) for c in model.coef_[0]], float(model.intercept_[0]), [float(v) for v in mean], [float(v) for v in std],
                   priors=priors, items=items, pairs=int(len(y)), share_right=float(y.mean()))

    def save(self, directory: Path) -> None:
        (Path(directory) / FILE_NAME).write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "RecallRanker | None":
        path = Path(directory) / FILE_NAME
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise KnowledgeBaseError(f"{path} is damaged ({exc}); run llm4tag kb train-classifier again") from exc
