"""The lift for tags without history on every test item, for several seeded choices of new tags.

``kb train-classifier`` recalls its held-out slice as if a seeded 15% of the tags had no history
and chooses, on those items, the lift for a tag with only its description (``choose_cold_bias``:
a bias, scaled down as the tag's description falls below the best match). One choice of tags is
one draw: the bias it settled on, and with it the accuracy on real new tags, moved from
retraining to retraining (hwu64's 23 sampled cold items: 0.83, 0.78, 0.74, 0.61 over four), so
``learned_recall.COLD_SPLITS`` disjoint choices are recalled for it. This bench scores every
test item (not a sample) of ``llm4tag eval --cold-start SHARE --seed S`` copies, for several
seeds S, beside embedding match and kNN on the same items; ``--splits`` sets ``COLD_SPLITS``
for the run (run it from an older checkout for the figures before a change):

    .venv/bin/python bench/cold_splits.py --sets hwu64,banking77 --seeds 13,14,15

It needs the knowledge bases ``bench/beyond_history.py`` builds (``bench/out/<set>-kb``). Results:
``bench/out/cold-splits/<set>/s<seed>-k<splits>/`` and one JSON line per run on standard output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from beyond_history import DATA, OUT, SETS, ensure_kb  # noqa: E402  (this folder)

# the CLI with COLD_SPLITS set for this process only (the cold copy is trained inside ``eval``)
RUN = "import sys; import knowledge_base.learned_recall as l; l.COLD_SPLITS = int(sys.argv.pop(1)); from ui.cli import main; main()"


def evaluate(name: str, seed: int, splits: int, share: float, systems: str) -> dict:
    split, mode = SETS[name]
    out = OUT / "cold-splits" / name / f"s{seed}-k{splits}"
    command = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-c",
        RUN,
        str(splits),
        "--kb",
        str(OUT / f"{name}-kb"),
        "eval",
        str(DATA / name / split),
        "--seed",
        str(seed),
        "--systems",
        systems,
        "--mode",
        mode,
        "--cold-start",
        str(share),
        "--out",
        str(out),
    ]
    print("$", " ".join(command[3:]), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    metrics = json.loads((out / "metrics.json").read_text())
    record = json.loads((out / "cold-start-kb" / "cold-start.json").read_text())
    cold = (metrics.get("groups") or {}).get("cold") or {}
    headline = metrics["headline"]
    return {
        "set": name,
        "seed": seed,
        "cold_splits": splits,
        "items": metrics["items"],
        "cold_items": cold.get("items"),
        "cold_bias": (record.get("classifier") or {}).get("cold_bias"),
        "cold_width": (record.get("classifier") or {}).get("cold_width"),
        "cold": {s: round(m[headline], 3) for s, m in (cold.get("systems") or {}).items()},
        "all": {s: round(m[headline], 3) for s, m in metrics["systems"].items()},
        "headline": headline,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="hwu64,banking77")
    ap.add_argument("--seeds", default="13,14,15")
    ap.add_argument("--splits", default="1,3", help="values of COLD_SPLITS to compare")
    ap.add_argument("--cold-start", type=float, default=0.1)
    ap.add_argument("--systems", default="no-llm,embedding-match,knn")
    args = ap.parse_args()
    rows = []
    for name in [s for s in args.sets.split(",") if s]:
        ensure_kb(name)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for splits in [int(k) for k in args.splits.split(",")]:
                rows.append(evaluate(name, seed, splits, args.cold_start, args.systems))
                print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{'set':<11} {'seed':>4} {'splits':>6} {'bias':>5} {'width':>5} {'cold n':>6}  cold items: "
        + " · ".join(args.systems.split(","))
        + "  |  all items: "
        + " · ".join(args.systems.split(","))
    )
    for r in rows:
        systems = args.systems.split(",")
        print(
            f"{r['set']:<11} {r['seed']:>4} {r['cold_splits']:>6} {r['cold_bias']!s:>5} {r.get('cold_width')!s:>5} {r['cold_items']!s:>6}  "
            + " · ".join(f"{r['cold'].get(s, float('nan')):.3f}" for s in systems)
            + "  |  "
            + " · ".join(f"{r['all'].get(s, float('nan')):.3f}" for s in systems)
        )


if __name__ == "__main__":
    main()
