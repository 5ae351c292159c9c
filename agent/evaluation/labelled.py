"""Labelled items for evaluation, calibration fitting and optimisation: text plus its true tags."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from knowledge_base.errors import LoadError
from knowledge_base.loaders import read_samples


@dataclass
class Item:
    id: str
    text: str
    tags: list[str]


def load_labelled(path: str | Path, limit: int | None = None, seed: int | None = None, offset: int = 0) -> list[Item]:
    """Labelled items from a JSONL/CSV/TSV file; with ``seed``, a seeded random sample of ``limit``
    (files sorted by label, like banking77's test split, need one), else the first ``limit``.
    ``offset`` skips that many first: the same seed with ``offset`` N gives items disjoint from
    the first N (e.g. fit a calibration on other items than an evaluation's)."""
    parsed = read_samples(path, on_error="skip")
    items = [Item(s.id, s.text, list(s.tags)) for s in parsed.records if s.tags]
    if not items:
        raise LoadError("no labelled items (lines with text and tags) found", str(path))
    if seed is not None:
        random.Random(seed).shuffle(items)
    items = items[offset:]
    return items[:limit] if limit else items
