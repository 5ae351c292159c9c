"""Labelled items for evaluation, calibration fitting and optimisation: text plus its true tags."""

from __future__ import annotations

import json
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


OUT_OF_DOMAIN = "ood:"  # prefix of the ids of out-of-domain items: their truth is "no tag fits"


def load_out_of_domain(path: str | Path, limit: int | None = None, seed: int | None = 13, source: str | None = None) -> list[Item]:
    """Texts that fit none of the knowledge base's tags (e.g. another data set's JSONL with a
    ``text`` field, or a text file with one text per line), as items whose truth is empty:
    evaluation reports the share of them a system leaves untagged (abstention). ``source`` names
    the file in the items' ids (``ood:SOURCE:ID``), so that texts of several files are told apart."""
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = line  # a plain text file: one text per line
        text = record.get("text") if isinstance(record, dict) else record if isinstance(record, str) else None
        if isinstance(text, str) and text.strip():
            rid = record.get("id") if isinstance(record, dict) and record.get("id") is not None else n
            items.append(Item(f"{OUT_OF_DOMAIN}{source + ':' if source else ''}{rid}", text.strip(), []))
    if not items:
        raise LoadError("no texts found for out-of-domain items", str(path))
    if seed is not None:
        random.Random(seed).shuffle(items)
    return items[:limit] if limit else items


def out_of_domain_source(item_id: str) -> str | None:
    """The source named in an out-of-domain item's id (``load_out_of_domain``'s ``source``), or None."""
    rest = item_id[len(OUT_OF_DOMAIN) :] if item_id.startswith(OUT_OF_DOMAIN) else ""
    return rest.split(":", 1)[0] if ":" in rest else None
