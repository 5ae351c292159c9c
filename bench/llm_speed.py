"""Benchmark of the embedded model's speed per GGUF type: prompt evaluation and generation.

For the shipped Q4_1 file and its Q8_0 conversion (the default model), with 1 and 2 threads:
tokens per second evaluating a ~1,000-token prompt (what a generation prompt costs) and seconds
to evaluate a 200-token prompt and generate 40 tokens (median of 3 each). With ``--adapter`` (a
LoRA adapter GGUF) and ``--merged`` (the same fine-tune merged into a GGUF), one thread each: the
base Q8_0, the base with the adapter applied at load time, and the merged file, side by side.

    .venv/bin/python bench/llm_speed.py
    .venv/bin/python bench/llm_speed.py --adapter knowledge_base/demo_data/model/demo-lora.gguf --merged M.gguf
"""

from __future__ import annotations

import argparse

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.llm.llamacpp import LlamaCppBackend, default_model_path, shipped_model_path  # noqa: E402


def measure(path: str, threads: int, repeats: int = 3, lora_path: str | None = None) -> dict:
    backend = LlamaCppBackend(path, n_threads=threads, lora_path=lora_path)
    tokens = backend.render("You tag content.", "word " * 1000)
    prefill, decode = [], []
    for _ in range(repeats):
        backend.llm.reset()
        started = time.perf_counter()
        backend.llm.eval(tokens)
        prefill.append(len(tokens) / (time.perf_counter() - started))
        backend.llm.reset()
        started = time.perf_counter()
        backend.llm.create_completion(tokens[:200], max_tokens=40, temperature=0.0)
        decode.append(time.perf_counter() - started)
    return {
        "model": Path(path).name + (f" + {Path(lora_path).name}" if lora_path else ""),
        "threads": threads,
        "prompt_tokens": len(tokens),
        "prompt_tokens_per_s": round(statistics.median(prefill)),
        "prompt_200_plus_generate_40_s": round(statistics.median(decode), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", help="a LoRA adapter GGUF for the default model")
    ap.add_argument("--merged", help="the same fine-tune merged into a GGUF")
    args = ap.parse_args()
    if args.adapter or args.merged:
        rows = [measure(default_model_path(), 1)]
        rows += [measure(default_model_path(), 1, lora_path=args.adapter)] if args.adapter else []
        rows += [measure(args.merged, 1)] if args.merged else []
    else:
        rows = [measure(path, threads) for path in (shipped_model_path(), default_model_path()) for threads in (1, 2)]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
