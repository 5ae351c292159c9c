"""How build time, recall latency and memory grow from 10k to a million contents, in one run.

Runs ``bench/synthetic_recall.py`` once per size (tags = contents = N), each in its own process,
each on its own knowledge base under ``bench/out/growth/`` (built once, then reused), and prints
one row per size (tags = contents = N up to ``--max-tags``, 100k: a million contents get 100k tags) from the figures it writes:

- fill: seconds to write the synthetic vectors into Chroma and the graph's edges (what a real
  build costs beside encoding; encoding itself is linear in texts, ``bench/build_speed.py``), and
  the fill's peak RSS;
- disk: the folder's size, and of it the graph store (``graph.sqlite``);
- open: ``KnowledgeBase()`` seconds and the RSS after it;
- recall per content, one thread: end-to-end p50 / p95 (encoding included), and of it the encode
  p50 and the p50 of recall given the vector.

The last column is each figure over the smallest size's, to read growth off a noisy machine.

    .venv/bin/python bench/growth.py                          # 10k, 100k, 1M: the table and picture in docs/scaling.md
    .venv/bin/python bench/growth.py --sizes 10000 50000 --queries 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def run_size(n: int, args) -> dict:
    out = OUT / "growth" / f"n{n}.json"
    cmd = [
        sys.executable,
        str(HERE / "synthetic_recall.py"),
        "--tags",
        str(min(n, args.max_tags)),
        "--contents",
        str(n),
        "--clusters",
        str(args.clusters),
        "--queries",
        str(args.queries),
        "--torch-threads",
        "1",
        "--kb-dir",
        str(OUT / "growth" / f"kb-{n}"),
        "--json",
        str(out),
    ]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="contents = N, one knowledge base each")
    ap.add_argument("--max-tags", type=int, default=100_000, help="tags = min(N, this): a million contents with 100k tags")
    ap.add_argument(
        "--clusters", type=int, default=3000, help="real debtags contents the synthetic ones are copies of (as the 100k figure)"
    )
    ap.add_argument("--queries", type=int, default=200, help="debtags validation texts recalled per size")
    ap.add_argument("--plot", type=Path, default=HERE.parent / "docs" / "growth.png", help="where the picture of the curves goes")
    args = ap.parse_args()
    rows = []
    for n in sorted(args.sizes):
        r = run_size(n, args)
        kb, lat = r["knowledge_base"], r["latency"]
        edges = kb["graph"]["deterministic_edges"] + kb["graph"].get("similarity_edges", 0)
        rows.append(
            {
                "n": n,
                "tags": kb["tags"],
                "edges": edges,
                "fill_s": kb["build_s"],
                "fill_rss": kb["build_peak_rss_mb"],
                "disk": kb["disk_mb"]["total"],
                "graph_mb": kb["disk_mb"]["graph_store"],
                "open_s": r["open_s"],
                "rss_open": r["rss_after_open_mb"],
                "p50": lat["end_to_end"]["p50_ms"],
                "p95": lat["end_to_end"]["p95_ms"],
                "encode": lat["encode"]["p50_ms"],
                "rest": lat["recall_without_encode"]["p50_ms"],
                "load": r["load_average"][0],
            }
        )
    cols = [
        ("n", "contents", "{:,}"),
        ("tags", "tags", "{:,}"),
        ("edges", "graph edges", "{:,}"),
        ("fill_s", "fill s", "{:.1f}"),
        ("fill_rss", "fill peak MiB", "{:,.0f}"),
        ("disk", "disk MiB", "{:,.0f}"),
        ("graph_mb", "graph store MiB", "{:,.0f}"),
        ("open_s", "open s", "{:.2f}"),
        ("rss_open", "RSS after open MiB", "{:,.0f}"),
        ("p50", "recall p50 ms", "{:.1f}"),
        ("p95", "p95 ms", "{:.1f}"),
        ("encode", "encode p50 ms", "{:.1f}"),
        ("rest", "given the vector p50 ms", "{:.1f}"),
        ("load", "load avg", "{:.2f}"),
    ]
    print(
        f"growth, {len(rows)} sizes, encoder runtime {os.environ.get('LLM4TAG_ENCODER_RUNTIME', 'default')}, {args.queries} queries each\n"
    )
    print("| " + " | ".join(c[1] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in cols) + " |")
    first, last = rows[0], rows[-1]
    print(
        f"\n{last['n'] / first['n']:.0f}× the size: "
        + ", ".join(f"{label} {last[key] / first[key]:.2f}×" for key, label, _ in cols[1:-1] if first[key])
    )
    (OUT / "growth" / "growth.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.plot)


def plot(rows: list[dict], path: Path) -> None:
    """Open time, memory after opening, recall p50 and the graph store's size against the number of
    contents (log axes), each relative to the smallest size: flat lines are what does not grow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    n = [r["n"] for r in rows]
    for key, label in (
        ("open_s", "open time"),
        ("rss_open", "RSS after open"),
        ("p50", "recall p50"),
        ("graph_mb", "graph store on disk"),
        ("edges", "graph edges"),
    ):
        ax.plot(n, [r[key] / rows[0][key] for r in rows], marker="o", label=f"{label} ({rows[-1][key] / rows[0][key]:.2f}×)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("contents in the knowledge base")
    ax.set_ylabel(f"relative to {n[0]:,} contents")
    ax.set_title("What grows with the history (bench/growth.py)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"picture: {path}")


if __name__ == "__main__":
    main()
