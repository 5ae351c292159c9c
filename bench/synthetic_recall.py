"""Recall latency at scale: 100,000 synthetic tags and 100,000 synthetic history contents.

Embedding 200k real texts with MiniLM on a small CPU takes hours, so the knowledge base is filled
directly: clustered random unit vectors of the encoder's dimension go into the Chroma
collections, and graph nodes and edges into the content–tag graph, with the same ids, documents,
metadata and edge kinds a real build writes. The vectors are noisy copies of real MiniLM
embeddings (the debtags tags and history contents of ``bench/recall.py``'s knowledge base when it
exists, else freshly encoded ones), so real query texts land among them at realistic
similarities and both graph paths do their full work:

- tag i is a noisy copy of one of the real tags;
- content i is a noisy copy of one of ``--clusters`` real history contents (its cluster centre),
  annotated with 1–6 tags drawn from copies of the centre's nearest real tags;
- no similarity edges: a build stores none (they are queries of the vector index,
  ``knowledge_base.neighbourhood``).

Queries are real debtags validation texts, encoded one by one, so encoding time is included;
the report splits it from the rest. Building runs in a child process, so the timings and memory
of the query phase start from a fresh open, as a restarted service would see them.

    .venv/bin/python bench/synthetic_recall.py            # build once (reused), then measure
    .venv/bin/python bench/synthetic_recall.py --profile  # plus where the time of a recall goes
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall import DATA, OUT, dir_size_mb, load_jsonl, log, measure_latency, peak_rss_mb, set_torch_threads  # noqa: E402

import knowledge_base.store as store_module  # noqa: E402
from knowledge_base import KnowledgeBase, read_tags, recall_candidates  # noqa: E402
from knowledge_base.graph import ContentTagGraph, content_node, tag_node  # noqa: E402

MARKER = "bench.built"
OPS_PER_WRITE = 200_000
WORDS = [f"w{i:04d}" for i in range(3000)]


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def noisy_copies(centres: np.ndarray, which: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around the given centres: cos(copy, centre) ≈ 1/sqrt(1 + noise²)."""
    dim = centres.shape[1]
    out = np.empty((len(which), dim), dtype=np.float32)
    for start in range(0, len(which), 20_000):
        idx = which[start : start + 20_000]
        eps = rng.standard_normal((len(idx), dim), dtype=np.float32) * (noise / np.sqrt(dim))
        out[start : start + len(idx)] = unit(centres[idx] + eps)
    return out


def real_embeddings(
    debtags_kb: Path, data: Path, clusters: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[list[int]], str]:
    """Real MiniLM vectors to centre the synthetic ones on.

    Returns the tag vectors, the content centres and where they came from."""
    if (debtags_kb / MARKER).exists():
        kb = KnowledgeBase(debtags_kb)
        tags = np.asarray(kb.collection("tags").get(include=["embeddings"])["embeddings"], dtype=np.float32)
        ids = kb.collection("contents").get(include=[])["ids"]
        pick = sorted(rng.choice(len(ids), size=min(clusters, len(ids)), replace=False).tolist())
        got = kb.collection("contents").get(ids=[ids[i] for i in pick], include=["embeddings"])
        return unit(tags), unit(np.asarray(got["embeddings"], dtype=np.float32)), f"the debtags knowledge base {debtags_kb}"
    from knowledge_base.encoder import Encoder

    encoder = Encoder.shared()
    tag_texts = [t.embedding_text() for t in read_tags(data / "tags.tsv").records]
    train = load_jsonl(data / "train.jsonl")
    texts = [train[i]["text"] for i in rng.choice(len(train), size=min(clusters, len(train)), replace=False)]
    source = f"{len(tag_texts) + len(texts)} texts encoded from {data}"
    return encoder.encode(tag_texts).vectors, encoder.encode(texts).vectors, source


def add_in_batches(col, batch: int, ids, embeddings, documents, metadatas) -> None:
    for start in range(0, len(ids), batch):
        end = start + batch
        col.add(ids=ids[start:end], embeddings=embeddings[start:end], documents=documents[start:end], metadatas=metadatas[start:end])


