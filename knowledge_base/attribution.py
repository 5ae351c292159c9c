"""The words behind a tag: occlusion attribution over recall.

Which parts of a text make recall score a tag? Remove each part in turn, recall again and see
how far the tag's score falls (occlusion, Zeiler & Fergus 2014; the perturbation test that
explanation methods are checked with). The text is cut into at most ``MAX_WINDOWS`` runs of
consecutive words (single words for short texts); every shortened text is encoded in one batch
and recalled with the knowledge base's own paths, classifier and ranker, so the spans explain
the very scores a result shows. A span is a run whose removal lowered the tag's score; the
strongest ``limit`` are kept, in text order, with adjacent ones merged.

``bench/evidence_spans.py`` checks that the spans are not decoration: removing them lowers the
tag's score more than removing as many other words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

from .config import RecallConfig
from .recall import recall_candidates
from .store import KnowledgeBase

MAX_WINDOWS = 16  # shortened texts recalled per explanation (each costs one recall)
MIN_DROP = 0.01  # a smaller fall of the score is no support


@dataclass
class Span:
    start: int  # character offsets in the text
    end: int
    text: str
    drop: float  # how far the tag's score fell without it (the largest of a merged run)

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text, "drop": round(self.drop, 4)}


def word_windows(text: str, max_windows: int = MAX_WINDOWS) -> list[tuple[int, int]]:
    """The text's words grouped into at most ``max_windows`` runs of equal length: (start, end) offsets."""
    words = [m.span() for m in re.finditer(r"\S+", text)]
    if not words:
        return []
    size = math.ceil(len(words) / max_windows)
    return [(words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size)]


def without(text: str, windows: Iterable[tuple[int, int]]) -> str:
    """The text with these character ranges removed (a space left in their place)."""
    out, last = [], 0
    for start, end in sorted(windows):
        out.append(text[last:start])
        last = end
    out.append(text[last:])
    return re.sub(r"\s+", " ", " ".join(out)).strip()


def tag_scores(kb: KnowledgeBase, texts: list[str], config: RecallConfig, own_id: str | None = None) -> list[dict[str, float]]:
    """Each text's recalled tags with their scores (P(right) with a ranker), encoded in one batch."""
    vectors = kb.encoder.encode(texts).vectors
    return [{c.tag: c.score for c in recall_candidates(kb, t, config, vector=v, own_id=own_id).candidates} for t, v in zip(texts, vectors)]


def supporting_spans(
    kb: KnowledgeBase, text: str, tags: Iterable[str], config: RecallConfig | None = None, limit: int = 3, own_id: str | None = None
) -> dict[str, list[Span]]:
    """For each tag, the runs of words whose removal lowers its score the most (at most ``limit``,
    in text order, adjacent runs merged); a tag recall does not find, or that no removal weakens,
    gets none."""
    cfg = config or kb.config.recall
    tags = list(dict.fromkeys(tags))
    windows = word_windows(text)
    variants = [(w, without(text, [w])) for w in windows]
    variants = [(w, v) for w, v in variants if v]
    if not tags or not variants:
        return {t: [] for t in tags}
    base, *shortened = tag_scores(kb, [text, *(v for _, v in variants)], cfg, own_id)
    spans: dict[str, list[Span]] = {}
    for tag in tags:
        if tag not in base:
            spans[tag] = []
            continue
        drops = [(base[tag] - scores.get(tag, 0.0), w) for (w, _), scores in zip(variants, shortened)]
        strongest = sorted([d for d in drops if d[0] >= MIN_DROP], key=lambda d: -d[0])[:limit]
        spans[tag] = _merged(text, sorted(strongest, key=lambda d: d[1][0]))
    return spans


def _merged(text: str, drops: list[tuple[float, tuple[int, int]]]) -> list[Span]:
    merged: list[Span] = []
    for drop, (start, end) in drops:
        if merged and not text[merged[-1].end : start].strip():
            last = merged[-1]
            merged[-1] = Span(last.start, end, text[last.start : end], max(last.drop, drop))
        else:
            merged.append(Span(start, end, text[start:end], drop))
    return merged
