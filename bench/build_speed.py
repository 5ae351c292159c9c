"""Building a knowledge base against the raw cost of encoding the same texts.

Encodes the tag repository and ``--samples`` debtags training items with the encoder alone
(the floor a build cannot go under), then builds a fresh knowledge base from the same records
(``add_tags`` + ``add_samples``: encoding, Chroma writes, the neighbour queries for similarity
edges, the graph journal and snapshot), and prints both, their ratio, and where the build's time
goes (cProfile, grouped: encoding, Chroma writes, Chroma queries, graph, the rest).

    .venv/bin/python bench/build_speed.py [--samples 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "debtags"

GROUPS = [  # (label, a function of the profile it is measured by: its cumulative time)
    ("encoding (sentence-transformers)", ("knowledge_base", "encoder.py", "encode")),
    ("Chroma writes (upsert)", ("chromadb", "", "_upsert")),
    ("Chroma queries", ("chromadb", "", "_query")),
    ("Chroma reads (get)", ("chromadb", "", "_get")),
    ("graph store writes", ("knowledge_base", "graph.py", "write")),
    ("graph compaction", ("knowledge_base", "graph.py", "compact")),
]


def cumulative(stats: pstats.Stats, package: str, file_end: str, name: str) -> float:
    total = 0.0
    for (filename, _, function), (_, _, _, ct, _) in stats.stats.items():
        if function == name and package in filename and (not file_end or filename.endswith(file_end)):
            total = max(total, ct)  # the outermost call holds the others' time
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from knowledge_base import KnowledgeBase, read_samples, read_tags
    from knowledge_base.encoder import Encoder

    tags = read_tags(DATA / "tags.tsv").records
    lines = (DATA / "train.jsonl").read_text(encoding="utf-8").splitlines()[: args.samples]
    folder = Path(tempfile.mkdtemp(prefix="llm4tag-build-"))
    try:
        (folder / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        samples = read_samples(folder / "samples.jsonl").records
        encoder = Encoder.shared()
        texts = [t.embedding_text() for t in tags] + [s.text for s in samples]
        encoder.model.encode(texts[:64], batch_size=64)  # warm-up
        started = time.perf_counter()
        for i in range(0, len(texts), 256):  # as the build encodes: 256 at a time
            encoder.model.encode(texts[i : i + 256], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        raw = time.perf_counter() - started

        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        kb = KnowledgeBase(folder / "kb")
        kb.add_tags(tags)
        report = kb.add_samples(samples)
        profile.disable()
        build = time.perf_counter() - started
        stats = pstats.Stats(profile)
        print(
            f"{len(tags)} tags + {len(samples)} samples ({report.edges} edges), {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}"
        )
        print(f"raw encoding  {raw:8.2f} s  ({len(texts) / raw:.0f} texts/s)")
        print(f"build         {build:8.2f} s  ({len(texts) / build:.0f} texts/s)   build / raw encoding = {build / raw:.2f}")
        print("where the build's time goes (cumulative, overlapping groups excluded from 'rest'):")
        accounted = 0.0
        for label, (package, file_end, name) in GROUPS:
            seconds = cumulative(stats, package, file_end, name)
            accounted += seconds if label != "graph compaction" else 0.0
            print(f"  {label:<36} {seconds:8.2f} s  {seconds / build:6.1%}")
        print(f"  {'rest':<36} {max(0.0, build - accounted):8.2f} s")
        print(
            json.dumps(
                {
                    "tags": len(tags),
                    "samples": len(samples),
                    "raw_encoding_s": round(raw, 3),
                    "build_s": round(build, 3),
                    "ratio": round(build / raw, 3),
                }
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
