"""Benchmark of the tagging graph with the embedded model.

1. KV-cache reuse in the confidence step: the judge's cost for 10 tags of one content with and
   without reusing the content's KV cache (median of 3), and whether the scores are identical.
2. Per-content time split by node, and LLM tokens per content (prompt vs generated).
3. Tagging quality (Acc@1/2/3, Coverage@k) on N validation items for the full pipeline, without
   calibration, match recall only (top-k tags by cosine, no LLM) and kNN from similar history
   items (no LLM) — run through ``agent.evaluation.evaluate``, so it resumes after interruption.

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
from agent.evaluation import Item, comparison_rows, evaluate, multi_tag_metrics  # noqa: E402
from agent.batch import read_finished  # noqa: E402
from agent.llm import load_backend  # noqa: E402
from prompts.fill import judgment_examples, judgment_prompts  # noqa: E402
from prompts import load_prompt  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def load_items(path: Path, limit: int, seed: int) -> tuple[list[Item], set[str]]:
    rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    random.Random(seed).shuffle(rows)
    rows = rows[:limit]
    return [Item(r["id"], r["text"], r["tags"]) for r in rows], {r["id"] for r in rows if r.get("lib_or_doc")}


def kv_cache_benchmark(ctx: Context, item: Item, repeats: int = 3) -> dict:
    backend = load_backend(ctx.backend)
    result = graph.invoke({"content": item.text, "content_id": item.id}, context=ctx.with_overrides(use_calibration=False))
    tags = [c["tag"] for c in result["candidates"]][:10]
    descriptions = {c["tag"]: c["description"] for c in result["candidates"]}
    prompts = judgment_prompts(item.text.strip(), tags, descriptions, ctx.content_chars, judgment_examples(result["examples"], tags))
    system = load_prompt("system")
    seconds: dict[str, list[float]] = {"reuse": [], "no_reuse": []}
    scores, tokens = {}, {}
    for _ in range(repeats):
        for mode, reuse in (("no_reuse", False), ("reuse", True)):
            backend.llm.reset()  # each measurement starts from an empty cache
            started = time.perf_counter()
            judged = backend.judge(system, prompts, reuse_cache=reuse)
            seconds[mode].append(time.perf_counter() - started)
            scores[mode] = [j.p_yes for j in judged]
            tokens[mode] = sum(j.prompt_tokens for j in judged)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "tags": len(tags),
        "seconds_with_reuse": round(med["reuse"], 3),
        "seconds_without_reuse": round(med["no_reuse"], 3),
        "speedup": round(med["no_reuse"] / med["reuse"], 2),
        "tokens_evaluated_with_reuse": tokens["reuse"],
        "tokens_evaluated_without_reuse": tokens["no_reuse"],
        "identical_scores": scores["reuse"] == scores["no_reuse"],
    }


def per_node(records: list[dict]) -> dict:
    nodes = {}
    for node in ("recall", "examples", "knowledge", "generate", "calibrate"):
        values = [r["timings"].get(node, 0.0) for r in records]
        nodes[node] = {"mean_s": round(statistics.mean(values), 3), "p50_s": round(statistics.median(values), 3)}
    totals = [sum(r["timings"].values()) for r in records]
    nodes["total"] = {"mean_s": round(statistics.mean(totals), 3), "p50_s": round(statistics.median(totals), 3)}
    tokens = {k: round(statistics.mean(r["tokens"][k] for r in records), 1) for k in records[0]["tokens"]}
    return {
        "seconds": nodes,
        "tokens_per_content": tokens,
        "tags_kept_from_history_per_content": round(statistics.mean(len(r["from_history"]) for r in records), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", required=True, help="knowledge base directory (e.g. bench/out/debtags-kb from bench/recall.py)")
    ap.add_argument("--data", default="../shared/data/debtags/validation.jsonl")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--backend", default="llamacpp")
    ap.add_argument("--skip-kv", action="store_true")
    ap.add_argument("--out", default=str(OUT / "pipeline-eval"), help="evaluation folder (resumable)")
    args = ap.parse_args()
    ctx = Context(kb_dir=args.kb, backend=args.backend)
    items, lib_ids = load_items(Path(args.data), args.limit, args.seed)
    report: dict = {"command": " ".join(sys.argv)}
    if not args.skip_kv:
        report["kv_cache"] = kv_cache_benchmark(ctx, items[0])
        print("KV-cache reuse in the confidence step (10 tags of one content, median of 3):")
        for key, value in report["kv_cache"].items():
            print(f"  {key}: {value}")
    progress = lambda system, i, n: print(f"\r{system} {i}/{n}", end="", file=sys.stderr, flush=True)  # noqa: E731
    metrics = evaluate(items, ctx, args.out, ["full", "no-calibration", "embedding-match", "knn"], progress=progress)
    print(file=sys.stderr)
    records = list(read_finished(Path(args.out) / "items-full.jsonl").values())
    report["per_content"] = per_node(records)
    print(f"\nper content, {len(records)} items (seconds):")
    for node, v in report["per_content"]["seconds"].items():
        print(f"  {node:10s} mean {v['mean_s']:7.3f}  p50 {v['p50_s']:7.3f}")
    print(f"  LLM tokens per content: {report['per_content']['tokens_per_content']}")
    print(f"  tags kept from history per content: {report['per_content']['tags_kept_from_history_per_content']}")
    header, rows = comparison_rows(metrics)
    print(f"\nquality on {len(items)} items:")
    for row in [header, *rows]:
        print("  " + "  ".join(f"{c:>12s}" if i else f"{c:22s}" for i, c in enumerate(row)))
    keep = [i for i, item in enumerate(items) if item.id not in lib_ids]
    by_system = {
        s: [r for r in read_finished(Path(args.out) / f"items-{'full' if s == 'no-calibration' else s}.jsonl").values()]
        for s in metrics["systems"]
    }
    report["quality"] = metrics
    report["quality_not_lib_or_doc"] = {}
    print(f"\nquality on the {len(keep)} items that are not library/doc packages:")
    for system, recs in by_system.items():
        recs = {r["id"]: r for r in recs}
        preds = [recs[items[i].id]["generated" if system == "no-calibration" else "predicted"] for i in keep]
        m = multi_tag_metrics(preds, [items[i].tags for i in keep])
        report["quality_not_lib_or_doc"][system] = m
        print(
            f"  {system:22s} Acc@1 {m['Acc@1']:.3f}  Acc@2 {m['Acc@2']:.3f}  Acc@3 {m['Acc@3']:.3f}  Coverage@1 {m['Coverage@1']:.3f}  Coverage@3 {m['Coverage@3']:.3f}"
        )
    (OUT / "pipeline.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
