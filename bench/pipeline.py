"""Benchmark of the tagging graph with the embedded model (issue: the tagging graph).

Three parts, each printed as a table and saved to bench/out/pipeline.json:

1. KV-cache reuse in the confidence step: the judge's cost for 10 tags of one content with
   and without reusing the content's KV cache, and whether the scores are identical.
2. Per-content time split by node and LLM tokens processed per content (prompt vs generated).
3. Tagging quality (Acc@1/2/3 and Coverage@k) on N validation items for the full pipeline, the
   pipeline without calibration, match recall only (top-k tags by cosine, no LLM), and the
   graph-recall ranking alone (top-k candidates by recall score, no LLM).

Per-item results are appended to bench/out/pipeline-items.jsonl as they come; re-running the
same command resumes where it stopped.

    .venv/bin/python bench/pipeline.py --kb bench/out/debtags-kb --data ../shared/data/debtags/validation.jsonl --limit 200
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import Context, graph  # noqa: E402
from agent.llm import load_backend  # noqa: E402
from agent.metrics import tagging_report  # noqa: E402
from agent.nodes.calibrate import judgment_examples, judgment_prompts, rank_tags  # noqa: E402
from agent.resources import get_knowledge_base  # noqa: E402
from knowledge_base.recall import recall_candidates  # noqa: E402
from prompts import load_prompt  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def load_items(path: Path, limit: int, seed: int) -> list[dict]:
    rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def kv_cache_benchmark(ctx: Context, item: dict, repeats: int = 3) -> dict:
    kb = get_knowledge_base(ctx.kb_dir)
    backend = load_backend(ctx.backend)
    result = graph.invoke({"content": item["text"], "content_id": item["id"]}, context=ctx.with_overrides(use_calibration=False))
    tags = [c["tag"] for c in result["candidates"]][:10]
    descriptions = {c["tag"]: c["description"] for c in result["candidates"]}
    shots = judgment_examples(result["examples"], tags)
    prompts = judgment_prompts(item["text"].strip(), tags, descriptions, ctx.content_chars, shots)
    system = load_prompt("system")
    timings = {"reuse": [], "no_reuse": []}
    scores = {}
    for _ in range(repeats):
        for mode, reuse in (("no_reuse", False), ("reuse", True)):
            backend.llm.reset()  # start each measurement from an empty cache
            started = time.perf_counter()
            judged = backend.judge(system, prompts, reuse_cache=reuse)
            timings[mode].append(time.perf_counter() - started)
            scores[mode] = [j.p_yes for j in judged]
            if reuse:
                scores["tokens_reuse"] = sum(j.prompt_tokens for j in judged)
            else:
                scores["tokens_no_reuse"] = sum(j.prompt_tokens for j in judged)
    med = {k: statistics.median(v) for k, v in timings.items()}
    return {
        "tags": len(tags),
        "seconds_with_reuse": round(med["reuse"], 3),
        "seconds_without_reuse": round(med["no_reuse"], 3),
        "speedup": round(med["no_reuse"] / med["reuse"], 2),
        "tokens_evaluated_with_reuse": scores["tokens_reuse"],
        "tokens_evaluated_without_reuse": scores["tokens_no_reuse"],
        "identical_scores": scores["reuse"] == scores["no_reuse"],
        "max_abs_score_difference": max(abs(a - b) for a, b in zip(scores["reuse"], scores["no_reuse"])),
    }


def run_items(ctx: Context, items: list[dict], path: Path) -> list[dict]:
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                done[rec["id"]] = rec
            except ValueError:
                continue
    kb = get_knowledge_base(ctx.kb_dir)
    match_cfg = kb.config.recall.with_overrides(strategy="match", budget=ctx.max_tags)
    with open(path, "a", encoding="utf-8") as out:
        for i, item in enumerate(items, 1):
            if item["id"] in done:
                continue
            started = time.perf_counter()
            result = graph.invoke({"content": item["text"], "content_id": item["id"]}, context=ctx)
            wall = time.perf_counter() - started
            match = recall_candidates(kb, item["text"], match_cfg, exclude_ids=[item["id"]])
            rec = {
                "id": item["id"],
                "truth": item["tags"],
                "lib_or_doc": item.get("lib_or_doc", False),
                "wall_s": round(wall, 3),
                "timings": result["timings"],
                "candidates": [c["tag"] for c in result["candidates"]],
                "selection": result["selection"]["tags"],
                "from_history": result["selection"]["from_history"],
                "judgments": [{"tag": j["tag"], "p_yes": j["p_yes"]} for j in result["judgments"]],
                "final": [t["tag"] for t in result["tags"]],
                "prompt_tokens_generate": result["selection"]["prompt_tokens"],
                "completion_tokens_generate": result["selection"]["completion_tokens"],
                "prompt_tokens_judge": sum(j["prompt_tokens"] for j in result["judgments"]),
                "reused_tokens_judge": sum(j["reused_tokens"] for j in result["judgments"]),
                "match_top": match.tags,
            }
            out.write(json.dumps(rec) + "\n")
            out.flush()
            done[item["id"]] = rec
            print(f"[{len(done)}/{len(items)}] {wall:5.1f}s {item['id']}", file=sys.stderr, flush=True)
    return [done[i["id"]] for i in items if i["id"] in done]


def summarise(records: list[dict], ctx: Context) -> dict:
    truths = [r["truth"] for r in records]
    k = ctx.max_tags
    systems = {
        "full pipeline (threshold %.2f)" % ctx.threshold: [r["final"] for r in records],
        "without calibration": [r["selection"] for r in records],
        "match recall only (top-%d by cosine)" % k: [r["match_top"][:k] for r in records],
        "graph recall ranking only (top-%d)" % k: [r["candidates"][:k] for r in records],
    }
    for th in (0.3, 0.4, 0.6):
        systems[f"full pipeline (threshold {th:.2f})"] = [
            [t["tag"] for t in rank_tags([{"tag": j["tag"], "confidence": j["p_yes"]} for j in r["judgments"]], th)] for r in records
        ]
    quality = {name: tagging_report(preds, truths) for name, preds in systems.items()}
    subset = [i for i, r in enumerate(records) if not r["lib_or_doc"]]
    quality_nonlib = {
        name: tagging_report([preds[i] for i in subset], [truths[i] for i in subset]) for name, preds in systems.items()
    }
    nodes = {}
    for node in ("recall", "examples", "knowledge", "generate", "calibrate"):
        values = [r["timings"].get(node, 0.0) for r in records]
        nodes[node] = {"mean_s": round(statistics.mean(values), 3), "p50_s": round(statistics.median(values), 3)}
    tokens = {
        key: round(statistics.mean(r[key] for r in records), 1)
        for key in ("prompt_tokens_generate", "completion_tokens_generate", "prompt_tokens_judge", "reused_tokens_judge")
    }
    return {
        "items": len(records),
        "items_not_lib_or_doc": len(subset),
        "wall_s_per_content": {"mean": round(statistics.mean(r["wall_s"] for r in records), 2), "p50": round(statistics.median(r["wall_s"] for r in records), 2)},
        "node_seconds": nodes,
        "tokens_per_content": tokens,
        "history_kept_tags_per_content": round(statistics.mean(len(r["from_history"]) for r in records), 2),
        "quality": quality,
        "quality_not_lib_or_doc": quality_nonlib,
    }


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}")
    cols = list(next(iter(table.values())))
    print(f"  {'system':42s} " + " ".join(f"{c:>11s}" for c in cols))
    for name, row in table.items():
        print(f"  {name:42s} " + " ".join(f"{row[c]:11.3f}" for c in cols))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", required=True, help="knowledge base directory (e.g. bench/out/debtags-kb from bench/recall.py)")
    ap.add_argument("--data", default="../shared/data/debtags/validation.jsonl")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--backend", default="llamacpp")
    ap.add_argument("--skip-kv", action="store_true")
    ap.add_argument("--items-file", default=str(OUT / "pipeline-items.jsonl"))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ctx = Context(kb_dir=args.kb, backend=args.backend)
    items = load_items(Path(args.data), args.limit, args.seed)
    report: dict = {"command": " ".join(sys.argv), "context": ctx.__dict__}
    if not args.skip_kv:
        report["kv_cache"] = kv_cache_benchmark(ctx, items[0])
        print("KV-cache reuse in the confidence step (10 tags of one content, median of 3):")
        for key, value in report["kv_cache"].items():
            print(f"  {key}: {value}")
    records = run_items(ctx, items, Path(args.items_file))
    summary = summarise(records, ctx)
    report["pipeline"] = summary
    print(f"\nper content ({summary['items']} items): wall {summary['wall_s_per_content']}")
    for node, v in summary["node_seconds"].items():
        print(f"  {node:10s} mean {v['mean_s']:.3f}s  p50 {v['p50_s']:.3f}s")
    print(f"  tokens per content: {summary['tokens_per_content']}")
    print(f"  tags kept from history (C2C2T vote share ≥ {ctx.history_keep}) per content: {summary['history_kept_tags_per_content']}")
    print_table(f"quality on {summary['items']} items", summary["quality"])
    print_table(f"quality on the {summary['items_not_lib_or_doc']} items that are not lib/doc packages", summary["quality_not_lib_or_doc"])
    (OUT / "pipeline.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
