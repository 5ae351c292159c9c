"""Benchmark: how much of a content's time is the model's tokens, and what the prompt heads save.

1. Token rates of the embedded model, measured in this run: prompt evaluation (tokens/s on a
   ~1,000-token prompt) and generation (seconds per generated token).
2. Tagging N contents with the full pipeline, twice: with the saved KV caches of the prompts'
   fixed heads off ("before": only the longest common prefix with the previous prompt is
   reused) and on ("after", the default). Per content: wall time of ``agent.tagging.tag``,
   prompt tokens evaluated (generation + judgments), generated tokens, what those tokens cost at
   the rates of 1., and the ratio wall / token cost (target ≤ 1.2).
3. Judging m tags of a new content against judging one (target ≤ 1 + 0.15·m), median of 3.

    .venv/bin/python bench/model_waste.py                      # the demo knowledge base, 10 of its examples
    .venv/bin/python bench/model_waste.py --kb KB --data items.jsonl --items 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import Context  # noqa: E402
from agent.runtime import runtime_for  # noqa: E402
from agent.tagging import tag  # noqa: E402
from prompts import load_prompt  # noqa: E402
from prompts.fill import judgment_examples, judgment_head, judgment_prompts  # noqa: E402

DEMO_EXAMPLES = Path(__file__).resolve().parents[1] / "knowledge_base" / "demo_data" / "examples.jsonl"


def token_rates(backend, repeats: int = 3) -> dict:
    tokens = backend.render("You tag content.", "word " * 1000)
    prefill, per_generated = [], []
    for _ in range(repeats):
        backend.llm.reset()
        started = time.perf_counter()
        backend.llm.eval(tokens)
        prefill.append(len(tokens) / (time.perf_counter() - started))
        backend.llm.reset()
        started = time.perf_counter()
        backend.llm.eval(tokens[:200])
        evaluated = time.perf_counter() - started
        backend.llm.reset()
        started = time.perf_counter()
        out = backend.llm.create_completion(tokens[:200], max_tokens=40, temperature=0.0)
        generated = out["usage"]["completion_tokens"]
        per_generated.append((time.perf_counter() - started - evaluated) / max(generated, 1))
    backend.llm.reset()
    return {"prompt_tokens_per_s": statistics.median(prefill), "seconds_per_generated_token": statistics.median(per_generated)}


def tag_items(texts: list[str], ctx: Context, rates: dict) -> dict:
    rows = []
    for text in texts:
        started = time.perf_counter()
        result = tag(text, context=ctx)
        wall = time.perf_counter() - started
        sel = result["selection"]
        generate_evaluated = sel.get("prompt_tokens", 0) - sel.get("reused_tokens", 0)
        judge_evaluated = sum(j["prompt_tokens"] for j in result["judgments"])
        generated = sel.get("completion_tokens", 0)
        cost = (generate_evaluated + judge_evaluated) / rates["prompt_tokens_per_s"] + generated * rates["seconds_per_generated_token"]
        rows.append(
            {
                "wall_s": wall,
                "generate_evaluated": generate_evaluated,
                "judge_evaluated": judge_evaluated,
                "generated": generated,
                "judged_tags": len(result["judgments"]),
                "token_cost_s": cost,
                "timings": result["timings"],
            }
        )
    mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
    nodes = {node: round(statistics.mean(r["timings"].get(node, 0.0) for r in rows), 3) for node in rows[0]["timings"]}
    return {
        "contents": len(rows),
        "wall_s": round(mean("wall_s"), 3),
        "token_cost_s": round(mean("token_cost_s"), 3),
        "wall_over_token_cost": round(mean("wall_s") / mean("token_cost_s"), 3),
        "prompt_tokens_evaluated": round(mean("generate_evaluated") + mean("judge_evaluated"), 1),
        "generate_evaluated": round(mean("generate_evaluated"), 1),
        "judge_evaluated": round(mean("judge_evaluated"), 1),
        "generated_tokens": round(mean("generated"), 1),
        "judged_tags": round(mean("judged_tags"), 1),
        "node_seconds": nodes,
    }


def judging_cost(backend, texts: list[str], ctx: Context, m_values=(1, 5, 10), repeats: int = 3) -> dict:
    """Seconds to judge m tags of a content whose prompts nothing in the cache shares but the head,
    with the prompts the confidence step builds (examples as Yes/No shots, tag descriptions)."""
    system, head = load_prompt("system"), judgment_head()
    prompts_of = []
    for text in texts[: repeats + 1]:
        recalled = tag(text, context=ctx.with_overrides(use_generation=False, judge_top=0))  # recall and examples, no LLM call
        names = [c["tag"] for c in recalled["candidates"]]
        descriptions = {c["tag"]: c.get("description", "") for c in recalled["candidates"]}
        prompts_of.append(
            judgment_prompts(text, names[: max(m_values)], descriptions, ctx.content_chars, judgment_examples(recalled["examples"], names))
        )
    seconds: dict[int, list[float]] = {m: [] for m in m_values}
    tokens: dict[int, list[int]] = {m: [] for m in m_values}
    for r in range(repeats):
        for m in m_values:
            backend.judge(system, prompts_of[r + 1][:1], head=head)  # the cache holds another content: this one is new
            started = time.perf_counter()
            judged = backend.judge(system, prompts_of[r][:m], head=head)
            seconds[m].append(time.perf_counter() - started)
            tokens[m].append(sum(j.prompt_tokens for j in judged))
    one = statistics.median(seconds[m_values[0]])
    return {
        m: {
            "seconds": round(statistics.median(s), 3),
            "times_one": round(statistics.median(s) / one, 2),
            "tokens_evaluated": statistics.median(tokens[m]),
            "target_at_most": round(1 + 0.15 * m, 2),
        }
        for m, s in seconds.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", default=None, help="knowledge base directory (default: the bundled demo one)")
    ap.add_argument("--data", default=str(DEMO_EXAMPLES), help="JSONL with a text field per line")
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--judging-only", action="store_true", help="only part 3")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    texts = [json.loads(line)["text"] for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()][: args.items]
    ctx = Context(kb_dir=args.kb, use_cache=False)
    rt = runtime_for(args.kb)
    backend = rt.backend(ctx)
    print(f"backend: {backend.describe()}  load average: {os.getloadavg()[0]:.2f}")
    rates = token_rates(backend)
    print(
        f"token rates: {rates['prompt_tokens_per_s']:.0f} prompt tokens/s, {rates['seconds_per_generated_token'] * 1000:.1f} ms per generated token"
    )
    tag(texts[0], context=ctx)  # warm-up: encoder, graph, grammar
    report: dict = {"command": " ".join(sys.argv), "rates": rates, "load_average": os.getloadavg()[0]}
    for label, enabled in () if args.judging_only else (("before (no saved prompt heads)", False), ("after (saved prompt heads)", True)):
        backend.heads.enabled = enabled
        backend.llm.reset()
        row = tag_items(texts, ctx, rates)
        report[label.split()[0]] = row
        print(f"\n{label}, {row['contents']} contents:")
        print(
            f"  prompt tokens evaluated per content: {row['prompt_tokens_evaluated']} "
            f"(generation {row['generate_evaluated']}, judgments {row['judge_evaluated']} for {row['judged_tags']} tags); "
            f"generated {row['generated_tokens']}"
        )
        print(
            f"  wall {row['wall_s']:.2f} s per content, its tokens cost {row['token_cost_s']:.2f} s: ratio {row['wall_over_token_cost']:.2f} (target ≤ 1.2)"
        )
        print(f"  seconds per node: {row['node_seconds']}")
    if not args.judging_only:
        before, after = report["before"], report["after"]
        print(
            f"\nprompt tokens evaluated per content: {before['prompt_tokens_evaluated']} → {after['prompt_tokens_evaluated']} "
            f"({100 * (1 - after['prompt_tokens_evaluated'] / before['prompt_tokens_evaluated']):.1f}% fewer)"
        )
    report["judging"] = judging_cost(backend, texts, ctx)
    print("\njudging m tags of a new content, against one (median of 3):")
    for m, row in report["judging"].items():
        print(
            f"  m={m:2d}: {row['seconds']:.3f} s, {row['tokens_evaluated']:.0f} tokens evaluated, {row['times_one']}× one (target ≤ {row['target_at_most']})"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
