"""Candidate tag recall (paper §3.1): graph meta-paths C2T and C2C2T, and match-based recall.

C2T: c →s t, the tags whose similarity to the content exceeds δ_ct (at most ``max_c2t``).
C2C2T: c →s c' →d t, the tags annotated on history contents whose similarity exceeds δ_cc,
ranked by similarity-weighted votes (at most ``max_c2c2t``).
Learned (beyond the paper): the tags the knowledge base's trained classifier (``classifier``,
omikuji over the samples' embeddings) scores highest for the content (at most ``max_learned``);
absent when no classifier was trained.
Match: the top tags by cosine, the paper's baseline — also used to fill the graph's set up to
``budget`` so the next step never gets an empty set while the repository has tags. The set
never exceeds ``budget``: when the paths find more, the lowest-scored candidates are cut.
Every candidate keeps its evidence: which path, the similarity, and the contents it came through.

Memory (beyond the paper): a person's verdict on this same text, or on a near-duplicate of it
(cosine at least ``memory_similarity``: a loaded sample, a correction, a review), is not one
vote among ten — it is the answer. Its right tags are candidates with at least that similarity
as their P(right) (a certain one for the same text), its wrong tags get at most one minus it,
and the evidence says whose verdict it was (path ``memory``). The system's own write-backs are
never memory.

With a ranker, every P(right) is also multiplied by the probability that the content belongs to
the knowledge base's domain at all (``RecallRanker.in_domain``), so a text that fits nothing —
a recipe in a software catalogue — gets no confident tag.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal

import numpy as np

from .classifier import TagClassifier
from .config import RecallConfig
from .hierarchy import family_features
from .language import FOREIGN_FACTOR, language_fit, language_names
from .ranker import candidate_features, path_ranks, probability, verdict_probability
from .loaders import require_text
from .store import KnowledgeBase, Neighbour, _json_list

PathName = Literal["C2T", "C2C2T", "learned", "match", "memory"]
SNIPPET_CHARS = 160


@dataclass
class Evidence:
    path: PathName
    score: float  # C2T / match: cos(content, tag); C2C2T: share of the similar contents' votes; learned: the classifier's score; memory: cos(content, the judged text)
    via: list[dict] = field(
        default_factory=list
    )  # C2C2T: [{"id", "similarity"}] of the contents walked through; memory: [{"id", "similarity", "verdict": "right"|"wrong"}]


@dataclass
class Candidate:
    tag: str
    score: float  # what candidates are ranked by: ``probability`` when there is one, else ``evidence_score``
    description: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    evidence_score: float = 0.0  # the sum of its recall paths' scores (C2T, C2C2T, learned, match)
    probability: float | None = None  # the recall ranker's P(right); None without a trained ranker

    @property
    def paths(self) -> list[str]:
        return [e.path for e in self.evidence]

    def evidence_for(self, path: PathName) -> Evidence | None:
        return next((e for e in self.evidence if e.path == path), None)


@dataclass
class SimilarContent:
    id: str
    similarity: float
    snippet: str
    tags: list[str]


@dataclass
class RecallResult:
    candidates: list[Candidate]
    similar_contents: list[SimilarContent]
    strategy: str
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    scores: Literal["probability", "evidence"] = "evidence"  # probability: the recall ranker's P(right); evidence: summed path scores
    fit: dict[str, float] = field(
        default_factory=dict
    )  # content_fit (how close the nearest history item and tag are), history_likeness, in_domain
    tag_similarity: dict[str, float] = field(
        default_factory=dict
    )  # candidate → cos(content, its name and description) (beyond the nearest tags: the farthest of those)

    @property
    def tags(self) -> list[str]:
        return [c.tag for c in self.candidates]

    def to_dict(self) -> dict:
        return asdict(self)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def content_fit(
    similar: list[Neighbour], tag_hits: list[Neighbour], learned: list[tuple[str, float]] = (), neighbour_tags: float = 0.0
) -> dict[str, float]:
    """How well a content fits the knowledge base: the similarity of its nearest history item and
    of its nearest tag, the classifier's best score for any tag, and how many tags its similar
    history items carry (similarity-weighted: how many tags an item like it has)."""
    return {
        "top_content_similarity": round(max((h.similarity for h in similar), default=0.0), 4),
        "top_tag_similarity": round(max((h.similarity for h in tag_hits), default=0.0), 4),
        "top_learned": round(max((s for _, s in learned), default=0.0), 4),
        "neighbour_tags": round(neighbour_tags, 4),
    }


def neighbour_tag_count(kb: KnowledgeBase, similar: list[Neighbour], hidden_tags: frozenset[str] = frozenset()) -> float:
    """The similarity-weighted mean number of tags the similar history items carry (0 without any)."""
    tags = kb.graph.tags_of_many(h.id for h in similar)
    weights = [(max(h.similarity, 0.0), sum(1 for t in tags.get(h.id, ()) if t not in hidden_tags)) for h in similar]
    total = sum(w for w, _ in weights)
    return sum(w * n for w, n in weights) / total if total else 0.0


def tag_similarities(tags: Iterable[str], tag_hits: list[Neighbour]) -> dict[str, float]:
    """Each tag's cosine to the content from the nearest-tags query; a tag beyond those gets the
    farthest one's (its own is at most that)."""
    sims = {h.id: h.similarity for h in tag_hits}
    floor = min(sims.values(), default=0.0)
    return {t: round(sims.get(t, floor), 4) for t in tags}


