"""The annotation queue with a simulated annotator: how much do decisions teach, and does the order matter?

A knowledge base starts from a thin history — ``--per-tag`` annotated texts per tag of a dev set's
train split (3 by default), its classifier and ranker trained on them — and a queue of ``--queue``
test texts. A simulated annotator (the true tags) decides the records one by one through
``agent.annotation.AnnotationQueue``, in each order (most uncertain first, file order), each
run on its own copy of the starting knowledge base. After 0, 50, 100 and 200 decisions it
prints the top tag's accuracy (fused recall, ``llm=fast``) on

- the records still waiting in the queue (re-scored fresh), and
- ``--held-out`` other test texts that are never queued (the same for both orders: the fair
  comparison, since each order leaves different records in the queue).

The knowledge base's own settings apply (retraining after ``retrain_after`` = 200 new samples;
the bench waits for a retraining to finish before it measures), so the figures include what
retraining adds.

    .venv/bin/python bench/annotation_queue.py                     # banking77, 500 queued, 300 held out
    .venv/bin/python bench/annotation_queue.py --set hwu64 --checkpoints 0,25,50

Prints one table row per order and checkpoint, then one JSON line per order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent import tagging  # noqa: E402
from agent.annotation import AnnotationQueue  # noqa: E402
from agent.runtime import runtime_for  # noqa: E402
from knowledge_base import KnowledgeBase, read_samples, read_tags  # noqa: E402
from knowledge_base.learned_recall import train_learned_recall  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out" / "annotation-queue"


def thin_history(name: str, per_tag: int, seed: int) -> Path:
    """A knowledge base with the whole tag repository and ``per_tag`` train texts per tag (built once)."""
    kb_dir = OUT / f"{name}-{per_tag}-per-tag-seed{seed}"
    if (kb_dir / "classifier" / "ranker.json").is_file():
        return kb_dir
    shutil.rmtree(kb_dir, ignore_errors=True)
    samples = [json.loads(line) for line in (DATA / name / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    random.Random(seed).shuffle(samples)
    kept, count = [], {}
    for s in samples:
        if all(count.get(t, 0) < per_tag for t in s["tags"]):
            kept.append(s)
            for t in s["tags"]:
                count[t] = count.get(t, 0) + 1
    picked = kb_dir.parent / f"{kb_dir.name}.jsonl"
    picked.parent.mkdir(parents=True, exist_ok=True)
    picked.write_text("".join(json.dumps(s) + "\n" for s in kept), encoding="utf-8")
    kb = KnowledgeBase(kb_dir)
    kb.add_tags(read_tags(DATA / name / "tags.tsv").records)
    kb.add_samples(read_samples(picked).records)
    print(f"{kb_dir.name}: {len(kept)} samples; training", train_learned_recall(kb), file=sys.stderr, flush=True)
    return kb_dir


def accuracy(kb_dir: Path, items: list[dict]) -> float:
    """The share of items whose first recalled tag (fused recall's best) is one of theirs."""
    right = 0
    for item in items:
        result = tagging.recall(item["text"], kb_dir=str(kb_dir))
        right += bool(result.candidates) and result.candidates[0].tag in item["tags"]
    return right / max(len(items), 1)


def run(order: str, start: Path, queued: list[dict], held_out: list[dict], checkpoints: list[int]) -> list[dict]:
    kb_dir = OUT / f"run-{order}"
    shutil.rmtree(kb_dir, ignore_errors=True)
    shutil.copytree(start, kb_dir, ignore=shutil.ignore_patterns(".write.lock"))
    source = OUT / "queue.jsonl"
    source.write_text("".join(json.dumps({"id": it["id"], "text": it["text"]}) + "\n" for it in queued), encoding="utf-8")
    queue = AnnotationQueue(str(kb_dir))
    started = time.perf_counter()
    queue.load(source)
    load_seconds = time.perf_counter() - started
    truth = {it["id"]: it["tags"] for it in queued}
    rows, decided, decide_seconds = [], 0, 0.0
    for checkpoint in checkpoints:
        while decided < checkpoint:
            record = queue.next(order)
            if record is None:
                break
            began = time.perf_counter()
            queue.decide(record.id, truth[record.id])
            decide_seconds += time.perf_counter() - began
            decided += 1
        queue.settle(600)
        retraining = runtime_for(str(kb_dir)).retraining()
        if retraining is not None:
            retraining.join()
        waiting = [it for it in queued if not queue.store.get(it["id"]).decided]
        row = {
            "order": order,
            "decided": decided,
            "held_out_accuracy": round(accuracy(kb_dir, held_out), 4),
            "queue_accuracy": round(accuracy(kb_dir, waiting), 4),
            "waiting": len(waiting),
            "acceptance_rate": round(queue.counts().acceptance_rate or 0.0, 4),
        }
        rows.append(row)
        print(
            f"{order:<10} {decided:>8} {row['held_out_accuracy']:>9.3f} {row['queue_accuracy']:>11.3f} {len(waiting):>8} "
            f"{row['acceptance_rate']:>9.0%}",
            flush=True,
        )
    rows[-1]["seconds"] = {
        "load_per_record": round(load_seconds / len(queued), 3),
        "decide_per_record": round(decide_seconds / max(decided, 1), 3),
    }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="banking77")
    ap.add_argument("--per-tag", type=int, default=3)
    ap.add_argument("--queue", type=int, default=500)
    ap.add_argument("--held-out", type=int, default=300)
    ap.add_argument("--checkpoints", default="0,50,100,200")
    ap.add_argument("--orders", default="uncertain,file")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    test = [json.loads(line) for line in (DATA / args.set / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    random.Random(args.seed).shuffle(test)
    queued, held_out = test[: args.queue], test[args.queue : args.queue + args.held_out]
    start = thin_history(args.set, args.per_tag, args.seed)
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    print(f"{args.set}: {args.per_tag} texts per tag to start, {len(queued)} queued, {len(held_out)} held out")
    print(f"{'order':<10} {'decided':>8} {'held-out':>9} {'queue rest':>11} {'waiting':>8} {'accepted':>9}")
    results = {order: run(order, start, queued, held_out, checkpoints) for order in args.orders.split(",")}
    for order, rows in results.items():
        print(json.dumps({"set": args.set, "order": order, "rows": rows}))


if __name__ == "__main__":
    main()
