"""The tag tree in recall's ranker, on debtags with its facets as the tree: the same items scored by
one knowledge base whose ranker weighs each candidate's relatives (``hierarchy_features``) and one
whose ranker does not.

Builds (once) ``bench/out/debtags-tree-kb``: a copy of ``bench/out/debtags-kb`` (see
``bench/beyond_history.py``) whose vocabulary is reloaded with each tag's facet as its parent and
the 32 facets as tags (a facet's description lists its values' short names). Then two copies,
``…-tree-on`` and ``…-tree-off``, differ only in ``hierarchy_features``; each trains its
classifier and ranker (``kb train-classifier``, the same seed) and runs ``llm4tag eval`` on the
same seeded validation items (fused recall, ``no-llm``). Prints Acc@1, micro-F1 at the default
threshold and at the best cut, and NDCG@5 of each, and a JSON line.

    .venv/bin/python bench/hierarchy.py                # 300 items
    .venv/bin/python bench/hierarchy.py --items 600
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from beyond_history import DATA, OUT, ensure_kb, llm4tag


def tree_vocabulary(path: Path) -> Path:
    """debtags' tags.tsv with a parent column (the facet) and one row per facet."""
    rows = list(csv.DictReader(open(DATA / "debtags" / "tags.tsv", encoding="utf-8"), delimiter="\t"))
    facets: dict[str, list[str]] = {}
    for row in rows:
        facet = row["tag"].split("::", 1)[0]
        if "::" in row["tag"]:
            facets.setdefault(facet, []).append((row.get("description") or row["tag"]).split(":", 1)[0].strip())
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter="\t")
        out.writerow(["tag", "description", "parent"])
        for facet, values in sorted(facets.items()):
            out.writerow([facet, f"{facet}: " + ", ".join(values[:12]), ""])
        for row in rows:
            facet = row["tag"].split("::", 1)[0]
            out.writerow([row["tag"], row.get("description") or "", facet if "::" in row["tag"] and facet != row["tag"] else ""])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    base = ensure_kb("debtags")
    tree = OUT / "debtags-tree-kb"
    if not (tree / "config.json").is_file():
        shutil.copytree(base, tree, ignore=shutil.ignore_patterns(".write.lock", "classifier", "node-cache.sqlite*", "last-eval.json"))
        llm4tag("--kb", str(tree), "kb", "load-vocab", str(tree_vocabulary(OUT / "debtags-tree.tsv")))
    figures = {}
    for name, features in (("off", False), ("on", True)):
        kb = OUT / f"debtags-tree-{name}"
        if not (kb / "classifier" / "ranker.json").is_file():
            shutil.rmtree(kb, ignore_errors=True)
            shutil.copytree(tree, kb, ignore=shutil.ignore_patterns(".write.lock", "node-cache.sqlite*"))
            config = json.loads((kb / "config.json").read_text())
            (kb / "config.json").write_text(json.dumps({**config, "hierarchy_features": features}, indent=2))
            llm4tag("--kb", str(kb), "kb", "train-classifier")
        out = OUT / "beyond" / f"debtags-tree-{name}"
        llm4tag(
            "--kb",
            str(kb),
            "eval",
            str(DATA / "debtags" / "validation.jsonl"),
            "--items",
            str(args.items),
            "--seed",
            str(args.seed),
            "--systems",
            "no-llm",
            "--mode",
            "multi",
            "--out",
            str(out),
        )
        m = json.loads((out / "metrics.json").read_text())["systems"]["no-llm"]
        figures[name] = {
            "Acc@1": round(m["Acc@1"], 3),
            "f1_micro_at_default": round(m["at_threshold"]["f1_micro"], 3),
            "f1_micro_best_cut": round(m["best_cut"]["f1_micro"], 3) if "best_cut" in m else None,
            "NDCG@5": round(m["NDCG@5"], 3),
        }
    print(f"\ndebtags, facets as the tree ({args.items} validation items, seed {args.seed}, fused recall)")
    print(f"{'hierarchy features':<20} {'Acc@1':>6} {'F1@def':>7} {'F1best':>7} {'NDCG@5':>7}")
    for name, f in figures.items():
        print(f"{name:<20} {f['Acc@1']:>6.3f} {f['f1_micro_at_default']:>7.3f} {f['f1_micro_best_cut'] or 0:>7.3f} {f['NDCG@5']:>7.3f}")
    print(json.dumps({"set": "debtags-tree", "items": args.items, "seed": args.seed, "hierarchy_features": figures}))


if __name__ == "__main__":
    main()
