"""Graph-based vs match-based tag recall on debtags (the paper's Table 2 setting: 20 candidates).

Builds a knowledge base from ``tags.tsv`` + ``train.jsonl`` (the history) once, then recalls
candidates for validation items, which are never in the knowledge base, and reports:

- #Right: mean number of correct tags among the candidates;
- HR#k: share of items with at least k correct tags among the candidates (k = 1, 2, 3);
- no graph: share of items for which neither C2T nor C2C2T reached a tag (their candidates are
  all match-based fill);
- graph #Right / graph size: correct tags and candidates reached through C2T or C2C2T only;
- latency: wall time of one ``recall_candidates`` call, text encoding included, p50/p95.

Every figure is given for all sampled items and for the non-library subset (``lib_or_doc`` false,
~5 tags per item), the richer benchmark. ``--sweep`` adds a δ_ct × δ_cc grid.

The validation texts are encoded once, in batches; the metric runs pass the vectors to
``recall_candidates(vector=...)`` and memoise its Chroma reads (the nearest tags and contents of a
vector do not depend on the thresholds), so a sweep costs one set of queries. Thresholds only act
at query time for new content, so changing them does not need a rebuild. Latency is measured
separately, without any caching, encoding each text on its own as a user's call would.

    .venv/bin/python bench/recall.py                  # default thresholds, 1000 items
    .venv/bin/python bench/recall.py --sweep          # plus the threshold grid
    .venv/bin/python bench/recall.py --paper          # the paper's δ_ct 0.5 / δ_cc 0.8

Figures also go to ``bench/out/recall.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowledge_base import KnowledgeBase, RecallConfig, read_samples, read_tags, recall_candidates  # noqa: E402
from knowledge_base.recall import Candidate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT.parent / "shared" / "data" / "debtags") if (ROOT.parent / "shared").exists() else ROOT / "data" / "debtags"
OUT = ROOT / "bench" / "out"
MARKER = "bench.built"
GRAPH_PATHS = ("C2T", "C2C2T")
SWEEP_CT = (0.2, 0.25, 0.3, 0.35, 0.5)
SWEEP_CC = (0.45, 0.5, 0.55, 0.6, 0.7, 0.8)


# ---- small helpers shared with synthetic_recall.py ---------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def percentiles_ms(seconds: list[float]) -> dict:
    arr = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "mean_ms": round(float(arr.mean()), 2),
        "n": len(seconds),
    }


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def set_torch_threads(n: int | None) -> int:
    """Apply ``--torch-threads``; returns the number of threads encoding uses."""
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ---- the knowledge base --------------------------------------------------------------------------
def fingerprint(data: Path) -> str:
    h = hashlib.sha1()
    for name in ("tags.tsv", "train.jsonl"):
        h.update((data / name).read_bytes())
    return h.hexdigest()[:12]


def open_or_build_kb(kb_dir: Path, data: Path) -> tuple[KnowledgeBase, dict]:
    """Reuse a finished build (marker file with the data's fingerprint), else build from scratch."""
    marker = kb_dir / MARKER
    fp = fingerprint(data)
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("fingerprint") == fp:
            started = time.perf_counter()
            kb = KnowledgeBase(kb_dir)
            info["reused"] = True
            info["open_s"] = round(time.perf_counter() - started, 2)
            return kb, info
    if kb_dir.exists() and any(kb_dir.iterdir()):
        if not (kb_dir / "config.json").exists():
            raise SystemExit(f"{kb_dir} exists and is not an llm4tag knowledge base; choose another --kb-dir")
        log(f"removing the unfinished or outdated build in {kb_dir}")
        shutil.rmtree(kb_dir)
    log(f"building the debtags knowledge base in {kb_dir} (train split as history; several minutes on CPU) ...")
    started = time.perf_counter()
    kb = KnowledgeBase(kb_dir)

    def progress(what: str):
        step = {"last": -1}

        def report(done: int, total: int) -> None:
            tenth = done * 10 // total
            if tenth != step["last"]:
                step["last"] = tenth
                log(f"  {what}: {done}/{total} ({time.perf_counter() - started:.0f}s)")

        return report

    tags_report = kb.add_tags(read_tags(data / "tags.tsv").records, progress=progress("tags"))
    samples_report = kb.add_samples(read_samples(data / "train.jsonl").records, progress=progress("history"))
    info = {
        "fingerprint": fp,
        "build_s": round(time.perf_counter() - started, 1),
        "build_peak_rss_mb": round(peak_rss_mb(), 1),
        "tags": tags_report.summary(),
        "history": samples_report.summary(),
        "graph": kb.graph.counts(),
        "encoder": kb.config.encoder,
        "build_recall_config": asdict(kb.config.recall),
    }
    info["disk_mb"] = round(dir_size_mb(kb_dir), 1)
    marker.write_text(json.dumps(info, indent=2))
    info["reused"] = False
    return kb, info


class MemoisedReads:
    """The knowledge base as recall sees it, with its threshold-independent Chroma reads memoised.

    ``recall_candidates`` runs unchanged on it; only identical queries (same vector, same k) are
    answered from memory, so a threshold sweep queries Chroma once per item.
    """

    def __init__(self, kb: KnowledgeBase):
        self._kb = kb
        self._memo: dict = {}
        self._tags: dict = {}

    def __getattr__(self, name):
        return getattr(self._kb, name)

    def similar_contents(self, vector, k, exclude=(), refresh=True):
        key = ("contents", vector.tobytes(), k, frozenset(exclude))
        if key not in self._memo:
            self._memo[key] = self._kb.similar_contents(vector, k, exclude=exclude, refresh=refresh)
        return self._memo[key]

    def similar_tags(self, vector, k, refresh=True, details=True):
        key = ("tags", vector.tobytes(), k, details)
        if key not in self._memo:
            self._memo[key] = self._kb.similar_tags(vector, k, refresh=refresh, details=details)
        return self._memo[key]

    def get_tags(self, names):
        names = list(dict.fromkeys(names))
        missing = [n for n in names if n not in self._tags]
        if missing:
            got = self._kb.get_tags(missing)
            for n in missing:
                self._tags[n] = got.get(n)
        return {n: self._tags[n] for n in names if self._tags[n] is not None}


# ---- metrics -------------------------------------------------------------------------------------
def score(candidate_sets: list[list[Candidate]], golds: list[set[str]], graph: bool) -> dict:
    rights, graph_rights, graph_sizes, no_graph, sizes = [], [], [], [], []
    for cands, gold in zip(candidate_sets, golds):
        tags = {c.tag for c in cands}
        rights.append(len(tags & gold))
        sizes.append(len(cands))
        via_graph = {c.tag for c in cands if any(p in GRAPH_PATHS for p in c.paths)}
        graph_rights.append(len(via_graph & gold))
        graph_sizes.append(len(via_graph))
        no_graph.append(not via_graph)
    n = len(rights)
    out = {
        "items": n,
        "right": round(sum(rights) / n, 3),
        "hr1": round(sum(r >= 1 for r in rights) / n, 4),
        "hr2": round(sum(r >= 2 for r in rights) / n, 4),
        "hr3": round(sum(r >= 3 for r in rights) / n, 4),
        "candidates": round(sum(sizes) / n, 2),
        "gold_per_item": round(sum(len(g) for g in golds) / n, 3),
    }
    if graph:
        out.update(
            {
                "no_graph": round(sum(no_graph) / n, 4),
                "graph_right": round(sum(graph_rights) / n, 3),
                "graph_size": round(sum(graph_sizes) / n, 2),
            }
        )
    return out


def run_metrics(reads: MemoisedReads, items: list[dict], vectors: np.ndarray, cfg: RecallConfig, subsets: dict[str, list[int]]) -> dict:
    results = [recall_candidates(reads, it["text"], cfg, vector=v).candidates for it, v in zip(items, vectors)]
    golds = [set(it["tags"]) for it in items]
    return {name: score([results[i] for i in idx], [golds[i] for i in idx], graph=cfg.strategy == "graph") for name, idx in subsets.items()}


def measure_latency(kb: KnowledgeBase, texts: list[str], cfg: RecallConfig) -> dict:
    """End-to-end recall per text (encoding included, nothing cached), then encode vs the rest."""
    for text in texts[:3]:  # warm-up: first calls pay for lazy initialisation
        recall_candidates(kb, text, cfg)
    total, encode, rest = [], [], []
    for text in texts:
        t0 = time.perf_counter()
        recall_candidates(kb, text, cfg)
        total.append(time.perf_counter() - t0)
    for text in texts:
        t0 = time.perf_counter()
        vector, _ = kb.encoder.encode_one(text)
        t1 = time.perf_counter()
        recall_candidates(kb, text, cfg, vector=vector)
        t2 = time.perf_counter()
        encode.append(t1 - t0)
        rest.append(t2 - t1)
    return {"end_to_end": percentiles_ms(total), "encode": percentiles_ms(encode), "recall_without_encode": percentiles_ms(rest)}


# ---- printing ------------------------------------------------------------------------------------
def fmt(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_table(title: str, rows: list[tuple[str, dict]]) -> None:
    print(f"\n{title}")
    header = f"{'recall':<26} {'items':>5} {'#Right':>7} {'HR#1':>7} {'HR#2':>7} {'HR#3':>7} {'no graph':>9} {'graph #Right':>13} {'graph size':>11}"
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:<26} {r['items']:>5} {fmt(r['right'], 2):>7} {fmt(r['hr1'], 4):>7} {fmt(r['hr2'], 4):>7} {fmt(r['hr3'], 4):>7} "
            f"{fmt(r.get('no_graph'), 4):>9} {fmt(r.get('graph_right'), 2):>13} {fmt(r.get('graph_size'), 1):>11}"
        )


