"""Are the words behind a tag more than decoration? (issue 28: evidence spans)

For seeded test items of dev sets (their knowledge bases from ``bench/beyond_history.py``), the
top tag fused recall gives each item is explained with ``tagging.supporting_spans`` (occlusion
over recall). Then the highlighted words are removed all at once, and — apart — as many other
words of the text, drawn at random (``--draws`` times, averaged): the spans count as support on an
item when removing them lowers the tag's score more than removing the random words does. Prints,
per set, the share of items where that holds (target ≥ 80%), the mean score fall of each, the
mean share of the text's words highlighted, and the seconds per explanation.

    .venv/bin/python bench/evidence_spans.py                       # hwu64, se_cooking, debtags; 100 items each
    .venv/bin/python bench/evidence_spans.py --sets banking77 --items 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from beyond_history import DATA, OUT, SETS  # noqa: E402

from agent import tagging  # noqa: E402
from agent.runtime import runtime_for  # noqa: E402
from knowledge_base.attribution import tag_scores, without  # noqa: E402
from knowledge_base.loaders import require_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="hwu64,se_cooking,debtags")
    ap.add_argument("--items", type=int, default=100, help="items per set")
    ap.add_argument("--draws", type=int, default=3, help="random removals per item")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    rows = {}
    for name in [s for s in args.sets.split(",") if s]:
        kb_dir = OUT / f"{name}-kb"
        if not (kb_dir / "classifier" / "ranker.json").is_file():
            raise SystemExit(f"{kb_dir} has no trained ranker: run bench/beyond_history.py --sets {name} first")
        items = [json.loads(line) for line in (DATA / name / SETS[name][0]).read_text(encoding="utf-8").splitlines()]
        random.Random(args.seed).shuffle(items)
        rng = random.Random(args.seed)
        kb = runtime_for(str(kb_dir)).kb
        config = kb.config.recall
        wins, span_falls, random_falls, shares, seconds, explained = 0, [], [], [], [], 0
        for item in items:
            if explained >= args.items:
                break
            text = require_text(item["text"])
            top = tagging.recall(text, kb_dir=str(kb_dir)).candidates
            if not top:
                continue
            tag = top[0].tag
            started = time.perf_counter()
            spans = tagging.supporting_spans(text, [tag], kb_dir=str(kb_dir))[tag]
            seconds.append(time.perf_counter() - started)
            if not spans:
                continue  # nothing to check (no removal weakened the tag): counted apart
            words = [m.span() for m in re.finditer(r"\S+", text)]
            inside = [w for w in words if any(s["start"] <= w[0] and w[1] <= s["end"] for s in spans)]
            outside = [w for w in words if w not in inside]
            if not outside:
                continue
            removed = [(s["start"], s["end"]) for s in spans]
            draws = [sorted(rng.sample(outside, min(len(inside), len(outside)))) for _ in range(args.draws)]
            texts = [without(text, removed), *(without(text, d) for d in draws)]
            texts = [t or "." for t in texts]
            base, *after = tag_scores(kb, [text, *texts], config)
            span_fall = base.get(tag, 0.0) - after[0].get(tag, 0.0)
            random_fall = statistics.mean(base.get(tag, 0.0) - a.get(tag, 0.0) for a in after[1:])
            wins += span_fall > random_fall
            span_falls.append(span_fall)
            random_falls.append(random_fall)
            shares.append(len(inside) / len(words))
            explained += 1
        rows[name] = {
            "items": explained,
            "spans_fall_more": round(wins / max(explained, 1), 3),
            "mean_fall_spans": round(statistics.mean(span_falls), 4) if span_falls else None,
            "mean_fall_random": round(statistics.mean(random_falls), 4) if random_falls else None,
            "words_highlighted": round(statistics.mean(shares), 3) if shares else None,
            "seconds_p50": round(statistics.median(seconds), 3) if seconds else None,
            "without_spans": len(seconds) - explained,
        }
        r = rows[name]
        print(
            f"{name}: {r['items']} items; removing the spans lowered the top tag's score more than removing as many other "
            f"words on {r['spans_fall_more']:.0%} (mean fall {r['mean_fall_spans']} vs {r['mean_fall_random']}); "
            f"{r['words_highlighted']:.0%} of the words highlighted; {r['seconds_p50']} s per explanation (p50); "
            f"{r['without_spans']} items had no span",
            flush=True,
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
