"""What the LLM steps cost and add: ``full`` (always), ``auto`` (the default: only where they can
change the answer, ``agent.routing``) and ``fast`` (never), on the same items in one run.

For each data set it builds (once) the knowledge base of ``bench/beyond_history.py`` and runs one
``llm4tag eval`` with the systems ``full``, ``auto`` and ``no-llm`` (= fast) over the same seeded
test items plus foreign texts from ``bench/out_of_domain.jsonl``. The evaluation runs every
system on item i before item i+1, so a busy machine slows them alike and the time ratios hold.

    .venv/bin/python bench/llm_routing.py                            # four sets, 30 items + 10 foreign each
    .venv/bin/python bench/llm_routing.py --sets banking77 --items 60

Printed per set: the headline metric (single-tag: the evaluation's headline at full coverage;
multi-tag: micro-F1 at the default threshold) per system, the share of foreign texts left untagged, seconds per item, the share of
items the LLM ran for, and auto's time as a share of full's. Results:
``bench/out/routing/<set>-fusion/`` or ``-no-fusion/``, by whether the knowledge base has a fitted
fusion (``llm4tag calibrate``): only with one can the LLM's output change a confidence.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beyond_history import DATA, FOREIGN, OUT, SETS, ensure_kb, llm4tag  # noqa: E402

SYSTEMS = ("full", "auto", "no-llm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--ood-items", type=int, default=10)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    rows = []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        split, mode = SETS[name]
        kb = ensure_kb(name)
        out = OUT / "routing" / f"{name}-{'fusion' if (kb / 'calibration.json').is_file() else 'no-fusion'}"
        llm4tag(
            "--kb",
            str(kb),
            "eval",
            str(DATA / name / split),
            "--items",
            str(args.items),
            "--seed",
            str(args.seed),
            "--systems",
            ",".join(SYSTEMS),
            "--mode",
            mode,
            "--out",
            str(out),
            "--out-of-domain",
            str(FOREIGN),
            "--ood-items",
            str(args.ood_items),
        )
        metrics = json.loads((out / "metrics.json").read_text())
        headline = metrics["headline"]
        row = {"set": name, "items": metrics["items"], "headline": headline, "fusion": (kb / "calibration.json").is_file()}
        for system in SYSTEMS:
            m = metrics["systems"][system]
            value = m["at_threshold"]["f1_micro"] if mode == "multi" else m[headline]
            row[system] = {
                "score": round(value, 3),
                "seconds_per_item": round(m.get("seconds_per_item", 0.0), 3),
                "llm_share": m.get("llm_share"),
                "foreign_untagged": round((metrics.get("abstention") or {}).get(system, {}).get("untagged", float("nan")), 3),
            }
        row["auto_time_share_of_full"] = round(row["auto"]["seconds_per_item"] / max(row["full"]["seconds_per_item"], 1e-9), 4)
        rows.append(row)
    print(
        f"\n{'set':<11} {'items':>5} {'measure':<34} "
        + " ".join(f"{s + ' score':>14} {s + ' s/item':>14}" for s in SYSTEMS)
        + f" {'auto LLM share':>15} {'auto/full time':>15} foreign untagged (full/auto/fast)"
    )
    for r in rows:
        mode = SETS[r["set"]][1]
        measure = r["headline"] + " at full coverage" if mode == "single" else "micro-F1 at the default threshold"
        print(
            f"{r['set']:<11} {r['items']:>5} {measure:<34} "
            + " ".join(f"{r[s]['score']:>14.3f} {r[s]['seconds_per_item']:>14.3f}" for s in SYSTEMS)
            + f" {r['auto']['llm_share'] or 0.0:>15.0%} {r['auto_time_share_of_full']:>15.4f} "
            + "/".join(f"{r[s]['foreign_untagged']:.0%}" for s in SYSTEMS)
        )
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
