"""The encoder's runtimes side by side: PyTorch, ONNX Runtime (fp32) and ONNX Runtime with int8 weights.

Prints, per runtime, in one run (ratios are what to read on a noisy machine):

- p50 / p90 milliseconds to encode one text (what recall and tagging do per content), and the
  ratio to PyTorch;
- seconds for a 256-text batch (what a bulk load does; PyTorch keeps bulk loads);
- fidelity to PyTorch's vectors: the mean and the minimum cosine over the query texts;
- what that does to recall's C2T path: the share of each text's 15 nearest tags (among the
  debtags tag repository, the paper's C2T cap) that are the same as with PyTorch's vectors;
- what it does to recall itself, the quality rule of the encoder's default: #Right and HR#1–3 of
  ``recall_candidates`` (20 candidates, as ``bench/recall.py``) for ``--recall-items`` debtags
  validation items, each text encoded on its own by the runtime, against a knowledge base built
  from debtags (``--kb``; default: the demo knowledge base, 1,500 debtags training items, none of
  them validation items). The knowledge base's own vectors are PyTorch's, as after a bulk load.

    .venv/bin/python bench/encoder_runtime.py [--texts 200] [--threads 1] [--recall-items 500] [--kb DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "debtags"


def texts_and_tags(n: int, seed: int) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (DATA / "validation.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    texts = [r["text"] for r in rows[:n]]
    from knowledge_base import read_tags

    tags = [t.embedding_text() for t in read_tags(DATA / "tags.tsv").records]
    return texts, tags


def recall_setup(args) -> tuple[object, list[dict]]:
    """The knowledge base and the validation items whose recall quality is scored (none for 0 items)."""
    if not args.recall_items:
        return None, []
    from knowledge_base import KnowledgeBase
    from knowledge_base.demo import open_demo_kb

    kb = KnowledgeBase(args.kb) if args.kb else open_demo_kb()
    rows = [json.loads(line) for line in (DATA / "validation.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(args.seed + 1).shuffle(rows)
    return kb, rows[: args.recall_items]


def recall_quality(kb, items: list[dict], encoder) -> dict[str, float]:
    """#Right and HR#1–3 of recall with each item's text encoded on its own by ``encoder``."""
    from knowledge_base import recall_candidates

    config = kb.config.recall.with_overrides(budget=20)
    rights = []
    for item in items:
        vector = encoder.encode([item["text"]]).vectors[0]
        tags = set(recall_candidates(kb, item["text"], config, vector=vector).tags)
        rights.append(len(tags & set(item["tags"])))
    n = len(rights)
    return {"right": sum(rights) / n, **{f"hr{k}": sum(r >= k for r in rights) / n for k in (1, 2, 3)}}


def timed(fn, repeat: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=200, help="debtags validation texts to encode")
    ap.add_argument("--threads", type=int, default=1, help="threads for PyTorch and ONNX Runtime")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recall-items", type=int, default=500, help="validation items whose recall quality is scored per runtime (0: none)")
    ap.add_argument("--kb", type=Path, help="knowledge base built from debtags (default: the demo knowledge base)")
    args = ap.parse_args()
    os.environ["LLM4TAG_ENCODER_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from knowledge_base.encoder import Encoder

    texts, tags = texts_and_tags(args.texts, args.seed)
    kb, items = recall_setup(args)
    torch_encoder = Encoder("minilm")
    tag_vectors = torch_encoder.model.encode(tags, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    reference = torch_encoder.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    reference_top = np.argsort(-(reference @ tag_vectors.T), axis=1)[:, :15]
    batch = texts[:256] if len(texts) >= 256 else (texts * (256 // len(texts) + 1))[:256]

    print(f"{len(texts)} debtags validation texts, {len(tags)} tags, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    print(
        f"{'runtime':<10} {'one p50 ms':>10} {'one p90 ms':>10} {'× torch':>8} {'256 batch s':>11} {'cos mean':>9} {'cos min':>8} "
        f"{'C2T top-15 same':>16} {'#Right':>7} {'HR#1':>6} {'HR#2':>6} {'HR#3':>6}"
    )
    base_p50 = None
    for runtime in ("torch", "onnx", "onnx-int8"):
        os.environ["LLM4TAG_ENCODER_RUNTIME"] = runtime
        encoder = Encoder("minilm")
        if runtime != "torch" and encoder.onnx() is None:
            print(f"{runtime:<10} unavailable (see the warning above)")
            continue
        one = [statistics.fmean(timed(lambda t=t: encoder.encode([t]), 1)) for t in texts]
        p50, p90 = float(np.percentile(one, 50)), float(np.percentile(one, 90))
        base_p50 = base_p50 or p50
        if runtime == "torch":
            seconds = timed(lambda: encoder.encode(batch), 1)[0] / 1000
        else:
            onnx = encoder.onnx()
            seconds = timed(lambda: [onnx.encode(batch[i : i + 64]) for i in range(0, len(batch), 64)], 1)[0] / 1000
        vectors = np.vstack([encoder.encode([t]).vectors[0] for t in texts])
        cosines = (vectors * reference).sum(1)
        top = np.argsort(-(vectors @ tag_vectors.T), axis=1)[:, :15]
        same = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(top, reference_top)])
        quality = recall_quality(kb, items, encoder) if kb is not None else {}
        print(
            f"{runtime:<10} {p50:>10.2f} {p90:>10.2f} {p50 / base_p50:>8.2f} {seconds:>11.2f} {cosines.mean():>9.5f} {cosines.min():>8.5f} {same:>16.1%} "
            + " ".join(
                f"{quality[k]:>{w}.3f}" if k in quality else f"{'-':>{w}}" for k, w in (("right", 7), ("hr1", 6), ("hr2", 6), ("hr3", 6))
            )
        )
    if kb is not None:
        print(
            f"recall quality: {len(items)} validation items against {kb.directory} ({kb.collection('samples').count()} samples, "
            f"{kb.collection('tags').count()} tags), 20 candidates"
        )


if __name__ == "__main__":
    main()
