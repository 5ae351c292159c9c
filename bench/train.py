"""Benchmark of fine-tuning on this machine's CPU: training time per record and per 1,000 samples.

Builds the generation and judge sets for ``--samples`` samples of a knowledge base (timed), then
runs one epoch of LoRA fine-tuning on them with ``agent/training/finetune.py`` (timed, model load
excluded) and prints seconds per training record and the projection per 1,000 samples (one
sample gives one generation record and up to four judge records).

    .venv/bin/python bench/train.py --kb bench/out/banking77-kb --mode single --samples 16
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import Context  # noqa: E402
from agent.llm.llamacpp import LlamaCppBackend, shipped_model_path  # noqa: E402
from agent.training.datasets import build_training_sets  # noqa: E402
from agent.training.finetune import finetune_args, train  # noqa: E402
from knowledge_base import KnowledgeBase  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", required=True)
    ap.add_argument("--mode", choices=["multi", "single"], default="multi")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    work = OUT / f"train-bench-{Path(args.kb).name}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "train.jsonl.gz"
    kb = KnowledgeBase(args.kb)
    started = time.perf_counter()
    report = build_training_sets(kb, LlamaCppBackend(shipped_model_path()).render_text, data, Context(mode=args.mode),
                                 max_samples=args.samples, heldout_share=0.0)
    build_s = time.perf_counter() - started
    records = [json.loads(line) for line in gzip.open(data, "rt", encoding="utf-8")]
    tokens_hint = sum(len(r["prompt"]) for r in records) / len(records)
    run = work / "run"
    for stale in (run / "checkpoint" / "trainer_state.pt", run / "checkpoint" / "adapter_config.json"):
        stale.unlink(missing_ok=True)
    log = train(finetune_args(shipped_model_path(), data, run, epochs=1, batch_size=args.batch_size, save_every=0, device="cpu",
                              threads=args.threads))
    per_record = log["train_seconds"] / log["train_records"]
    per_sample = per_record * len(records) / report.samples_selected
    print(json.dumps({
        "kb": args.kb, "samples": report.samples_selected, "records": len(records), "mean_prompt_chars": round(tokens_hint),
        "build_sets_s": round(build_s, 2), "build_sets_s_per_1000_samples": round(build_s / report.samples_selected * 1000, 1),
        "train_s": log["train_seconds"], "train_s_per_record": round(per_record, 2),
        "train_s_per_1000_samples_one_epoch": round(per_sample * 1000), "threads": args.threads,
    }, indent=2))


if __name__ == "__main__":
    main()