def build(args) -> None:
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    kb_dir = args.kb_dir
    if kb_dir.exists():
        if any(kb_dir.iterdir()) and not (kb_dir / "config.json").exists():
            raise SystemExit(f"{kb_dir} exists and is not an llm4tag knowledge base; choose another --kb-dir")
        shutil.rmtree(kb_dir)
    real_tags, centres, source = real_embeddings(args.debtags_kb.resolve(), args.data, args.clusters, rng)
    log(f"centres: {len(real_tags)} real tag vectors and {len(centres)} real content vectors from {source}")
    kb = KnowledgeBase(kb_dir)
    batch = kb._client.get_max_batch_size()
    timings = {}

    # tags: noisy copies of the real tags
    t0 = time.perf_counter()
    tag_parent = rng.integers(0, len(real_tags), size=args.tags)
    tag_vecs = noisy_copies(real_tags, tag_parent, args.noise, rng)
    tag_names = [f"syn{int(p):03d}::tag{i:06d}" for i, p in enumerate(tag_parent)]
    tag_docs = [f"syn{int(p):03d}: tag{i:06d}. " + " ".join(random.Random(i).choices(WORDS, k=8)) for i, p in enumerate(tag_parent)]
    tag_metas = [{"description": doc.split(". ", 1)[1], "synonyms": "[]", "parent": ""} for doc in tag_docs]
    add_in_batches(kb.collection("tags"), batch, tag_names, tag_vecs, tag_docs, tag_metas)
    timings["chroma_tags_s"] = round(time.perf_counter() - t0, 1)
    log(f"  {args.tags} tags in Chroma ({timings['chroma_tags_s']}s)")

    # contents: noisy copies of the cluster centres, annotated with copies of the centre's nearest real tags
    t0 = time.perf_counter()
    cluster = rng.integers(0, len(centres), size=args.contents)
    content_vecs = noisy_copies(centres, cluster, args.noise, rng)
    near_real = np.argsort(-(centres @ real_tags.T), axis=1)[:, :8]  # per centre, its 8 nearest real tags
    copies_of: dict[int, np.ndarray] = {}
    order = np.argsort(tag_parent, kind="stable")
    bounds = np.searchsorted(tag_parent[order], np.arange(len(real_tags) + 1))
    for p in range(len(real_tags)):
        copies_of[p] = order[bounds[p] : bounds[p + 1]]
    content_ids = [f"syn-content-{i:06d}" for i in range(args.contents)]
    content_tags: list[list[int]] = []
    for i in range(args.contents):
        chosen: list[int] = []
        for p in rng.choice(near_real[cluster[i]], size=int(rng.integers(1, 7)), replace=False):
            if len(copies_of[int(p)]):
                chosen.append(int(rng.choice(copies_of[int(p)])))
        content_tags.append(chosen)
    docs = [" ".join(random.Random(-1 - i).choices(WORDS, k=60)) for i in range(args.contents)]
    metas = [{"tags": json.dumps([tag_names[t] for t in ts]), "incorrect_tags": "[]", "origin": "history"} for ts in content_tags]
    add_in_batches(kb.collection("contents"), batch, content_ids, content_vecs, docs, metas)
    if args.with_samples:
        add_in_batches(kb.collection("samples"), batch, content_ids, content_vecs, docs, metas)
    timings["chroma_contents_s"] = round(time.perf_counter() - t0, 1)
    log(f"  {args.contents} contents in Chroma{' (and samples)' if args.with_samples else ''} ({timings['chroma_contents_s']}s)")

    # the graph: nodes and deterministic edges, written into its store in batches
    t0 = time.perf_counter()
    ops: list[dict] = [{"op": "node", "id": tag_node(n), "kind": "tag"} for n in tag_names]
    ops += [{"op": "node", "id": content_node(c), "kind": "content"} for c in content_ids]
    for cid, ts in zip(content_ids, content_tags):
        ops += [{"op": "edge", "u": content_node(cid), "v": tag_node(tag_names[t]), "kind": "det", "w": 1.0} for t in ts]
    det_edges = sum(len(ts) for ts in content_tags)
    written = 0

    def flush(force: bool = False) -> None:
        nonlocal ops, written
        if ops and (force or len(ops) >= OPS_PER_WRITE):
            written += kb.graph.write(ops)
            ops = []

    flush(force=True)
    timings["graph_write_s"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    kb.graph.compact()
    timings["graph_checkpoint_s"] = round(time.perf_counter() - t1, 1)
    log(f"  graph: {written} operations written ({timings['graph_write_s']}s), checkpoint {timings['graph_checkpoint_s']}s")

    info = {
        "tags": args.tags,
        "contents": args.contents,
        "clusters": args.clusters,
        "centres": len(centres),
        "noise": args.noise,
        "centres_from": source,
        "with_samples": args.with_samples,
        "det_edges": det_edges,
        "graph": kb.graph.counts(),
        "build_s": round(time.perf_counter() - started, 1),
        "build_peak_rss_mb": round(peak_rss_mb(), 1),
        "timings_s": timings,
        "seed": args.seed,
    }
    info["disk_mb"] = {
        "total": round(dir_size_mb(kb_dir), 1),
        "chroma": round(dir_size_mb(kb_dir / "chroma"), 1),
        "graph_store": round(sum(p.stat().st_size for p in kb_dir.glob("graph.sqlite*")) / 2**20, 1),
    }
    (kb_dir / MARKER).write_text(json.dumps(info, indent=2))


PROBE = """
import sys, time
from knowledge_base import KnowledgeBase
t0 = time.perf_counter()
kb = KnowledgeBase(sys.argv[1])
print("ready", round(time.perf_counter() - t0, 3), flush=True)
cid, tag = sys.argv[2], sys.argv[3]
while True:
    kb.refresh()
    if tag in kb.graph.tags_of(cid):
        print(time.time(), flush=True)
        break
    time.sleep(0.002)
"""


def correction_visibility(kb: KnowledgeBase, kb_dir: Path) -> dict:
    """How soon another process (open before the write) sees a correction: a person's verdict
    (``record_feedback``: Chroma and the graph) written here, polled there every 2 ms."""
    tag = min(kb.tag_names())
    cid = "bench-correction"
    kb.record_feedback("a corrected text about nothing in particular", [], [tag], cid=cid, replace=True)  # a start without the tag
    probe = subprocess.Popen(
        [sys.executable, "-c", PROBE, str(kb_dir), cid, tag],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    ready = probe.stdout.readline().split()
    started = time.time()
    kb.record_feedback("a corrected text about nothing in particular", [tag], [], cid=cid, replace=True)
    returned = time.time()
    seen = float(probe.stdout.readline())
    probe.wait(timeout=60)
    return {
        "write_s": round(returned - started, 4),
        "seen_after_write_returned_s": round(seen - returned, 4),
        "probe_open_s": float(ready[1]),
    }


def build_key(args) -> dict:
    return {
        "tags": args.tags,
        "contents": args.contents,
        "clusters": args.clusters,
        "noise": args.noise,
        "with_samples": args.with_samples,
        "seed": args.seed,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb-dir", type=Path, default=OUT / "synthetic-kb")
    ap.add_argument("--data", type=Path, default=DATA, help="debtags folder: query texts (validation) and, if needed, centres")
    ap.add_argument("--debtags-kb", type=Path, default=OUT / "debtags-kb", help="take the real centre vectors from here when built")
    ap.add_argument("--tags", type=int, default=100_000)
    ap.add_argument("--contents", type=int, default=100_000)
    ap.add_argument(
        "--clusters", type=int, default=25_000, help="real content vectors the synthetic contents are copies of (at most all of them)"
    )
    ap.add_argument("--noise", type=float, default=0.5, help="noise norm around a centre (cos to the centre ≈ 1/sqrt(1+noise²))")
    ap.add_argument(
        "--with-samples", action="store_true", help="also fill the samples collection (as a real build does; recall never reads it)"
    )
    ap.add_argument("--queries", type=int, default=200, help="real validation texts to recall for")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the end-to-end recall calls and print the top functions")
    ap.add_argument("--torch-threads", type=int, help="torch intra-op threads for encoding (default: torch's, one per core)")
    ap.add_argument("--json", type=Path, default=OUT / "synthetic_recall.json")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.kb_dir = args.kb_dir.resolve()

    if args.build_only:
        build(args)
        return
    marker = args.kb_dir / MARKER
    info = json.loads(marker.read_text()) if marker.exists() else None
    if args.rebuild or info is None or {k: info.get(k) for k in build_key(args)} != build_key(args):
        log(f"building the synthetic knowledge base in {args.kb_dir} (child process) ...")
        cmd = [sys.executable, __file__, "--build-only", *(argv if argv is not None else sys.argv[1:])]
        subprocess.run(cmd, check=True)
        info = json.loads(marker.read_text())
        built_now = True
    else:
        built_now = False

    threads = set_torch_threads(args.torch_threads)
    # a fresh open, as a restarted service would do it; the graph's share is timed inside it
    timed: dict[str, float] = {}

    class TimedGraph(ContentTagGraph):
        def __init__(self, directory, load: bool = True):
            t0 = time.perf_counter()
            super().__init__(directory, load=load)
            timed["graph_load_s"] = time.perf_counter() - t0

    gc.collect()
    store_module.ContentTagGraph = TimedGraph
    t0 = time.perf_counter()
    kb = KnowledgeBase(args.kb_dir)
    open_s = time.perf_counter() - t0
    store_module.ContentTagGraph = ContentTagGraph
    graph_load_s = timed["graph_load_s"]
    gc.collect()
    rss_after_open = current_rss_mb()
    t0 = time.perf_counter()
    kb.encoder.encode_one("warm up")
    encoder_load_s = time.perf_counter() - t0

    validation = load_jsonl(args.data / "validation.jsonl")
    texts = [it["text"] for it in random.Random(args.seed).sample(validation, args.queries)]
    cfg = kb.config.recall
    t0 = time.perf_counter()
    latency = measure_latency(kb, texts, cfg)
    latency_s = time.perf_counter() - t0

    # what the queries found, to show that both graph paths did their work
    sample = [recall_candidates(kb, t, cfg) for t in texts[:50]]
    paths = {p: round(sum(sum(p in c.paths for c in r.candidates) for r in sample) / len(sample), 2) for p in ("C2T", "C2C2T", "match")}
    close = round(sum(sum(h.similarity > cfg.delta_cc for h in r.similar_contents) for r in sample) / len(sample), 2)

    correction = correction_visibility(kb, args.kb_dir)

    profile_text = ""
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for text in texts:
            recall_candidates(kb, text, cfg)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        profile_text = buf.getvalue()

    g = info["graph"]
    print(f"synthetic knowledge base: {args.kb_dir} ({'built now' if built_now else 'reused'})")
    print(
        f"  {info['tags']} tags, {info['contents']} history contents around {info['centres']} real ones (noise {info['noise']}); "
        f"centres from {info['centres_from']}"
    )
    print(
        f"  graph: {g['tag_nodes']} tag nodes, {g['content_nodes']} content nodes, {g['deterministic_edges']} deterministic edges "
        "(similarity edges are queries)"
    )
    print(f"  build: {info['build_s']}s {info['timings_s']}, peak RSS {info['build_peak_rss_mb']:.0f} MiB")
    print(
        f"  disk: {info['disk_mb']['total']} MiB (chroma {info['disk_mb']['chroma']} MiB, graph store {info['disk_mb']['graph_store']} MiB)"
    )
    print(
        f"open: KnowledgeBase() {open_s:.2f}s, of which graph load {graph_load_s:.2f}s; "
        f"encoder load {encoder_load_s:.2f}s; RSS after open {rss_after_open:.0f} MiB"
    )
    print(
        f"queries: {len(texts)} debtags validation texts; per recall (first {len(sample)}): "
        f"{paths['C2T']} C2T, {paths['C2C2T']} C2C2T, {paths['match']} match candidates, {close} history contents above δ_cc"
    )
    print(f"config: δ_ct {cfg.delta_ct}, δ_cc {cfg.delta_cc}, max C2T {cfg.max_c2t}, max C2C2T {cfg.max_c2c2t}, budget {cfg.budget}")
    print(f"\nrecall latency per content, {threads} torch thread(s) (ms) {'p50':>7} {'p95':>7} {'mean':>7}")
    for name, key in (
        ("end to end (encode + recall)", "end_to_end"),
        ("  encode only", "encode"),
        ("  recall given the vector", "recall_without_encode"),
    ):
        r = latency[key]
        print(f"{name:<43} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['mean_ms']:>7.1f}")
    print(
        f"a correction seen by another process: {correction['seen_after_write_returned_s']:.3f}s after the write returned "
        f"({correction['write_s']:.3f}s to write it; that process opened the knowledge base in {correction['probe_open_s']:.2f}s)"
    )
    verdict = "meets" if latency["end_to_end"]["p50_ms"] < 50 else "misses"
    print(f"target p50 < 50 ms: {verdict}")
    load = os.getloadavg()
    print(
        f"latency phase {latency_s:.1f}s; peak RSS of this process {peak_rss_mb():.0f} MiB; "
        f"load average (1/5/15 min) {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
    )
    if profile_text:
        print("\ncProfile of the end-to-end recalls (cumulative):")
        print(profile_text)

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "knowledge_base": info,
        "built_now": built_now,
        "open_s": round(open_s, 3),
        "graph_load_s": round(graph_load_s, 3),
        "encoder_load_s": round(encoder_load_s, 3),
        "rss_after_open_mb": round(rss_after_open, 1),
        "recall_config": cfg.__dict__,
        "candidates_per_recall": paths,
        "history_contents_above_delta_cc": close,
        "latency": latency,
        "correction_visibility": correction,
        "torch_threads": threads,
        "load_average": [round(x, 2) for x in load],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