def ranker_features(
    candidates: list[Candidate],
    prior,
    item: dict[str, float],
    tag_similarity: dict[str, float] | None = None,
    parents: dict[str, str] | None = None,
) -> list[dict[str, float]]:
    """Each candidate's ranker inputs (``knowledge_base.ranker``); ``prior(tag)`` is its share of
    the history; ``item`` the content's ``content_fit``; ``tag_similarity`` each candidate's
    cosine (``tag_similarities``); ``parents`` the tag tree (``KnowledgeBase.hierarchy``), whose
    relatives' evidence each candidate gets (``knowledge_base.hierarchy.family_features``)."""
    ranks = path_ranks(candidates)
    family = (
        family_features(
            {c.tag: {ev.path: max(ev.score, 0.0) for ev in c.evidence if ev.path in ("learned", "C2C2T")} for c in candidates}, parents
        )
        if parents
        else {}
    )
    out = []
    for c in candidates:
        features = candidate_features(
            c.evidence, prior(c.tag), {ev.path: ranks[(c.tag, ev.path)] for ev in c.evidence}, item, (tag_similarity or {}).get(c.tag)
        )
        features.update(family.get(c.tag, {}))
        out.append(features)
    return out


def current_names(kb: KnowledgeBase, predicted: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The classifier's predictions with the names of tags renamed or merged since it was trained
    replaced by their replacement (the higher score kept) and retired tags left out."""
    present = kb.get_tags([t for t, _ in predicted])
    out: dict[str, float] = {}
    for tag, score in predicted:
        name = tag if tag in present else kb.replacement(tag)
        if name is not None:
            out[name] = max(score, out.get(name, 0.0))
    return sorted(out.items(), key=lambda kv: -kv[1])


def c2c2t_votes(
    kb: KnowledgeBase, similar: list[Neighbour], hidden_tags: frozenset[str] = frozenset()
) -> dict[str, tuple[float, list[dict]]]:
    """Walk c →s c' →d t over the graph: tag → (similarity-weighted vote share, contents walked);
    ``hidden_tags`` are walked as if no content carried them."""
    total = sum(h.similarity for h in similar) or 1.0
    votes: dict[str, tuple[float, list[dict]]] = {}
    tags = kb.graph.tags_of_many(h.id for h in similar)  # the deterministic edges c' →d t, one query
    for h in similar:
        for tag in tags.get(h.id, ()):
            if tag in hidden_tags:
                continue
            share, via = votes.get(tag, (0.0, []))
            votes[tag] = (share + h.similarity / total, via + [{"id": h.id, "similarity": round(h.similarity, 4)}])
    return votes


def remembered(nearest: list[Neighbour], similarity: float | None, candidates: dict[str, Candidate], text: str = "") -> list[Candidate]:
    """Memory: the tags a person judged on this text or a near-duplicate of it (similarity at
    least ``similarity``; None: no memory), each from the nearest such verdict, added as ``memory``
    evidence (a right tag recall did not find becomes a candidate); returns the candidates concerned.
    The same text counts as similarity 1 (stored vectors may come from another encoder runtime)."""
    seen: dict[str, Candidate] = {}
    closeness = {h.id: 1.0 if text and h.text == text else h.similarity for h in nearest}
    for h in sorted(nearest, key=lambda h: -closeness[h.id]) if similarity is not None else []:
        meta = h.metadata or {}
        if closeness[h.id] < similarity or meta.get("origin") == "writeback":
            continue
        for verdict, tags in (("right", _json_list(meta, "tags")), ("wrong", _json_list(meta, "incorrect_tags"))):
            for tag in tags:
                if tag in seen or (verdict == "wrong" and tag not in candidates):
                    continue
                cand = candidates.setdefault(tag, Candidate(tag, 0.0))
                close = round(closeness[h.id], 4)
                cand.evidence.append(Evidence("memory", close, [{"id": h.id, "similarity": close, "verdict": verdict}]))
                seen[tag] = cand
    return list(seen.values())


def _settle_scores(candidates: dict[str, Candidate], judged: list[Candidate], ranked: bool) -> None:
    """The candidates' last scores: a person's verdict on this text or a near-duplicate moves the
    score of the tags it judged (``judged``: P(right) toward the verdict with a ranker; without one,
    a right verdict adds its similarity and a wrong one leaves nothing); then each score under its
    own name (``evidence_score``, the paths' sum, and ``probability``, with a ranker)."""
    for cand in judged:
        memory = cand.evidence_for("memory")
        if ranked:
            cand.score = verdict_probability(cand.score, memory.via[0]["verdict"], memory.score)
        else:
            cand.score = round(cand.score + memory.score, 4) if memory.via[0]["verdict"] == "right" else 0.0
    for cand in candidates.values():
        cand.evidence_score = round(sum(ev.score for ev in cand.evidence if ev.path != "memory"), 4)
        cand.probability = cand.score if ranked else None


def recall_candidates(
    kb: KnowledgeBase,
    text: str,
    config: RecallConfig | None = None,
    exclude_ids: Iterable[str] = (),
    vector: np.ndarray | None = None,
    learned: TagClassifier | None = None,
    own_id: str | None = None,
    hidden_tags: frozenset[str] = frozenset(),
) -> RecallResult:
    """The candidate tag set Φ(c) for a content, with provenance.

    ``exclude_ids`` hides history contents from the C2C2T path and from memory (evaluation
    without leakage); the classifier was trained on every sample and cannot forget one, so leave
    it out (``max_learned=0``) when recalling for items of the history itself. ``own_id`` is the
    content's own id: the system's earlier answer stored under it (a write-back) is no evidence,
    a person's verdict stored under it is memory. ``hidden_tags`` are recalled as if they had no
    history (fitting the ranker for tags without history; their annotations must be hidden from
    ``learned`` too).
    ``vector`` is the text's embedding when the caller has it (the text is then not encoded; the
    classifier still reads its words).
    Other processes' writes are picked up once, here, before the paths are walked.
    ``learned`` replaces the knowledge base's classifier (fitting the ranker uses one trained
    without the held-out items). The classifier's ranker, when it has one, orders the candidates
    by P(right) (their ``score``); without one, a candidate's score is the sum of its evidence.
    """
    cfg = config or kb.config.recall
    notes: list[str] = []
    truncated = False
    if vector is None:  # a caller that gives the vector has cleaned and encoded the text already
        vector, truncated = kb.encoder.encode_one(require_text(text))
        if truncated:
            notes.append(f"the text is longer than the encoder's {kb.encoder.max_tokens}-token window; only its start was used for recall")
    kb.refresh()
    changed = bool(kb.tag_changes())  # renames, merges, retirements since the classifier was trained (read once)
    exclude = set(exclude_ids)
    candidates: dict[str, Candidate] = {}

    def add(tag: str, ev: Evidence) -> None:
        cand = candidates.setdefault(tag, Candidate(tag, 0.0))
        cand.evidence.append(ev)
        cand.score = round(cand.score + ev.score, 4)

    classifier = None
    predicted: list[tuple[str, float]] = []
    # the nearest contents: C2C2T's neighbours and memory's verdicts (match recall without memory needs none)
    nearest = (
        kb.similar_contents(vector, cfg.similar_contents + (own_id is not None), exclude=exclude, refresh=False)
        if cfg.strategy == "graph" or cfg.memory_similarity is not None
        else []
    )
    nearest = [h for h in nearest if not (h.id == own_id and (h.metadata or {}).get("origin") == "writeback")]
    similar = [h for h in nearest if h.id != own_id][: cfg.similar_contents] if cfg.strategy == "graph" else []
    tag_hits = kb.similar_tags(vector, max(cfg.budget, cfg.max_c2t) * 2, refresh=False, details=False)
    if cfg.strategy == "graph":
        close = [h for h in similar if h.similarity > cfg.delta_cc]
        votes = c2c2t_votes(kb, close, hidden_tags)
        for tag, (share, via) in sorted(votes.items(), key=lambda kv: -kv[1][0])[: cfg.max_c2c2t]:
            add(tag, Evidence("C2C2T", round(share, 4), via))
        for h in [h for h in tag_hits if h.similarity > cfg.delta_ct][: cfg.max_c2t]:
            add(h.id, Evidence("C2T", round(h.similarity, 4)))
        classifier = (learned or kb.classifier()) if cfg.max_learned > 0 else None
        predicted = classifier.predict(vector, cfg.max_learned, text) if classifier else []
        if predicted and changed:  # a classifier trained before a rename, merge or retirement
            predicted = current_names(kb, predicted)
        for tag, score in predicted:
            add(tag, Evidence("learned", round(score, 4)))
        graph_count = len(candidates)
        if graph_count < cfg.budget:
            for h in tag_hits:
                if len(candidates) >= cfg.budget:
                    break
                if h.id not in candidates:
                    add(h.id, Evidence("match", round(h.similarity, 4)))
            if graph_count == 0 and candidates:
                notes.append("no graph path reached any tag at the current thresholds; the candidates come from match-based recall")
    else:
        for h in tag_hits[: cfg.budget]:
            add(h.id, Evidence("match", round(h.similarity, 4)))
    if not candidates and not kb.tag_names():
        notes.append("the tag repository is empty: load one with llm4tag kb load-vocab FILE")

    fit = content_fit(similar, tag_hits, predicted, neighbour_tag_count(kb, similar, hidden_tags))
    ranker = classifier.ranker if classifier is not None else None
    if ranker is not None:
        likeness = ranker.history_likeness(vector)
        if likeness is not None:
            fit["history_likeness"] = likeness
        in_domain = ranker.in_domain(fit)
        fit["in_domain"] = round(in_domain, 4)
        if in_domain < 1.0:
            notes.append(
                f"the text fits this knowledge base poorly (nearest history item {fit['top_content_similarity']:.2f}"
                + (f", likeness to the history rather than to everyday text {likeness:+.1f}" if likeness is not None else "")
                + f"): every confidence is scaled by {in_domain:.2f}"
            )
        prior = (lambda t: 0.0 if t in hidden_tags else ranker.prior(t)) if hidden_tags else ranker.prior
        former = kb.former_names() if changed else {}
        if former:  # a renamed or merged tag keeps the history its former names had when the ranker was fitted
            own_prior = prior
            prior = lambda t: own_prior(t) + sum(own_prior(f) for f in former.get(t, ()))  # noqa: E731
        features = ranker_features(
            list(candidates.values()),
            prior,
            fit,
            tag_similarities(candidates, tag_hits),
            kb.hierarchy() if kb.config.hierarchy_features else None,
        )
        for cand, features in zip(candidates.values(), features):
            cand.score = probability(ranker.predict(features) * in_domain)
    if text and kb.config.languages:
        spoken = language_fit(text, kb.config.languages)
        fit["language_share"] = spoken.share
        if spoken.foreign:
            notes.append(
                f"most of the text's words are not {language_names(kb.config.languages)}, the language this knowledge base's "
                f"encoder reads ({spoken.share:.0%} of {spoken.words} words are): every confidence is scaled by {FOREIGN_FACTOR}"
            )
            for cand in candidates.values():
                cand.score = probability(cand.score * FOREIGN_FACTOR) if ranker is not None else round(cand.score * FOREIGN_FACTOR, 4)
    _settle_scores(candidates, remembered(nearest, cfg.memory_similarity, candidates, text), ranker is not None)
    ranked = sorted(candidates.values(), key=lambda c: -c.score)[: cfg.budget]
    # descriptions of the kept candidates only (the nearest-tags query fetched names and similarities)
    descriptions = {name: tag.description for name, tag in kb.get_tags([c.tag for c in ranked]).items()}
    for cand in ranked:
        if cand.tag in descriptions:
            cand.description = descriptions[cand.tag]
    similar_out = [SimilarContent(h.id, round(h.similarity, 4), _snippet(h.text), _json_list(h.metadata, "tags")) for h in similar]
    return RecallResult(
        ranked,
        similar_out,
        cfg.strategy,
        truncated,
        notes,
        "probability" if ranker is not None else "evidence",
        fit,
        tag_similarities([c.tag for c in ranked], tag_hits),
    )
