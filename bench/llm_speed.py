"""Benchmark of the embedded model's speed per GGUF type: prompt evaluation and generation.

For the shipped Q4_1 file and its Q8_0 conversion (the default model), with 1 and 2 threads:
tokens per second evaluating a ~1,000-token prompt (what a generation prompt costs) and seconds
to evaluate a 200-token prompt and generate 40 tokens (median of 3 each).

    .venv/bin/python bench/llm_speed.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.llm.llamacpp import LlamaCppBackend, default_model_path, shipped_model_path  # noqa: E402


def measure(path: str, threads: int, repeats: int = 3) -> dict:
    backend = LlamaCppBackend(path, n_threads=threads)
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
    return {"model": Path(path).name, "threads": threads, "prompt_tokens": len(tokens),
            "prompt_tokens_per_s": round(statistics.median(prefill)), "prompt_200_plus_generate_40_s": round(statistics.median(decode), 2)}


def main() -> None:
    rows = [measure(path, threads) for path in (shipped_model_path(), default_model_path()) for threads in (1, 2)]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
