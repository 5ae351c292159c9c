"""Beyond the history, on the public dev sets: in-domain, foreign and new-tag items in one table.

For each data set it builds (once) a knowledge base from the train split in ``bench/out/<set>-kb``
(``kb load-vocab``, ``kb load-samples``, ``kb train-classifier``; the classifier is retrained when
its ranker predates the current features, item weighting or contrast), then runs two ``llm4tag eval`` runs of the chosen
systems on the same seeded test items:

1. ``mixed``: the test items with foreign texts mixed in — ``bench/out_of_domain.jsonl`` (everyday
   texts written for this) and the other dev sets' test items — at the knowledge base's default
   threshold: the headline at full coverage, the share of in-domain items that keep a tag, the
   share of foreign texts left untagged (per source), the mixed set's ECE, and micro-F1 at the
   default threshold beside each system's best cut;
2. ``cold``: ``--cold-start`` (a seeded share of the tags lose their history in a copy made for
   the run): the headline on the items that carry such a tag, and on all items.

    .venv/bin/python bench/beyond_history.py                       # all four sets, 300 items each
    .venv/bin/python bench/beyond_history.py --sets banking77 --items 100
    .venv/bin/python bench/beyond_history.py --systems no-llm,knn,embedding-match,full --items 60

Results: ``bench/out/beyond/<set>/{mixed,cold}/`` (metrics.json, report.md) and one JSON line per
set on standard output after the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"
SETS = {  # test split, task
    "banking77": ("test.jsonl", "single"),
    "hwu64": ("test.jsonl", "single"),
    "se_cooking": ("test.jsonl", "multi"),
    "debtags": ("validation.jsonl", "multi"),
}
FOREIGN = ROOT / "bench" / "out_of_domain.jsonl"

sys.path.insert(0, str(ROOT))
from knowledge_base.learned_recall import contrast_is_current  # noqa: E402


def llm4tag(*args: str) -> None:
    command = [str(ROOT / ".venv" / "bin" / "llm4tag"), *args]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def ensure_kb(name: str) -> Path:
    kb = OUT / f"{name}-kb"
    if not (kb / "config.json").is_file() or not (kb / "chroma").exists():
        llm4tag("--kb", str(kb), "kb", "load-vocab", str(DATA / name / "tags.tsv"))
        llm4tag("--kb", str(kb), "kb", "load-samples", str(DATA / name / "train.jsonl"))
    ranker = kb / "classifier" / "ranker.json"
    saved = json.loads(ranker.read_text()) if ranker.is_file() else {}
    if "learned_logit" not in saved.get("features", []) or not contrast_is_current(
        saved.get("contrast", {})
    ):  # predates the current features, weighting or contrast
        llm4tag("--kb", str(kb), "kb", "train-classifier")
    return kb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--systems", default="no-llm,knn,embedding-match,learned-recall")
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--ood-items", type=int, default=100, help="foreign texts per source (the everyday corpus and each other set)")
    ap.add_argument("--cold-start", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--external",
        action="append",
        default=[],
        metavar="SET:NAME=FILE",
        help="another tool's answers for a set's items, e.g. debtags:annif-omikuji=bench/out/annif-debtags/items-annif-omikuji.jsonl",
    )
    args = ap.parse_args()
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    summary = {}
    for name in names:
        split, mode = SETS[name]
        kb = ensure_kb(name)
        out = OUT / "beyond" / name
        common = [
            "--kb",
            str(kb),
            "eval",
            str(DATA / name / split),
            "--items",
            str(args.items),
            "--seed",
            str(args.seed),
            "--systems",
            args.systems,
            "--mode",
            mode,
        ]
        external = [f"--external={spec.split(':', 1)[1]}" for spec in args.external if spec.split(":", 1)[0] == name]
        foreign = ["--out-of-domain", str(FOREIGN)] + [
            a for other in SETS if other != name for a in ("--out-of-domain", str(DATA / other / SETS[other][0]))
        ]
        llm4tag(*common, "--out", str(out / "mixed"), *foreign, "--ood-items", str(args.ood_items), *external)
        llm4tag(*common, "--out", str(out / "cold"), "--cold-start", str(args.cold_start))
        mixed = json.loads((out / "mixed" / "metrics.json").read_text())
        cold = json.loads((out / "cold" / "metrics.json").read_text())
        headline = mixed["headline"]
        row = {}
        for system, m in mixed["systems"].items():
            a = (mixed.get("abstention") or {}).get(system, {})
            c = cold["systems"].get(system, {})
            g = ((cold.get("groups") or {}).get("cold") or {}).get("systems", {}).get(system, {})
            row[system] = {
                headline: round(m[headline], 3),
                "coverage_at_default": round(m["at_threshold"]["coverage"], 3),
                "f1_micro_at_default": round(m["at_threshold"]["f1_micro"], 3),
                "f1_micro_best_cut": round(m["best_cut"]["f1_micro"], 3) if "best_cut" in m else None,
                "foreign_untagged": {k: round(v["untagged"], 3) for k, v in (a.get("by_source") or {}).items()},
                "mixed_ECE": round(a["mixed_confidence"]["ECE"], 3) if a.get("mixed_confidence") else None,
                "cold_items": ((cold.get("groups") or {}).get("cold") or {}).get("items"),
                f"cold_{headline}": round(g[headline], 3) if g else None,
                f"all_{headline}_cold_run": round(c[headline], 3) if c else None,
            }
        summary[name] = row
        print(f"\n{name} ({mixed['items']} items, {headline}; foreign: {args.ood_items} per source)")
        print(
            f"{'system':<16} {headline:>8} {'cover':>6} {'F1@def':>7} {'F1best':>7} {'ECEmix':>7} {'cold':>6} {'all(cold run)':>13}  foreign untagged"
        )
        for system, r in row.items():
            fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
            print(
                f"{system:<16} {fmt(r[headline]):>8} {fmt(r['coverage_at_default']):>6} {fmt(r['f1_micro_at_default']):>7} "
                f"{fmt(r['f1_micro_best_cut']):>7} {fmt(r['mixed_ECE']):>7} {fmt(r[f'cold_{headline}']):>6} "
                f"{fmt(r[f'all_{headline}_cold_run']):>13}  " + ", ".join(f"{k} {v:.0%}" for k, v in r["foreign_untagged"].items())
            )
    for name, row in summary.items():
        print(json.dumps({"set": name, "systems": row}))


if __name__ == "__main__":
    main()
