"""Annif baselines: its omikuji and tfidf backends on the same data and items as ``llm4tag eval``.

Trains Annif (https://annif.org, the standard library-subject-indexing toolkit) on a dataset's
train split — the samples ``llm4tag kb load-samples`` puts in a knowledge base's history, with the
tags that are not in ``tags.tsv`` dropped as its default ``--unknown-tags skip`` does — and scores
the items of ``llm4tag eval SPLIT.jsonl --items N --seed S`` (the same ``load_labelled`` call, so
the same items) with the project's own metric code (``agent.evaluation.summarise``: Acc@1/2/3 and
the rest for multi-tag sets, accuracy and F1 for single-tag ones, candidate recall #Right/HR#k),
at full coverage (no threshold). Backends:

- ``omikuji``: Annif's omikuji defaults, a Parabel-like tree (balanced 2-means, depth 20);
- ``omikuji-bonsai``: the Bonsai settings from Annif's docs (``cluster_balanced=False,
  cluster_k=100, max_depth=3``);
- ``tfidf``: cosine between the item and each tag's concatenated training texts.

All use the ``snowball(english)`` analyzer unless ``--analyzer`` says otherwise (e.g. ``simple``).

Annif runs in its own virtual environment, never the project's (default
``~/.cache/llm4tag/annif-venv``, ``--annif-venv`` to change). When it is missing the script creates
it and installs ``bench/annif-requirements.txt`` from PyPI (``--no-install`` stops instead); by
hand: ``python3.11 -m venv ~/.cache/llm4tag/annif-venv &&
~/.cache/llm4tag/annif-venv/bin/pip install -r bench/annif-requirements.txt``. Annif's analyzers
need NLTK's ``punkt_tab`` tokenizer data, which NLTK downloads from the web; instead it is taken
once from the PyPI wheel of ``llama-index-core``, which ships a copy, into
``~/.cache/llm4tag/nltk_data`` (``--nltk-data``), and passed to Annif as ``NLTK_DATA``.

Run from the repository root with the project's environment:

    .venv/bin/python bench/annif_baseline.py --data ../shared/data/banking77 --split test
    .venv/bin/python bench/annif_baseline.py --data ../shared/data/debtags --split validation \\
        --backends omikuji,tfidf --limit-train 2000          # a quick run

Output folder (``--out``, default ``bench/out/annif-<dataset>-<split>``):

- ``items-annif-<backend>.jsonl``: per item ``{"id", "tags": [{"tag", "confidence"}, ...]}``
  ranked best first (the top ``--max-tags``, one in single-tag mode: what the system returns),
  plus the fields of ``llm4tag eval``'s own per-item files (``truth``, ``predicted`` and
  ``ranked``: those tags, ``confidences``, ``candidates``: the top ``--candidates`` tags — omikuji's
  beam often returns only about 10 —, ``judged``, ``timings``) and ``seconds``;
- ``metrics.json`` and ``report.md``: written by ``llm4tag eval``'s own report code;
- ``summary.json``: the run's settings, Annif's version, training and per-item times, every
  figure, and the best backend; ``annif/``: Annif's projects.cfg, corpora, models and log.

Per-item seconds are the time of one ``project.suggest`` call on one item (model loaded), as
``llm4tag eval`` tags one item at a time; training seconds are the ``annif train`` command's.
omikuji's training is not repeatable (random cluster starts, no seed to set): ``--repeats N``
retrains and scores each backend N times and reports the headline's mean and range.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path(__file__).resolve().with_name("annif-requirements.txt")
CACHE = Path("~/.cache/llm4tag").expanduser()
PUNKT_WHEEL = "llama-index-core==0.14.25"
PUNKT_ZIP = "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab.zip"
VOCAB_ID = "llm4tag"
URI_PREFIX = "http://llm4tag.invalid/tag/"
WORKER = "_suggest"  # hidden sub-command: this file run by the Annif venv's Python

# backend name -> (Annif backend, its settings in projects.cfg)
BACKENDS: dict[str, tuple[str, dict[str, str]]] = {
    "omikuji": ("omikuji", {}),
    "omikuji-bonsai": ("omikuji", {"cluster_balanced": "False", "cluster_k": "100", "max_depth": "3"}),
    "tfidf": ("tfidf", {}),
}


class BenchError(Exception):
    """A problem the user can fix (missing data, venv, install failure); printed without a traceback."""


# ---- the Annif side: run by the Annif venv's Python, standard library and Annif only ----------
def suggest_worker(project_id: str, items_path: str, out_path: str) -> None:
    """Load one trained project, suggest for each item alone (timed), write the hits as JSON."""
    import importlib.metadata

    import annif
    import annif.registry
    from annif.corpus import Document

    started = time.perf_counter()
    app = annif.create_flask_app("annif.default_config.Config")
    with app.app_context():
        project = annif.registry.get_project(project_id)
        project.initialize()
        load_s = time.perf_counter() - started
        rows = []
        with open(items_path, encoding="utf-8") as fh:
            for line in fh:
                item = json.loads(line)
                t0 = time.perf_counter()
                result = project.suggest([Document(text=item["text"])])[0]
                hits = [(project.subjects[h.subject_id].uri, h.score) for h in result]
                rows.append({"id": item["id"], "hits": hits, "seconds": time.perf_counter() - t0})
    Path(out_path).write_text(json.dumps({"annif_version": importlib.metadata.version("annif"), "load_s": load_s, "items": rows}))


# ---- setting up Annif's environment ------------------------------------------------------------
def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _annif_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import annif, omikuji, importlib.metadata as m; print(m.version('annif'))"],
        check=False,
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_annif(venv: Path, install: bool) -> tuple[Path, str]:
    """The Annif venv's Python and Annif's version; creates the venv and installs Annif if allowed."""
    python = _venv_python(venv)
    version = _annif_version(python)
    if version:
        return python, version
    manual = f"python3.11 -m venv {venv} && {venv}/bin/pip install -r {REQUIREMENTS}"
    if not install:
        raise BenchError(
            f"no working Annif in {venv} (its Python must import annif and omikuji). Create it with:\n  {manual}\n"
            "or run without --no-install to let this script do it."
        )
    log = venv.parent / f"{venv.name}-install.log"
    print(f"installing Annif into {venv} (log: {log}); this takes a few minutes once", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        steps = [] if python.exists() else [[sys.executable, "-m", "venv", str(venv)]]
        steps.append([str(python), "-m", "pip", "install", "-r", str(REQUIREMENTS)])
        for cmd in steps:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            if subprocess.run(cmd, check=False, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                raise BenchError(f"installing Annif failed ({' '.join(cmd)}); see {log}:\n{_tail(log)}\nBy hand:\n  {manual}")
    version = _annif_version(python)
    if not version:
        raise BenchError(f"Annif was installed into {venv} but does not import; see {log}. Remove {venv} and retry, or:\n  {manual}")
    return python, version


def ensure_punkt(nltk_dir: Path, python: Path) -> Path:
    """NLTK data folder holding ``tokenizers/punkt_tab``, taken once from llama-index-core's wheel."""
    if (nltk_dir / "tokenizers" / "punkt_tab" / "english").is_dir():
        return nltk_dir
    print(f"fetching NLTK punkt_tab from the {PUNKT_WHEEL} wheel into {nltk_dir}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(python), "-m", "pip", "download", "--quiet", "--no-deps", PUNKT_WHEEL, "-d", tmp]
        got = subprocess.run(cmd, check=False, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if got.returncode != 0 or not wheels:
            raise BenchError(
                f"could not download {PUNKT_WHEEL} for NLTK's punkt_tab ({' '.join(cmd)}):\n{got.stderr[-2000:]}\n"
                f"Put punkt_tab into {nltk_dir}/tokenizers/ by other means (e.g. python -m nltk.downloader punkt_tab "
                f"-d {nltk_dir} on a machine with web access) and rerun."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                inner = wheel.read(PUNKT_ZIP)
            except KeyError:
                raise BenchError(f"{wheels[0].name} has no {PUNKT_ZIP}; put NLTK's punkt_tab into {nltk_dir}/tokenizers/ by hand")
        (nltk_dir / "tokenizers").mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(inner)) as z:
            z.extractall(nltk_dir / "tokenizers")
    if not (nltk_dir / "tokenizers" / "punkt_tab" / "english").is_dir():
        raise BenchError(f"punkt_tab was unpacked into {nltk_dir}/tokenizers but has no english/ folder")
    return nltk_dir


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(line for line in text if not line.startswith("WARNING: Location"))[-4000:] if text else ""


def _one_line(text: str) -> str:
    """Annif's TSV corpus is one document a line, text and URIs split by a tab."""
    return re.sub(r"\s+", " ", text).strip()


# ---- the benchmark -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="dataset folder with tags.tsv, train.jsonl and the evaluation split")
    p.add_argument("--split", default=None, help="evaluation split (default: test if the folder has it, else validation)")
    p.add_argument("--items", type=int, default=300, help="evaluated items, as llm4tag eval --items (default 300; 0: all)")
    p.add_argument("--seed", type=int, default=13, help="as llm4tag eval --seed (default 13); also samples --limit-train")
    p.add_argument("--offset", type=int, default=0, help="as llm4tag eval --offset")
    p.add_argument("--backends", default="omikuji,omikuji-bonsai,tfidf", help=f"comma-separated from {', '.join(BACKENDS)}")
    p.add_argument(
        "--mode",
        choices=("auto", "multi", "single"),
        default="auto",
        help="single-tag or multi-tag metrics, as llm4tag --mode; auto: single when every training sample has one tag",
    )
    p.add_argument("--max-tags", type=int, default=5, help="tags returned per item in multi-tag mode, as llm4tag --max-tags (default 5)")
    p.add_argument(
        "--candidates", type=int, default=20, help="ranked tags kept per item for candidate recall (default 20, the recall budget)"
    )
    p.add_argument("--analyzer", default="snowball(english)", help="Annif analyzer (default snowball(english); simple also works)")
    p.add_argument("--limit-train", type=int, default=None, help="train on a seeded sample of N training samples (quick runs)")
    p.add_argument("--jobs", type=int, default=1, help="Annif training jobs (default 1)")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train and score each backend N times (omikuji's training is not repeatable); files are the first run's",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default bench/out/annif-<dataset>-<split>)")
    p.add_argument("--annif-venv", type=Path, default=CACHE / "annif-venv", help="Annif's own virtual environment (default %(default)s)")
    p.add_argument("--nltk-data", type=Path, default=CACHE / "nltk_data", help="NLTK data folder for punkt_tab (default %(default)s)")
    p.add_argument("--no-install", action="store_true", help="stop if the Annif venv is missing instead of creating it")
    args = p.parse_args(argv)
    unknown = [b for b in args.backends.split(",") if b.strip() and b.strip() not in BACKENDS]
    if unknown:
        p.error(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or args.repeats < 1 or args.max_tags < 1 or args.candidates < 1:
        p.error("--backends must name one backend, and --repeats, --max-tags and --candidates must be at least 1")
    return args


def dataset_files(data: Path, split: str | None) -> tuple[Path, Path, Path, str]:
    if not data.is_dir():
        raise BenchError(f"dataset folder {data} not found (the shared sets are in ../shared/data/<name>, see its README.md)")
    if split is None:
        split = next((s for s in ("test", "validation") if (data / f"{s}.jsonl").exists()), None)
        if split is None:
            raise BenchError(f"{data} has neither test.jsonl nor validation.jsonl; give --split")
    files = (data / "tags.tsv", data / "train.jsonl", data / f"{split}.jsonl")
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise BenchError(f"missing dataset files: {', '.join(missing)}")
    return (*files, split)


def run_annif(cmd: list[str], env: dict, log: Path) -> float:
    """Run one Annif command, its output appended to ``log``; returns its wall-clock seconds."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("\n$ " + " ".join(cmd) + "\n")
        fh.flush()
        started = time.perf_counter()
        rc = subprocess.run(cmd, check=False, env=env, cwd=log.parent, stdout=fh, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - started
    if rc != 0:
        raise BenchError(f"Annif failed ({' '.join(cmd)}, exit {rc}); see {log}:\n{_tail(log)}")
    return seconds


def projects_cfg(backends: list[str], analyzer: str, limit: int) -> str:
    sections = []
    for name in backends:
        backend, settings = BACKENDS[name]
        lines = [
            f"[{name}]",
            f"name=llm4tag {name}",
            "language=en",
            f"backend={backend}",
            f"vocab={VOCAB_ID}",
            f"analyzer={analyzer}",
            f"limit={limit}",
            *(f"{k}={v}" for k, v in settings.items()),
        ]
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def item_records(got: dict, items: list, tag_of: dict[str, str], k: int, candidates: int) -> list[dict]:
    """Per-item records: the top ``k`` tags as returned, the top ``candidates`` for recall, in
    ``llm4tag eval``'s per-item format plus ``tags`` ({"tag", "confidence"}, ranked)."""
    by_id = {row["id"]: row for row in got["items"]}
    out = []
    for item in items:
        row = by_id[item.id]
        ranked = [(tag_of[u], round(score, 4)) for u, score in row["hits"]][:candidates]
        top = ranked[:k]
        out.append(
            {
                "id": item.id,
                "tags": [{"tag": t, "confidence": c} for t, c in top],
                "truth": item.tags,
                "predicted": [t for t, _ in top],
                "confidences": [c for _, c in top],
                "ranked": [t for t, _ in top],
                "candidates": [t for t, _ in ranked],
                "judged": [],
                "seconds": round(row["seconds"], 6),
                "timings": {"annif_suggest": round(row["seconds"], 6)},
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from agent.context import Context
    from agent.evaluation import load_labelled, multi_tag_metrics, single_tag_metrics, summarise
    from knowledge_base.loaders import read_samples, read_tags

    tags_path, train_path, eval_path, split = dataset_files(args.data, args.split)
    dataset = args.data.resolve().name
    out = (args.out or ROOT / "bench" / "out" / f"annif-{dataset}-{split}").resolve()  # Annif runs in out/annif

    # the knowledge base's view of the data: its vocabulary and its history
    vocabulary = [t.name for t in read_tags(tags_path, on_error="skip").records]
    known = set(vocabulary)
    samples = []
    for s in read_samples(train_path, on_error="skip").records:
        tags = [t for t in s.tags if t in known]
        if tags:
            samples.append((s.id, s.text, tags))
    if args.limit_train:
        samples = random.Random(args.seed).sample(samples, min(args.limit_train, len(samples)))
    if not samples:
        raise BenchError(f"{train_path} has no sample with a tag of {tags_path}")
    items = load_labelled(eval_path, args.items or None, args.seed, args.offset)
    mode = args.mode if args.mode != "auto" else ("single" if all(len(t) == 1 for _, _, t in samples) else "multi")
    context = Context(mode=mode, max_tags=args.max_tags)
    k = context.tag_limit

    python, version = ensure_annif(args.annif_venv, install=not args.no_install)
    nltk_dir = ensure_punkt(args.nltk_data, python)

    # Annif's files: vocabulary (URIs by position), training corpus, items, projects.cfg
    work = out / "annif"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    uri = {tag: f"{URI_PREFIX}{i}" for i, tag in enumerate(vocabulary)}
    tag_of = {u: t for t, u in uri.items()}
    (work / "subjects.tsv").write_text("".join(f"<{uri[t]}>\t{t}\n" for t in vocabulary), encoding="utf-8")
    with open(work / "train.tsv", "w", encoding="utf-8") as fh:
        for _, text, tags in samples:
            fh.write(_one_line(text) + "\t" + " ".join(f"<{uri[t]}>" for t in tags) + "\n")
    with open(work / "items.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"id": item.id, "text": _one_line(item.text)}, ensure_ascii=False) + "\n" for item in items)
    (work / "projects.cfg").write_text(projects_cfg(args.backends, args.analyzer, max(args.candidates, k)), encoding="utf-8")
    env = {key: v for key, v in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "ANNIF_PROJECTS": str(work / "projects.cfg"),
        "ANNIF_DATADIR": str(work / "data"),
        "NLTK_DATA": os.pathsep.join(filter(None, [str(nltk_dir), os.environ.get("NLTK_DATA")])),
    }
    annif_cli = str(python.parent / "annif")
    log = work / "annif.log"

    print(
        f"{dataset} {split}: {len(items)} items (seed {args.seed}), {mode}-tag; training on {len(samples)} samples, "
        f"{len(vocabulary)} tags; Annif {version}, analyzer {args.analyzer}",
        file=sys.stderr,
    )
    run_annif([annif_cli, "load-vocab", "--language", "en", VOCAB_ID, str(work / "subjects.tsv")], env, log)

    score = single_tag_metrics if mode == "single" else multi_tag_metrics
    truths = [item.tags for item in items]
    records: dict[str, list[dict]] = {}
    timings: dict[str, dict] = {}
    repeats: dict[str, list[dict]] = {}
    for name in args.backends:
        system = f"annif-{name}"
        repeats[system] = []
        for run in range(1, args.repeats + 1):
            label = f"{name} (run {run}/{args.repeats})" if args.repeats > 1 else name
            print(f"  {label}: training ...", file=sys.stderr)
            train_s = run_annif([annif_cli, "train", name, str(work / "train.tsv"), "--jobs", str(args.jobs)], env, log)
            print(f"  {label}: trained in {train_s:.1f} s; suggesting ...", file=sys.stderr)
            hits_path = work / f"hits-{name}-{run}.json"
            run_annif([str(python), str(Path(__file__).resolve()), WORKER, name, str(work / "items.jsonl"), str(hits_path)], env, log)
            got = json.loads(hits_path.read_text())
            rows = item_records(got, items, tag_of, k, args.candidates)
            secs = [r["seconds"] for r in got["items"]]
            times = {
                "train_s": train_s,
                "load_s": got["load_s"],
                "item_s_mean": statistics.mean(secs),
                "item_s_p50": statistics.median(secs),
                "item_s_p95": sorted(secs)[int(0.95 * (len(secs) - 1))],
                "empty_items": sum(not r["hits"] for r in got["items"]),
            }
            repeats[system].append({**times, **score([r["predicted"] for r in rows], truths)})
            if run == 1:  # the per-item files and eval's metrics.json/report.md are the first run's
                records[system], timings[system] = rows, times
                with open(out / f"items-{system}.jsonl", "w", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in rows)

    systems = list(records)
    metrics = summarise(records, items, context, systems, out)
    headline = metrics["headline"]
    best = max(systems, key=lambda s: statistics.mean(r[headline] for r in repeats[s]))  # over all runs
    summary = {
        "dataset": dataset,
        "data": str(args.data),
        "split": split,
        "items": len(items),
        "seed": args.seed,
        "offset": args.offset,
        "mode": mode,
        "max_tags": args.max_tags,
        "candidates": args.candidates,
        "train_samples": len(samples),
        "limit_train": args.limit_train,
        "tags": len(vocabulary),
        "annif_version": version,
        "analyzer": args.analyzer,
        "backend_settings": {f"annif-{b}": {"backend": BACKENDS[b][0], **BACKENDS[b][1]} for b in args.backends},
        "headline": headline,
        "best": best,
        "repeats": args.repeats,
        "systems": {
            s: {
                **timings[s],
                **metrics["systems"][s],
                "runs": repeats[s],
                f"{headline}_mean_over_runs": statistics.mean(r[headline] for r in repeats[s]),
            }
            for s in systems
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    cols = (
        ["accuracy", "f1_micro", "f1_macro", "Coverage@1"]
        if mode == "single"
        else ["Acc@1", "Acc@2", "Acc@3", "Coverage@1", "f1_micro", "NDCG@5"]
    )
    hr = "HR#1" if mode == "single" else "HR#3"  # candidate recall over the top --candidates tags
    header = ["system", *cols, f"{hr}@{args.candidates}", "train s", "s/item", "empty"]
    table = [
        [
            s,
            *(f"{metrics['systems'][s][c]:.3f}" for c in cols),
            f"{metrics['systems'][s]['recall'][hr]:.3f}",
            f"{timings[s]['train_s']:.1f}",
            f"{timings[s]['item_s_mean']:.4f}",
            str(timings[s]["empty_items"]),
        ]
        for s in systems
    ]
    if args.repeats > 1:  # omikuji's training is not repeatable: the spread over retrainings
        header.append(f"{headline} over {args.repeats} runs")
        for row, s in zip(table, systems):
            values = [r[headline] for r in repeats[s]]
            row.append(f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})")
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(
        f"best by {headline}{f' (mean of {args.repeats} runs)' if args.repeats > 1 else ''}: {best}; analyzer {args.analyzer}; Annif {version}; → {out}/summary.json, {out}/report.md"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [WORKER]:
        suggest_worker(*sys.argv[2:5])
        sys.exit(0)
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
