"""What tagging needs at run time to turn recall, generation and judgment into final tags: the
evidence features of a scored tag, the fused confidence, ranking and thresholding.

The paper's confidence is the judge's softmax over its Yes/No logits. A small judge is badly
calibrated and may know less than recall does, so the confidence of a tag is one fused
probability from all the evidence (``FEATURES``): the judge's P(Yes), whether and where the
generator chose it, recall's own score and rank (the recall ranker's P(right) when the knowledge
base has one), each meta-path's score and whether history kept it. A knowledge base may hold a
fitted fusion (``calibration.json``, written by ``llm4tag calibrate``, see
``agent.evaluation.calibration``), fitted on labelled items none of whose annotations the paths
could see:

- ``logistic``: logistic regression on those features (like Annif's ensemble backends);
- ``isotonic``: isotonic regression (pool-adjacent-violators) on P(Yes) alone.

Without a fit, the default (``fused_confidence``) is recall's own P(right) when the knowledge
base has a recall ranker — an LLM step then only adds evidence, it cannot throw recall away —
and the paper's P(Yes) otherwise. The model is plain JSON, never a pickle, and is applied with
numpy. Fitting lives with the offline workflows (``agent.evaluation``); this module only reads
and applies.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from knowledge_base.hierarchy import consistent, path
from knowledge_base.errors import KnowledgeBaseError
from knowledge_base.ranker import verdict_probability

Kind = Literal["logistic", "isotonic"]
FEATURES = (
    "logit_p_yes",
    "c2t",
    "c2c2t",
    "match",
    "inverse_rank",
    "from_history",
    "learned",
    "generated",
    "judged",
    "recall_score",
    "recall_inverse_rank",
    "recall_logit",
)
FILE_NAME = "calibration.json"
DEFAULT_THRESHOLD = 0.5  # the paper's


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def confidence_of(judged: dict) -> float | None:
    """A scored tag's final confidence (the fused one), else the judge's P(Yes)."""
    return judged["confidence"] if "confidence" in judged else judged.get("p_yes")


def evidence_features(
    p_yes: float | None,
    candidate: dict | None,
    generated_rank: int | None,
    from_history: bool,
    recall_rank: int | None = None,
    recall_probability: float | None = None,
) -> dict[str, float]:
    """The features of one scored tag: ``p_yes`` the judge's P(Yes) (None: not judged),
    ``candidate`` its recall candidate dict (or None), ``generated_rank`` its position in the
    generator's answer (None: not chosen), ``recall_rank`` its position among the candidates,
    ``recall_probability`` the recall ranker's P(right) (None: the knowledge base has no ranker)."""
    scores = {"C2T": 0.0, "C2C2T": 0.0, "match": 0.0, "learned": 0.0}
    for ev in (candidate or {}).get("evidence", []):
        scores[ev["path"]] = max(scores.get(ev["path"], 0.0), float(ev["score"]))
    return {
        "logit_p_yes": logit(p_yes) if p_yes is not None else 0.0,
        "c2t": scores["C2T"],
        "c2c2t": scores["C2C2T"],
        "match": scores["match"],
        "inverse_rank": 1.0 / generated_rank if generated_rank else 0.0,
        "from_history": 1.0 if from_history else 0.0,
        "learned": scores["learned"],
        "generated": 1.0 if generated_rank else 0.0,
        "judged": 1.0 if p_yes is not None else 0.0,
        "recall_score": float((candidate or {}).get("score") or 0.0),
        "recall_inverse_rank": 1.0 / recall_rank if recall_rank else 0.0,
        "recall_logit": logit(recall_probability) if recall_probability is not None else 0.0,
    }


def fused_confidence(
    features: dict[str, float],
    p_yes: float | None,
    recall_probability: float | None,
    fitted: "LearnedCalibration | None",
    use_learned: bool = True,
) -> float | None:
    """A scored tag's confidence: the knowledge base's fitted fusion when there is one; else
    recall's own P(right) (the recall ranker's); the paper's P(Yes) when ``use_learned`` is off
    or recall has no probability; None when nothing gives one (no judge, no ranker)."""
    if use_learned and fitted is not None:
        return fitted.predict(features)
    if use_learned and recall_probability is not None:
        return recall_probability
    return p_yes if p_yes is not None else recall_probability


