"""Which signal tells foreign text from in-domain text: the nearest history item, the contrast, both.

For a knowledge base built by ``bench/beyond_history.py`` (its learned path trained with a
contrast), it scores 400 seeded test items of the set, the everyday corpus
(``bench/out_of_domain.jsonl``) and 100 test items of each other dev set on the two domain
signals recall uses (``knowledge_base.ranker``): the similarity of the nearest history item and
the contrast's ``history_likeness``. For each signal alone, and for both (either below its cut,
each cut at the 2.5% quantile), it prints the share of each foreign source rejected at cuts that
keep 95% of the set's own test items — the detectors compared on equal terms, before any ranker
or threshold.

    .venv/bin/python bench/domain_signals.py --sets hwu64,banking77
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from beyond_history import DATA, SETS  # noqa: E402  (this folder)
from knowledge_base.ranker import history_likeness  # noqa: E402
from knowledge_base.store import KnowledgeBase  # noqa: E402

SPLITS = {name: split for name, (split, _) in SETS.items()}  # each dev set's test split, as beyond_history.py reads it


def texts_of(path: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    random.Random(13).shuffle(rows)
    return [r["text"] for r in rows[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="hwu64,banking77")
    args = ap.parse_args()
    for name in [s for s in args.sets.split(",") if s]:
        kb = KnowledgeBase(ROOT / "bench" / "out" / f"{name}-kb")
        ranker = kb.classifier().ranker if kb.classifier() else None
        if ranker is None or not ranker.contrast:
            sys.exit(f"{name}: its learned path has no contrast; run bench/beyond_history.py --sets {name} first")

        def signals(texts: list[str]) -> np.ndarray:
            vectors = kb.encoder.encode(texts).vectors
            nearest = [max((h.similarity for h in kb.similar_contents(v, 1)), default=0.0) for v in vectors]
            return np.c_[nearest, history_likeness(ranker.contrast, vectors)]

        own = signals(texts_of(DATA / name / SPLITS[name], 400))
        sources = {"everyday": signals(texts_of(ROOT / "bench" / "out_of_domain.jsonl", 1000))}
        for other, split in SPLITS.items():
            if other != name:
                sources[other] = signals(texts_of(DATA / other / split, 100))
        alone = [np.quantile(own[:, j], 0.05) for j in range(2)]
        both = [np.quantile(own[:, j], 0.025) for j in range(2)]
        print(f"\n{name}: share of each source rejected at cuts keeping 95% of its own test items\n")
        print("| signal | own items kept | " + " | ".join(sources) + " |")
        print("|---|---|" + "---|" * len(sources))
        rules = {
            "nearest history item": lambda s: s[:, 0] < alone[0],
            "contrast (history_likeness)": lambda s: s[:, 1] < alone[1],
            "both (either below its 2.5% cut)": lambda s: (s[:, 0] < both[0]) | (s[:, 1] < both[1]),
        }
        for label, rejected in rules.items():
            print(
                f"| {label} | {1 - rejected(own).mean():.1%} | " + " | ".join(f"{rejected(s).mean():.0%}" for s in sources.values()) + " |"
            )


if __name__ == "__main__":
    main()
