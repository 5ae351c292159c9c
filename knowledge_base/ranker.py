"""The recall ranker (beyond the paper): P(candidate is right) from all of recall's evidence.

Recall's paths score on different scales — a C2T cosine, a C2C2T vote share, the classifier's
score, a match cosine — and summing them ranks badly. The ranker is a logistic regression over
the evidence of each candidate (one feature per path, in log-odds too, and its rank on it, how many paths found it,
the tag's prior in the history, and how close the content's nearest history item and nearest
tag are), fitted without leakage: on a held-out slice of the history, recalled
with a classifier trained without that slice and with each item's own history entry hidden
from C2C2T. It is stored with the classifier as plain JSON and applied with numpy.

Tags without history. A tag added to the repository with only its description has no prior, no
classifier score and no C2C2T votes; a ranker fitted only on tags with history buries it. So
the fitting slice is recalled as if a seeded share of the tags had no history yet (their
annotations hidden from the classifier, the priors and C2C2T), and the ranker has an indicator
of history with its own weights for the description evidence (``cold_*`` features): it learns
how far to trust a description when nothing else speaks for a tag, and how much a confident
classifier speaking for another tag (``top_learned``) counts against it.

Content that fits nothing. The ranker's slice holds in-domain items only, so on its own it cannot
learn what a foreign text looks like. Two signals say it, each with a cut below which only 2.5%
of the slice's items lie and their spread above it (``domain_signals``):

- ``top_content_similarity``, how close the nearest history item is (nearest-neighbour
  out-of-distribution detection, Sun et al. 2022): it catches texts of another domain of the
  same kind, a banking question in a home-assistant history;
- ``history_likeness``, a logistic regression of the history's embeddings against a corpus of
  everyday texts shipped with llm4tag (``contrast``: outlier exposure, Hendrycks et al. 2019),
  fitted without the slice and without the everyday texts that lie as close to the history as
  its items do: it catches everyday text that shares its words with the domain — a weather
  report in a history of weather requests, where the nearest history item is close.

``in_domain`` is the least of the two signals' probabilities (1 at or above the cut, halved every
quarter of the in-domain spread below it), so either can say a text is foreign; it multiplies
every candidate's P(right). Measured at the cut that keeps 95% of hwu64's in-domain test items:
the nearest history item alone left 77% of the everyday texts untagged, both 92%. The nearest
tag's closeness, once combined with the nearest item by Fisher's method, did worse than the
item alone on every dev set and the demo; a ranker saved with that combination (``grids``)
keeps using it.

``threshold`` is the knowledge base's default threshold until one is tuned with ``llm4tag optimize
--apply``: the cut that maximised micro-F1 on the slice, or for a single-tag history the highest
cut that still tags 98% of it (``learned_recall``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import KnowledgeBaseError

FILE_NAME = "ranker.json"
FEATURES = (
    "c2t",
    "c2c2t",
    "learned",
    "match",
    "paths",
    "log_prior",
    "c2t_rank",
    "c2c2t_rank",
    "learned_rank",
    "top_content_similarity",
    "top_tag_similarity",
    "history",
    "tag_similarity",
    "tag_similarity_gap",
    "top_learned",
    "cold_tag_similarity",
    "cold_tag_similarity_gap",
    "cold_c2t_rank",
    "cold_top_learned",
    "neighbour_tags",
    "neighbour_tags_learned",
    "neighbour_tags_c2c2t",
    "learned_logit",
    "learned_found",
    "c2c2t_logit",
    "c2c2t_found",
    "sibling_evidence",
    "children_evidence",
    "parent_evidence",
    "family_best",
)  # the last four: knowledge_base.hierarchy (0 outside a tree)
RANKED = {"C2T": "c2t_rank", "C2C2T": "c2c2t_rank", "learned": "learned_rank"}
PATHS = {"C2T": "c2t", "C2C2T": "c2c2t", "learned": "learned", "match": "match"}
MIN_PRIOR = 1e-4
DOMAIN_KEYS = ("top_content_similarity", "history_likeness")
# below a signal's cut, P(in domain) halves every this share of its in-domain spread: a steeper fall (1/16)
# left 87% of hwu64's everyday texts untagged instead of 85%, but cost debtags 0.008 micro-F1 (the 5% of
# in-domain items below a cut lose every tag, and debtags' items carry five)
SIGNAL_HALVING = 0.25


def probability(p: float) -> float:
    """A probability as shown: 4 places, never a certain 0 or 1."""
    return round(min(max(p, 1e-4), 1 - 1e-4), 4)


def verdict_probability(p: float | None, verdict: str, similarity: float) -> float:
    """A tag's P(right) after a person's verdict on a text this similar (1: the same text): at
    least the similarity when it was marked right, at most one minus it when marked wrong. The
    one rule recall and the confidence step (``agent.confidence.final_confidence``) apply."""
    if verdict == "right":
        return probability(max(p or 0.0, similarity))
    return probability(min(p if p is not None else 1.0, 1.0 - similarity))


def path_ranks(candidates: Sequence) -> dict[tuple[str, str], int]:
    """(tag, path) → the candidate's rank within that path (1 = the path's best)."""
    by_path: dict[str, list[tuple[float, str]]] = {}
    for c in candidates:
        for ev in c.evidence:
            by_path.setdefault(ev.path, []).append((ev.score, c.tag))
    return {(tag, path): i for path, scored in by_path.items() for i, (_, tag) in enumerate(sorted(scored, key=lambda x: -x[0]), 1)}


def candidate_features(
    evidence: Sequence,
    prior: float,
    ranks: dict[str, int] | None = None,
    item: dict[str, float] | None = None,
    tag_similarity: float | None = None,
) -> dict[str, float]:
    """The ranker's inputs for one candidate: the best score on each path, how many paths found it,
    its prior in the history and whether it has any, 1/rank within each ranked path (``ranks``:
    path → rank), the cosine of its name and description to the content (``tag_similarity``) and
    its gap to the nearest tag's, and how well the content fits the knowledge base at all
    (``item``: the similarity of its nearest history content and of its nearest tag, the
    classifier's best score for any tag) — low for content that fits no tag, so that such content
    gets low confidence instead of the most common tags — and how many tags its neighbours carry,
    alone and with the classifier's and the votes' scores (a vote share of 0.3 is strong among
    items of eight tags, weak among items of one). The ``cold_*`` features repeat the
    description evidence for tags without history, so that it is weighed apart for them."""
    out = {name: 0.0 for name in FEATURES}
    out.update({k: v for k, v in (item or {}).items() if k in out})
    for path, rank in (ranks or {}).items():
        if path in RANKED:
            out[RANKED[path]] = 1.0 / rank
    for ev in evidence:
        if ev.path in PATHS:  # other evidence (a person's verdict: ``memory``) is not the ranker's to weigh
            out[PATHS[ev.path]] = max(out[PATHS[ev.path]], float(ev.score))
    out["paths"] = float(sum(1 for p in PATHS.values() if out[p] > 0))
    out["log_prior"] = math.log(max(prior, MIN_PRIOR))
    out["history"] = 1.0 if prior > 0 else 0.0
    similarity = max(out["c2t"], out["match"]) if tag_similarity is None else tag_similarity
    out["tag_similarity"] = similarity
    out["tag_similarity_gap"] = similarity - out["top_tag_similarity"]
    cold = 1.0 - out["history"]
    out["cold_tag_similarity"] = cold * similarity
    out["cold_tag_similarity_gap"] = cold * out["tag_similarity_gap"]
    out["cold_c2t_rank"] = cold * out["c2t_rank"]
    out["cold_top_learned"] = cold * out["top_learned"]
    # a content whose neighbours carry many tags has many right ones: a path's score means more there
    out["neighbour_tags_learned"] = out["neighbour_tags"] * out["learned"]
    out["neighbour_tags_c2c2t"] = out["neighbour_tags"] * out["c2c2t"]
    # the classifier's score and the vote share in log-odds, apart from whether the path found the tag at
    # all: linear in the score, the ranker under-used a classifier sure of a tag (on se_cooking and debtags
    # the classifier alone ranked the (item, tag) pairs better for micro-F1 than the ranker did)
    for path in ("learned", "c2c2t"):
        found = out[path] > 0
        out[f"{path}_found"] = 1.0 if found else 0.0
        out[f"{path}_logit"] = _log_odds(out[path]) if found else 0.0
    return out


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


COLD_BIAS_GRID = tuple(i / 4 for i in range(41))  # 0 … 10 in steps of 0.25
# how far below the best-matching tag's description a tag without history still gets the bias: it is
# lifted by bias · max(0, 1 + gap / width), where gap = its description's cosine − the best tag's (≤ 0);
# None lifts every such tag alike
COLD_WIDTH_GRID = (0.05, 0.1, 0.2, 0.4, None)


def lift_ramp(gap, width: float | None):
    """The share of the bias a tag without history gets at ``gap`` (its description's cosine − the
    best tag's, ≤ 0; a number or an array): all of it at the best match, none ``width`` below it."""
    return 1.0 if width is None else np.maximum(0.0, 1.0 + np.asarray(gap, dtype=float) / width)


def cold_lift(bias: float, width: float | None, features: dict[str, float]) -> float:
    """What a candidate's logit gains for having no history: ``bias`` in full when its description
    matches the content best of all tags, less the further it falls below that match."""
    cold = 1.0 - features.get("history", 1.0)
    if not cold or not bias:
        return 0.0
    return bias * cold * float(lift_ramp(features.get("tag_similarity_gap", 0.0), width))


LIFT_TOLERANCE = 0.01  # accuracy over all items the lift for tags without history may cost, at the share of items they will have


def choose_cold_bias(
    items: list[tuple[list[float], list[bool], list[bool], bool, list[float]]],
    share: float,
    grid: Sequence[float] = COLD_BIAS_GRID,
    widths: Sequence[float | None] = COLD_WIDTH_GRID,
    tolerance: float = LIFT_TOLERANCE,
    min_items: int = 10,
) -> tuple[float, float | None]:
    """The lift added to the logit of every tag without history (``cold_lift``: a bias, scaled
    down as the tag's description falls below the best match), from out-of-fold logits of
    held-out items recalled as if some tags had none (``items``: each item's candidates' logits,
    whether each is right, whether each has history, whether the item carries such a tag, and
    each candidate's ``tag_similarity_gap``). Calibrated stacking (Chao et al., 2016) adds such a
    bias because a ranker fitted where few items are cold ranks a tag with only its description
    below any tag the neighbours vote for. Of the lifts that keep the first tag's accuracy over
    all items — the cold ones counted as ``share`` of them, the share tagging will meet — within
    ``tolerance`` of the best, the one most accurate on the cold items (ties: the smaller bias,
    then the narrower lift). Chao et al.'s harmonic mean of the two accuracies chose biases that
    gave up 0.015–0.03 over all of hwu64's test items for its new tags; a lift that does not
    fall off lifts a tag whose description hardly matches the text above the right one. Returns
    (bias, width); (0, None) when too few cold items."""
    usable = [i for i in items if i[0]]
    cold = [i for i in usable if i[3]]
    if len(cold) < min_items or len(cold) == len(usable):
        return 0.0, None
    k = max(len(i[0]) for i in usable)

    def matrix(column: int, fill: float) -> np.ndarray:
        return np.array([list(i[column]) + [fill] * (k - len(i[column])) for i in usable], dtype=float)

    logits, right = matrix(0, -np.inf), matrix(1, 0.0)
    without = 1.0 - matrix(2, 1.0)
    gap = matrix(4, 0.0)
    is_cold = np.array([i[3] for i in usable])
    ramps = [without * lift_ramp(gap, width) for width in widths]
    scores = []  # (accuracy over all items, on the cold ones, bias, width), in the grids' order
    for bias in grid:
        for width, ramp in zip(widths, ramps):
            hit = right[np.arange(len(usable)), np.argmax(logits + bias * ramp, axis=1)]
            seen, unseen = float(hit[~is_cold].mean()), float(hit[is_cold].mean())
            scores.append(((1.0 - share) * seen + share * unseen, unseen, float(bias), width if bias else None))
    best = max(s[0] for s in scores)
    chosen = max((s for s in scores if s[0] >= best - tolerance - 1e-9), key=lambda s: s[1])  # max keeps the first of equals
    return chosen[2], chosen[3]


def _tail(value: float, grid: Sequence[float]) -> float:
    """(Rankers saved with ``grids``, before ``domain_signals``.) The share of in-domain items at
    or below ``value`` (``grid``: the in-domain quantiles at 0, 5, …, 100%), at least 0.5% within
    their range; below the lowest in-domain value it keeps shrinking geometrically, one power of
    0.5% per (median − lowest) further down."""
    if value < grid[0]:
        return 0.005 ** (1.0 + (grid[0] - value) / max(grid[len(grid) // 2] - grid[0], 1e-3))
    levels = np.linspace(0.0, 1.0, len(grid))
    return max(float(np.interp(value, grid, levels)), 0.005)


def _domain_score(fit: dict[str, float], grids: dict[str, list[float]]) -> float:
    """How typical a content's closeness is for the domain: the sum of the log tail shares of each
    closeness (Fisher's combination), so a content must be unusual on every signal that varies to
    score low — a signal on which in-domain and foreign texts look alike (tag names that match
    nothing well) cannot hide a foreign text."""
    return sum(math.log(_tail(fit.get(key, 0.0), grid)) for key, grid in grids.items())


def domain_signals(fits: list[dict[str, float]], share: float, keys: Sequence[str]) -> dict:
    """From in-domain items' ``content_fit``: for each signal in ``keys`` that they all carry, the
    cut below which ``share`` / len(keys) of the items lie (so that at most ``share`` of them fall
    below any cut) and the spread from the cut to the median."""
    keys = [k for k in keys if fits and all(k in f for f in fits)]
    if not keys:
        return {}
    each = share / len(keys)
    signals = {}
    for key in keys:
        values = np.array([f[key] for f in fits], dtype=float)
        cut = float(np.quantile(values, each))
        signals[key] = {"cut": round(cut, 4), "spread": round(max(float(np.median(values)) - cut, 1e-3), 4)}
    return {"share": share, "signals": signals}


def history_likeness(contrast: dict, vectors):
    """The contrast's logit for one embedding (a float) or a matrix of them (an array, one per row):
    how much a content looks like the history rather than everyday text."""
    if "_weights" not in contrast:  # read once per ranker: recall asks for every content
        contrast["_weights"] = np.asarray(contrast["weights"], dtype=np.float32)
    logits = np.asarray(vectors, dtype=np.float32) @ contrast["_weights"] + contrast["bias"]
    return round(float(logits), 4) if np.ndim(logits) == 0 else np.round(logits.astype(float), 4)


def in_domain_probability(fit: dict[str, float], domain: dict) -> float:
    """How likely a content belongs to the knowledge base's domain, from its ``content_fit``
    against the in-domain items' (``domain_signals``): 1 at or above each signal's cut; below it,
    halved every ``SIGNAL_HALVING`` of the in-domain spread; the least of the signals'."""
    if domain and "signals" in domain:  # the least of the signals' probabilities: either can say the text is foreign
        probabilities = [1.0]
        for key, signal in domain["signals"].items():
            if key in fit:
                shortfall = (signal["cut"] - fit[key]) / signal["spread"]
                probabilities.append(1.0 if shortfall <= 0 else 0.5 ** (shortfall / SIGNAL_HALVING))
        return min(probabilities)
    if not domain or "grids" not in domain:
        return 1.0
    shortfall = (domain["cut"] - _domain_score(fit, domain["grids"])) / domain["spread"]  # a ranker saved before the signals
    return 1.0 if shortfall <= 0 else 0.5 ** (shortfall / 0.25)


def best_threshold(
    item_scores: list[list[tuple[float, bool]]], relevant: list[int], limit: int | None = None, weights: Sequence[float] | None = None
) -> float | None:
    """The confidence cut that maximises micro-F1 over items, each given as its candidates'
    (P(right), right?) and its number of right tags (``relevant``); at most ``limit`` kept per item;
    ``weights``: how much each item counts (1 each by default)."""
    cuts = sorted({round(p, 3) for scores in item_scores for p, _ in scores if p >= 0.05})
    weights = list(weights) if weights is not None else [1.0] * len(item_scores)
    total = sum(w * n for w, n in zip(weights, relevant))
    if not cuts or not total:
        return None
    ordered = [sorted(scores, key=lambda x: -x[0])[:limit] if limit else sorted(scores, key=lambda x: -x[0]) for scores in item_scores]
    best, best_f1 = None, -1.0
    for cut in cuts:
        tp = fp = 0.0
        for scores, w in zip(ordered, weights):
            for p, right in scores:
                if p < cut:
                    break
                tp += w * right
                fp += w * (not right)
        f1 = 2 * tp / (2 * tp + fp + (total - tp)) if tp else 0.0
        if f1 > best_f1:
            best, best_f1 = cut, f1
    return best


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
    cold_tags: int = 0  # tags treated as having no history while it was fitted
    cold_items: int = 0  # held-out items carrying one of them
    cold_share: float = 0.0  # the share of the fit those items counted as (``learned_recall.item_weights``)
    cold_bias: float = 0.0  # added to the logit of a tag without history (``choose_cold_bias``)
    cold_width: float | None = None  # how that lift falls off below the best description match (``cold_lift``; None: it does not)
    domain: dict = field(default_factory=dict)  # domain_signals of the held-out items (empty: no domain check)
    contrast: dict = field(default_factory=dict)  # {"weights", "bias"}: history against everyday texts (``history_likeness``)
    threshold: float | None = None  # the default cut, read on the held-out items (``learned_recall``)

    def prior(self, tag: str) -> float:
        return self.priors.get(tag, 0.0)

    def predict(self, features: dict[str, float]) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit(features)))

    def logit(self, features: dict[str, float]) -> float:
        x = (np.array([features.get(f, 0.0) for f in self.features]) - np.array(self.scale_mean)) / np.array(
            self.scale_std
        )  # a feature since renamed or dropped reads as 0
        return float(np.dot(self.coefficients, x)) + self.intercept + cold_lift(self.cold_bias, self.cold_width, features)

    def history_likeness(self, vector) -> float | None:
        """How much a content's embedding looks like the history rather than everyday text (the
        contrast's logit, ``history_likeness``); None without a contrast."""
        return history_likeness(self.contrast, vector) if self.contrast else None

    def in_domain(self, fit: dict[str, float]) -> float:
        """P(the content belongs to the knowledge base's domain) (``in_domain_probability``)."""
        return in_domain_probability(fit, self.domain)

    @classmethod
    def fit(
        cls,
        rows: list[dict[str, float]],
        labels: list[bool],
        priors: dict[str, float],
        items: int,
        weights: Sequence[float] | None = None,
        **info,
    ) -> "RecallRanker | None":
        """Fit on (features, is-right) pairs, each pair counting ``weights`` (1 each by default);
        None when the pairs cannot support a fit."""
        y = np.array([1 if v else 0 for v in labels])
        if len(y) < 20 or y.min() == y.max():
            return None
        from sklearn.linear_model import LogisticRegression

        x = np.array([[r[f] for f in FEATURES] for r in rows], dtype=float)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0
        w = None if weights is None else np.asarray(weights, dtype=float) * len(y) / max(float(np.sum(weights)), 1e-9)
        model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / std, y, sample_weight=w)
        return cls(
            [float(c) for c in model.coef_[0]],
            float(model.intercept_[0]),
            [float(v) for v in mean],
            [float(v) for v in std],
            priors=priors,
            items=items,
            pairs=int(len(y)),
            share_right=float(y.mean()),
            **info,
        )

    def save(self, directory: Path) -> None:
        saved = asdict(self)
        saved["contrast"] = {k: v for k, v in saved["contrast"].items() if not k.startswith("_")}  # not the cached array
        (Path(directory) / FILE_NAME).write_text(json.dumps(saved), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "RecallRanker | None":
        path = Path(directory) / FILE_NAME
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            newer = sorted(set(saved) - {f.name for f in fields(cls)}) if isinstance(saved, dict) else []
            if newer:  # read as if they were not there, it would rank differently from the llm4tag that fitted it
                raise KnowledgeBaseError(
                    f"{path} was written by a newer llm4tag (it has {', '.join(newer)}); upgrade llm4tag, "
                    f"or run llm4tag kb train-classifier to fit a ranker this version reads"
                )
            return cls(**saved)
        except (ValueError, TypeError) as exc:
            raise KnowledgeBaseError(f"{path} is damaged ({exc}); run llm4tag kb train-classifier again") from exc