SAME_TEXT = 0.999  # a verdict on a text this similar is a verdict on this very text


def rejected_here(candidate: dict | None) -> bool:
    """Whether a person marked this tag wrong on this very text: it is never returned, whatever the threshold."""
    memory = remembered_verdict(candidate)
    return memory is not None and memory["verdict"] == "wrong" and memory["similarity"] >= SAME_TEXT


def remembered_verdict(candidate: dict | None) -> dict | None:
    """A person's verdict on this text or a near-duplicate (recall's ``memory`` evidence):
    ``{"verdict": "right"|"wrong", "similarity", "id"}``, or None."""
    for ev in (candidate or {}).get("evidence", []):
        if ev["path"] == "memory" and ev.get("via"):
            return {**ev["via"][0], "similarity": float(ev["score"])}
    return None


def final_confidence(confidence: float | None, candidate: dict | None, in_domain: float = 1.0) -> float | None:
    """The confidence after what no model may overrule: a person's verdict on the same or a
    near-duplicate text (at least the texts' similarity when marked right, at most one minus it
    when marked wrong) and the content's fit to the domain (``in_domain`` caps it)."""
    if confidence is not None and in_domain < 1.0:
        confidence = min(confidence, in_domain)
    memory = remembered_verdict(candidate)
    return confidence if memory is None else verdict_probability(confidence, memory["verdict"], memory["similarity"])


def rank_tags(scored: list[dict], threshold: float | None, limit: int | None = None, tree: dict | None = None) -> list[dict]:
    """Final tags from scored tags: drop those under the threshold, rank by confidence (a stable
    sort: tags without a confidence keep their given order), keep at most ``limit``; with a tag
    ``tree`` ({"parents": child → parent, "output": knowledge_base.hierarchy's rule}), made to agree
    with it, and each tag in it given its ``path``, root first."""
    kept = [j for j in scored if threshold is None or j["confidence"] is None or j["confidence"] >= threshold]
    if all(j["confidence"] is not None for j in kept):
        kept = sorted(kept, key=lambda j: -j["confidence"])
    kept = kept[:limit] if limit else kept
    parents = (tree or {}).get("parents") or {}
    if parents:
        kept = [
            {**j, **({"path": path(j["tag"], parents)} if j["tag"] in parents else {})}
            for j in consistent(kept, parents, tree.get("output", "as-is"))
        ]
    return [{**j, "rank": i} for i, j in enumerate(kept, 1)]


def scored_tags(result: dict) -> list[dict]:
    """Every scored tag of a tagging result with its confidence and origin, before any threshold —
    but a tag a person marked wrong on this very text, which is never returned."""
    by_tag = {c["tag"]: c for c in result.get("candidates") or []}
    from_history = set((result.get("selection") or {}).get("from_history") or [])  # results made before origins were stored
    return [
        {
            "tag": j["tag"],
            "confidence": confidence_of(j),
            "description": by_tag.get(j["tag"], {}).get("description", ""),
            "paths": by_tag.get(j["tag"], {}).get("paths", []),
            "origin": j.get("origin") or ("history" if j["tag"] in from_history else "llm"),
        }
        for j in result.get("judgments") or []
        if not rejected_here(by_tag.get(j["tag"]))
    ]


def rethreshold(result: dict, threshold: float, limit: int | None = None) -> list[dict]:
    """A result's final tags at another threshold, from the scores already made (no model call)."""
    if not result.get("judgments"):
        return list(result.get("tags") or [])
    return rank_tags(scored_tags(result), threshold, limit or (result.get("selection") or {}).get("limit"), result.get("tree"))


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
            return float(np.interp(sigmoid(features["logit_p_yes"]), self.x_thresholds, self.y_thresholds))  # judge only
        x = (np.array([features.get(f, 0.0) for f in self.features]) - np.array(self.scale_mean)) / np.array(self.scale_std)
        return sigmoid(float(np.dot(self.coefficients, x) + self.intercept))

    def describe(self) -> str:
        return f"fitted {self.kind} fusion ({self.pairs} pairs, {self.fitted_at[:10]})"

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
