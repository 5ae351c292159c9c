"""Benchmark: items per minute with one tagger against a pool of model worker processes.

Tags the same N contents with the full pipeline (node cache off, so nothing is served from an
earlier run) in this process, then with ``agent.workers.TaggerPool`` of W worker processes —
each its own llama.cpp on one thread — and prints items per minute for each, their ratio
(target with 2 workers on 2 cores: ≥ 1.7), the pool's start-up time, and the peak resident
memory of this process and of each worker. Run it on an otherwise idle machine: it uses every
core it is given.

    .venv/bin/python bench/workers.py                     # the demo knowledge base, 12 examples, 2 workers
    .venv/bin/python bench/workers.py --kb KB --data items.jsonl --items 20 --workers 2

``--modes full,auto`` tags the same items once per LLM mode with one tagger, the modes taking
turns item by item (a busy machine slows them alike), and prints items per minute for each, the
share of items ``auto`` sent to the LLM and how many answers were the same; ``--workers 1`` skips
the pool:

    .venv/bin/python bench/workers.py --modes full,auto --items 200 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import Context  # noqa: E402
from agent.runtime import runtime_for  # noqa: E402
from agent.tagging import tag  # noqa: E402
from agent.workers import TaggerPool, peak_rss_mb  # noqa: E402

DEMO_EXAMPLES = Path(__file__).resolve().parents[1] / "knowledge_base" / "demo_data" / "examples.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", default=None, help="knowledge base directory (default: the bundled demo one)")
    ap.add_argument("--data", default=str(DEMO_EXAMPLES), help="JSONL with a text field per line")
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default=None, help="compare LLM modes with one tagger, e.g. full,auto (see above)")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    lines = [json.loads(line)["text"] for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    # distinct contents: past the file's end a text carries its number, so no cache or memory answers it
    texts = [lines[i % len(lines)] if i < len(lines) else f"{lines[i % len(lines)]} ({i})" for i in range(args.items)]
    ctx = Context(kb_dir=args.kb, use_cache=False)
    print(f"{len(texts)} contents, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    if args.modes:
        compare_modes(args, texts, [m.strip() for m in args.modes.split(",") if m.strip()])
        if args.workers < 2:
            return

    rt = runtime_for(args.kb)
    rt.backend(ctx)
    tag(texts[-1], context=ctx)  # warm-up
    started = time.perf_counter()
    one = [tag(text, context=ctx)["tags"] for text in texts]
    single = time.perf_counter() - started
    single_rate = 60 * len(texts) / single
    print(f"1 tagger in this process: {single_rate:.1f} items/min ({single:.1f} s); peak memory {peak_rss_mb():.0f} MiB")

    started = time.perf_counter()
    with TaggerPool(args.workers, ctx) as pool:
        pool.start()
        start_up = time.perf_counter() - started
        pool.submit(texts[-1]).result()
        started = time.perf_counter()
        futures = [pool.submit(text) for text in texts]
        many = [f.result()["tags"] for f in futures]
        pooled = time.perf_counter() - started
        memory = pool.memory()
    pooled_rate = 60 * len(texts) / pooled
    same = sum(a == b for a, b in zip(one, many))
    print(
        f"{args.workers} worker processes: {pooled_rate:.1f} items/min ({pooled:.1f} s) after a {start_up:.1f} s start-up; "
        f"{pooled_rate / single_rate:.2f}× one tagger"
    )
    print(f"peak memory per worker (MiB): {', '.join(f'{v:.0f}' for v in memory.values())}")
    print(f"identical tags and confidences for {same} of {len(texts)} contents")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "command": " ".join(sys.argv),
                    "items": len(texts),
                    "single_items_per_min": single_rate,
                    "workers": args.workers,
                    "pool_items_per_min": pooled_rate,
                    "ratio": pooled_rate / single_rate,
                    "start_up_s": start_up,
                    "worker_peak_rss_mib": list(memory.values()),
                    "main_peak_rss_mib": peak_rss_mb(),
                    "identical": same,
                },
                indent=2,
            )
        )


def compare_modes(args, texts: list[str], modes: list[str]) -> None:
    """One tagger per LLM mode over the same texts, the modes taking turns item by item."""
    contexts = {m: Context(kb_dir=args.kb, use_cache=False, llm=m) for m in modes}
    runtime_for(args.kb).backend(contexts[modes[0]])
    for m in modes:
        tag(texts[-1] + " (warm-up)", context=contexts[m])
    seconds = {m: 0.0 for m in modes}
    answers: dict[str, list] = {m: [] for m in modes}
    routed = {m: 0 for m in modes}
    for i, text in enumerate(texts):
        for m in modes:
            started = time.perf_counter()
            result = tag(text, context=contexts[m])
            seconds[m] += time.perf_counter() - started
            answers[m].append([(t["tag"], t["confidence"]) for t in result["tags"]])
            routed[m] += bool((result.get("route") or {}).get("llm"))
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(texts)} items: " + ", ".join(f"{m} {seconds[m]:.0f} s" for m in modes), file=sys.stderr, flush=True)
    rates = {m: 60 * len(texts) / seconds[m] for m in modes}
    print(f"| mode | items/min | s/item | items sent to the LLM | answers identical to {modes[0]}'s |")
    print("|---|---|---|---|---|")
    for m in modes:
        same = sum(a == b for a, b in zip(answers[m], answers[modes[0]]))
        print(f"| {m} | {rates[m]:.1f} | {seconds[m] / len(texts):.2f} | {routed[m]} of {len(texts)} | {same} of {len(texts)} |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"command": " ".join(sys.argv), "items": len(texts), "items_per_min": rates, "routed": routed}, indent=2)
        )


if __name__ == "__main__":
    main()
