"""What tagging would return with a learned calibration, estimated honestly from an eval folder.

Reads ``items-<system>.jsonl`` of a finished ``llm4tag eval``, scores every judged tag with a
calibration fitted without that item (5-fold, ``agent.evaluation.calibration.cross_validated``), ranks each
item's tags by that confidence, drops those under the threshold, and prints the same metrics as
``eval`` next to the raw P(Yes) ranking.

    .venv/bin/python bench/learned_calibration.py bench/out/eval-debtags-ft --threshold 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.batch import read_finished  # noqa: E402
from agent.evaluation.calibration import cross_validated  # noqa: E402
from agent.evaluation import multi_tag_metrics, single_tag_metrics  # noqa: E402
from agent.confidence import rank_tags  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("eval_dir")
    ap.add_argument("--system", default="full")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--mode", choices=["multi", "single"], default="multi")
    ap.add_argument("--kind", choices=["logistic", "isotonic"], default="logistic")
    args = ap.parse_args()
    records = list(read_finished(Path(args.eval_dir) / f"items-{args.system}.jsonl").values())
    rows = [(r["id"], j) for r in records for j in r["judged"]]
    labels = [j["tag"] in set(r["truth"]) for r in records for j in r["judged"]]
    learned = cross_validated([j["features"] for _, j in rows], labels, [g for g, _ in rows], args.kind)
    by_item: dict[str, list[dict]] = {}
    for (item, j), p in zip(rows, learned):
        by_item.setdefault(item, []).append({"tag": j["tag"], "confidence": p, "raw": j["p_yes"]})
    truths = [r["truth"] for r in records]
    metric = single_tag_metrics if args.mode == "single" else multi_tag_metrics
    keys = (
        ["accuracy", "f1_micro", "Coverage@1"]
        if args.mode == "single"
        else ["Acc@1", "Acc@2", "Acc@3", "Coverage@1", "Coverage@3", "f1_micro", "NDCG@5"]
    )
    for name, field in (("raw P(Yes)", "raw"), (f"learned {args.kind} (out of fold)", "confidence")):
        preds = [
            [t["tag"] for t in rank_tags([{"tag": j["tag"], "confidence": j[field]} for j in by_item.get(r["id"], [])], args.threshold)]
            for r in records
        ]
        m = metric(preds, truths)
        print(json.dumps({"confidence": name, "items": len(records), "threshold": args.threshold, **{k: round(m[k], 3) for k in keys}}))


if __name__ == "__main__":
    main()
