"""Benchmark of fine-tuning on this machine's CPU: seconds per judge record and per generation record.

Builds the generation and judge sets for ``--samples`` samples of a knowledge base (timed), then
runs one epoch of LoRA fine-tuning with ``agent/training/finetune.py`` on the judge records alone
and on the generation records alone (timed, model load excluded), and prints seconds per record
for each kind, the mean prompt tokens, and what 100 corrections would cost (one generation and
up to four judge records each). ``--precision fp32 --no-pack`` measures the plain loop for
comparison (no packing of a sample's judge records, float32).

    .venv/bin/python bench/train.py --kb ~/.cache/llm4tag/demo-kb --samples 24
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
from agent.training import finetune  # noqa: E402
from agent.training.datasets import build_training_sets  # noqa: E402
from knowledge_base import KnowledgeBase  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", required=True)
    ap.add_argument("--mode", choices=["multi", "single"], default="multi")
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--no-pack", action="store_true", help="train every judge record as its own sequence")
    args = ap.parse_args()
    work = OUT / f"train-bench-{Path(args.kb).name}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "train.jsonl.gz"
    kb = KnowledgeBase(args.kb)
    started = time.perf_counter()
    report = build_training_sets(
        kb, LlamaCppBackend(shipped_model_path()).render_text, data, Context(mode=args.mode), max_samples=args.samples, heldout_share=0.0
    )
    build_s = time.perf_counter() - started
    records = [json.loads(line) for line in gzip.open(data, "rt", encoding="utf-8")]
    if args.no_pack:  # a distinct id per record: nothing is packed
        records = [{**r, "id": f"{r['id']}#{i}"} for i, r in enumerate(records)]
    figures: dict = {"kb": args.kb, "samples": report.samples_selected, "build_sets_s": round(build_s, 2), "threads": args.threads}
    tokenizer, _ = finetune.load_base(shipped_model_path())
    for task in ("judge", "generate"):
        subset = [r for r in records if r["task"] == task]
        path = work / f"{task}.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in subset)
        run = work / f"run-{task}"
        for stale in (run / "checkpoint" / "trainer_state.pt", run / "checkpoint" / "adapter_config.json"):
            stale.unlink(missing_ok=True)
        log = finetune.train(
            finetune.finetune_args(
                shipped_model_path(),
                path,
                run,
                epochs=1,
                batch_size=args.batch_size,
                save_every=0,
                device="cpu",
                threads=args.threads,
                precision=args.precision,
            )
        )
        tokens = [len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]) for r in subset]
        figures[task] = {
            "records": log["train_records"],
            "sequences": log["train_sequences"],
            "mean_prompt_tokens": round(sum(tokens) / len(tokens)),
            "train_s": log["train_seconds"],
            "s_per_record": round(log["train_seconds"] / log["train_records"], 2),
            "precision": log["precision"],
        }
    per_sample = (
        figures["generate"]["s_per_record"] * report.generation_records / report.samples_selected
        + figures["judge"]["s_per_record"] * report.judge_records / report.samples_selected
    )
    figures["one_epoch_s_per_100_samples"] = round(per_sample * 100)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