def print_sweep(sweep: list[dict], subset_names: list[str]) -> None:
    print("\nThreshold sweep (graph recall, 20 candidates; no graph = share of items with no C2T/C2C2T candidate)")
    head = f"{'δ_ct':>5} {'δ_cc':>5}"
    for name in subset_names:
        head += f" | {name + ' #Right':>15} {'HR#3':>6} {'no graph':>8} {'graph #R':>8} {'graph sz':>8}"
    print(head)
    print("-" * len(head))
    for row in sweep:
        line = f"{row['delta_ct']:>5.2f} {row['delta_cc']:>5.2f}"
        for name in subset_names:
            r = row[name]
            line += f" | {r['right']:>15.2f} {r['hr3']:>6.4f} {r['no_graph']:>8.4f} {r['graph_right']:>8.2f} {r['graph_size']:>8.1f}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="debtags folder (tags.tsv, train.jsonl, validation.jsonl)")
    ap.add_argument("--kb-dir", type=Path, default=OUT / "debtags-kb", help="knowledge base directory; built once, then reused")
    ap.add_argument("--limit", type=int, default=1000, help="validation items to score (a seeded random sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-items", type=int, default=200, help="items timed end to end (each text encoded on its own)")
    ap.add_argument("--paper", action="store_true", help="start from the paper's values (δ_ct 0.5, δ_cc 0.8) instead of the defaults")
    ap.add_argument("--delta-ct", type=float)
    ap.add_argument("--delta-cc", type=float)
    ap.add_argument("--max-c2t", type=int)
    ap.add_argument("--max-c2c2t", type=int)
    ap.add_argument("--budget", type=int, default=20, help="candidate set size (paper Table 2: 20)")
    ap.add_argument("--sweep", action="store_true", help=f"also sweep δ_ct in {SWEEP_CT} × δ_cc in {SWEEP_CC}")
    ap.add_argument("--sweep-ct", type=float, nargs="+", default=list(SWEEP_CT), help="δ_ct values of the sweep")
    ap.add_argument("--sweep-cc", type=float, nargs="+", default=list(SWEEP_CC), help="δ_cc values of the sweep")
    ap.add_argument("--latency-only", action="store_true", help="only measure latency (e.g. again, on a quieter machine)")
    ap.add_argument("--torch-threads", type=int, help="torch intra-op threads for encoding (default: torch's, one per core)")
    ap.add_argument("--json", type=Path, default=OUT / "recall.json")
    args = ap.parse_args(argv)

    run_started = time.perf_counter()
    threads = set_torch_threads(args.torch_threads)
    kb, build = open_or_build_kb(args.kb_dir.resolve(), args.data)
    base = RecallConfig.paper() if args.paper else RecallConfig()
    graph_cfg = base.with_overrides(
        strategy="graph", delta_ct=args.delta_ct, delta_cc=args.delta_cc, max_c2t=args.max_c2t, max_c2c2t=args.max_c2c2t, budget=args.budget
    )
    match_cfg = graph_cfg.with_overrides(strategy="match")

    validation = load_jsonl(args.data / "validation.jsonl")
    items = random.Random(args.seed).sample(validation, min(args.limit, len(validation)))
    subsets = {"all": list(range(len(items))), "non-lib": [i for i, it in enumerate(items) if not it.get("lib_or_doc")]}

    graph_res: dict = {}
    match_res: dict = {}
    sweep: list[dict] = []
    encode_s = metrics_s = sweep_s = 0.0
    if not args.latency_only:
        t0 = time.perf_counter()
        vectors = kb.encoder.encode([it["text"] for it in items]).vectors
        encode_s = time.perf_counter() - t0
        log(f"encoded {len(items)} validation texts in {encode_s:.1f}s")
        reads = MemoisedReads(kb)
        t0 = time.perf_counter()
        graph_res = run_metrics(reads, items, vectors, graph_cfg, subsets)
        match_res = run_metrics(reads, items, vectors, match_cfg, subsets)
        metrics_s = time.perf_counter() - t0
    if args.sweep and not args.latency_only:
        t0 = time.perf_counter()
        for dct in args.sweep_ct:
            for dcc in args.sweep_cc:
                cfg = graph_cfg.with_overrides(delta_ct=dct, delta_cc=dcc)
                sweep.append({"delta_ct": dct, "delta_cc": dcc, **run_metrics(reads, items, vectors, cfg, subsets)})
        sweep_s = time.perf_counter() - t0
        log(f"sweep of {len(sweep)} threshold pairs in {sweep_s:.1f}s")

    lat_texts = [it["text"] for it in items[: args.latency_items]]
    t0 = time.perf_counter()
    latency = {"graph": measure_latency(kb, lat_texts, graph_cfg), "match": measure_latency(kb, lat_texts, match_cfg)} if lat_texts else {}
    latency_s = time.perf_counter() - t0

    stats = kb.stats()
    print(f"knowledge base: {stats['directory']}  ({'reused' if build['reused'] else 'built now'})")
    print(
        f"  {stats['tags']} tags ({stats['tags_with_description']} described), {stats['contents']} history contents, graph {stats['graph']}"
    )
    if "build_s" in build:
        print(
            f"  build: {build['build_s']}s, peak RSS {build['build_peak_rss_mb']} MiB, disk {build.get('disk_mb')} MiB"
            f"{' (recorded when it was built)' if build['reused'] else ''}"
        )
        print(f"    tags: {build['tags']}\n    history: {build['history']}")
    if build["reused"]:
        print(f"  opened in {build['open_s']}s")
    print(f"validation: {len(items)} items sampled with seed {args.seed} from {len(validation)}; non-lib subset {len(subsets['non-lib'])}")
    print(
        f"graph config: δ_ct {graph_cfg.delta_ct}, δ_cc {graph_cfg.delta_cc}, max C2T {graph_cfg.max_c2t}, max C2C2T {graph_cfg.max_c2c2t}, "
        f"similar contents {graph_cfg.similar_contents}, budget {graph_cfg.budget}"
    )
    for name in subsets if graph_res else ():
        r_g, r_m = graph_res[name], match_res[name]
        print_table(
            f"[{name}] {r_g['items']} items, {r_g['gold_per_item']:.2f} correct tags per item, {graph_cfg.budget} candidates",
            [("graph (C2T ∪ C2C2T + fill)", r_g), ("match (top-k cosine)", r_m)],
        )
    if sweep:
        print_sweep(sweep, list(subsets))
    if latency:
        print(f"\nRecall latency per content, {len(lat_texts)} items, each text encoded on its own, {threads} torch thread(s) (ms)")
        print(f"{'':<8} {'end-to-end p50':>15} {'p95':>8} {'encode p50':>11} {'p95':>8} {'rest p50':>9} {'p95':>8}")
        for name, lat in latency.items():
            e2e, enc, rest = lat["end_to_end"], lat["encode"], lat["recall_without_encode"]
            print(
                f"{name:<8} {e2e['p50_ms']:>15.1f} {e2e['p95_ms']:>8.1f} {enc['p50_ms']:>11.1f} {enc['p95_ms']:>8.1f} {rest['p50_ms']:>9.1f} {rest['p95_ms']:>8.1f}"
            )
    load = os.getloadavg()
    print(f"load average during the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    wall = time.perf_counter() - run_started
    print(
        f"\nwall time {wall:.1f}s (batch encode {encode_s:.1f}s, metrics {metrics_s:.1f}s, sweep {sweep_s:.1f}s, latency {latency_s:.1f}s); "
        f"peak RSS {peak_rss_mb():.0f} MiB"
    )

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": str(args.data),
        "knowledge_base": {**build, "stats": stats},
        "validation": {"sampled": len(items), "of": len(validation), "seed": args.seed, "non_lib": len(subsets["non-lib"])},
        "graph_config": asdict(graph_cfg),
        "results": {name: {"graph": graph_res[name], "match": match_res[name]} for name in subsets if graph_res},
        "sweep": sweep,
        "latency": latency,
        "torch_threads": threads,
        "timings_s": {
            "wall": round(wall, 1),
            "batch_encode": round(encode_s, 1),
            "metrics": round(metrics_s, 1),
            "sweep": round(sweep_s, 1),
            "latency": round(latency_s, 1),
        },
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "load_average": [round(x, 2) for x in load],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
