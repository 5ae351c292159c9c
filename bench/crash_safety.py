"""Crash safety and concurrent writers: nothing acknowledged is lost, nothing is stored twice.

1. Kill -9. Loads a samples file (default 2,000 lines) into a fresh knowledge base with the real
   command line (``llm4tag --kb KB kb load-samples FILE``, a subprocess), kills the load with
   SIGKILL at a random moment while it holds the write lock, ``--kills`` times (default 5), then
   re-runs it to completion and checks every sample: there exactly once, its text and tags
   right, its content and its graph edges there and agreeing with the stored tags, and found by
   a vector search for its own embedding (Chroma's index survived the kills).
2. Concurrent writers. ``--writers`` loaders at once (default 3, disjoint files of
   ``--writer-samples`` lines) while ``--learns`` REST corrections (default 32, real HTTP to an
   in-process uvicorn serving ``ui.rest.create_app``) are sent from as many threads, spread over
   the loads; then every sample a loader loaded and every correction the API acknowledged is
   checked the same way.

3. A full disk (as root; skipped otherwise). A copy of the knowledge base on a tmpfs a little
   larger than it, filled up to 400 KB: with the default reserve (``LLM4TAG_DISK_RESERVE``, 16 MiB)
   every learn is refused whole; with a 100 KB reserve learns run until the disk is full under
   them, each failure a ``DiskFullError``; then space comes back and learns succeed again; what a
   stopped write left is reported by ``kb stats`` and repaired by ``kb rebuild-graph``; then the
   same over REST (``llm4tag serve``): learns until the disk is full (507 each), ``/health`` and
   ``/v1/tag`` still answer, learns succeed once space is back, SIGTERM stops the server; every
   acknowledged learn is checked.
4. A killed worker. Two model worker processes (``agent.workers.TaggerPool``) tag ``--worker-items``
   texts with the full pipeline; one worker is killed with SIGKILL after the first answer; every
   item must still be answered (those it took down run again on fresh workers).

Prints the figures (loads killed, concurrent writers, items verified, items lost) and writes
``bench/out/crash_safety.json``; exits 1 if any item was lost or wrong, or any writer failed::

    .venv/bin/python bench/crash_safety.py                      # 2,000 lines, 5 kills, 3 loaders + 32 learns
    .venv/bin/python bench/crash_safety.py --samples 600 --kills 3 --writer-samples 150   # quicker
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowledge_base.demo import DEMO_DATA  # noqa: E402
from knowledge_base.loaders import clean_text  # noqa: E402
from knowledge_base.store import BATCH  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cli(kb: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ui.cli", "--kb", str(kb), *args]


def run_cli(kb: Path, *args: str, log_file: Path) -> int:
    with open(log_file, "ab") as out:
        return subprocess.run(cli(kb, *args), cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT).returncode


# ---- the data ----------------------------------------------------------------------------------
def make_records(n: int, prefix: str, vocabulary: list[str], rng: random.Random) -> list[dict]:
    """``n`` annotated samples with distinct ids and texts: the demo history's texts, its tags where
    the vocabulary has them (else one of the vocabulary's)."""
    demo = [json.loads(line) for line in (DEMO_DATA / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    known = set(vocabulary)
    records = []
    for i in range(n):
        base = demo[i % len(demo)]
        tags = [t for t in base["tags"] if t in known] or [vocabulary[rng.randrange(len(vocabulary))]]
        text = f"{base['text']}\n(copy {prefix}-{i})"
        records.append({"id": f"{prefix}-{i}", "text": text, "tags": list(dict.fromkeys(tags))})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def expected_of(records: list[dict]) -> dict[str, tuple[str, list[str], list[str]]]:
    return {r["id"]: (clean_text(r["text"]), list(r["tags"]), list(r.get("incorrect_tags") or [])) for r in records}


# ---- watching a writer -------------------------------------------------------------------------
def lock_held(kb: Path) -> bool:
    """Whether some process holds the knowledge base's write lock (a loader is writing)."""
    try:
        fd = os.open(kb / ".write.lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def wait_until_writing(kb: Path, procs: list[subprocess.Popen], timeout: float = 600) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_held(kb):
            return True
        if all(p.poll() is not None for p in procs):
            return False
        time.sleep(0.02)
    raise SystemExit(f"no loader took the write lock of {kb} within {timeout:.0f}s")


# ---- checking what is stored -------------------------------------------------------------------
def verify(kb_dir: Path, expected: dict[str, tuple[str, list[str], list[str]]], total_samples: int) -> dict:
    """Every expected sample there once, right, with its content, graph edges and vector; the graph
    agrees with the stored tags for every content."""
    import numpy as np

    from knowledge_base import KnowledgeBase

    kb = KnowledgeBase(kb_dir)
    samples, contents = kb.collection("samples"), kb.collection("contents")
    lost: list[str] = []
    wrong: list[str] = []
    ids = list(expected)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        got = samples.get(ids=chunk, include=["documents", "metadatas", "embeddings"])
        stored = {cid: (doc, meta, emb) for cid, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])}
        have_content = set(contents.get(ids=chunk, include=[])["ids"])
        present = [cid for cid in chunk if cid in stored]
        lost += [cid for cid in chunk if cid not in stored]
        for cid in present:
            text, tags, incorrect = expected[cid]
            doc, meta, _ = stored[cid]
            if doc != text or json.loads(meta.get("tags") or "[]") != tags or json.loads(meta.get("incorrect_tags") or "[]") != incorrect:
                wrong.append(f"{cid}: stored text or tags differ")
            elif cid not in have_content:
                wrong.append(f"{cid}: no content entry")
            elif kb.graph.tags_of(cid) != {t: 1.0 for t in tags}:
                wrong.append(f"{cid}: graph has {sorted(kb.graph.tags_of(cid))}, the store {tags}")
        if present:  # the vector index: each sample is its own nearest neighbour
            vectors = np.asarray([stored[cid][2] for cid in present], dtype=np.float32)
            hits = samples.query(query_embeddings=vectors, n_results=1, include=["distances"])
            for cid, hit_ids, dists in zip(present, hits["ids"], hits["distances"]):
                if not hit_ids or (hit_ids[0] != cid and dists[0] > 1e-4):
                    wrong.append(f"{cid}: not found by a vector search for its own embedding")
    # the whole graph agrees with the contents store
    every = contents.get(include=["metadatas"])
    graph_disagrees = 0
    for cid, meta in zip(every["ids"], every["metadatas"]):
        if set(kb.graph.tags_of(cid)) != set(json.loads((meta or {}).get("tags") or "[]")):
            graph_disagrees += 1
    content_nodes = kb.graph.counts()["content_nodes"]
    count = samples.count()
    return {
        "expected": len(expected),
        "verified": len(expected) - len(lost) - len(wrong),
        "lost": len(lost),
        "wrong": len(wrong),
        "duplicated_or_extra": count - total_samples,  # ids are unique in Chroma: an extra item is an unexpected write
        "samples_stored": count,
        "contents_stored": len(every["ids"]),
        "graph_content_nodes": content_nodes,
        "graph_disagrees": graph_disagrees + abs(content_nodes - len(every["ids"])),
        "graph_problems": list(kb.graph.problems),
        "examples": (lost[:5] + wrong[:5]),
    }


def ok(check: dict) -> bool:
    return not (check["lost"] or check["wrong"] or check["duplicated_or_extra"] or check["graph_disagrees"])


def stored_samples(kb_dir: Path) -> int:
    """The sample count as another process sees it now (this also opens the store after the kill)."""
    from knowledge_base import KnowledgeBase

    return KnowledgeBase(kb_dir).collection("samples").count()


# ---- 1. kill -9 ----------------------------------------------------------------------------------
class StoreWatch:
    """Counts the batches a load has written from the graph store's commits: each batch's graph
    operations are one transaction, which changes the store's ``data_version`` as a reader on
    another connection sees it (a batch takes seconds; the watch looks every 10 ms)."""

    def __init__(self, kb: Path):
        import sqlite3

        self.conn = sqlite3.connect(f"file:{kb / 'graph.sqlite'}?mode=ro", uri=True, timeout=60)
        self.version = self._version()
        self.batches = 0

    def _version(self) -> int:
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def poll(self) -> None:
        version = self._version()
        if version != self.version:
            self.batches += 1
            self.version = version

    def close(self) -> None:
        self.conn.close()


def kill_phase(kb: Path, path: Path, n: int, kills: int, rng: random.Random, work: Path) -> dict:
    """Kill the load at random moments spread over the whole write: each time a random batch is
    chosen, the load is let write the batches before it, then killed a random part of a batch's
    time later (so a kill may also land in the final compaction, or miss when the load ends first).
    Batches are counted from the graph store's commits (``StoreWatch``): each batch of samples goes
    to Chroma, then its graph operations to the graph store in one transaction."""
    batches = max(1, -(-n // BATCH))
    batch_s = BATCH / 30  # seconds per batch (encode + write); measured from the store's commits
    killed_at: list[float] = []
    written_at_kill: list[int] = []  # batches the killed run had written (its graph operations committed)
    stored_after: list[int] = []  # samples in the store right after each kill
    finished_first = 0
    attempts = 0
    while len(killed_at) < kills and attempts < 3 * kills:
        attempts += 1
        with open(work / f"kill-{attempts}.log", "wb") as out:
            proc = subprocess.Popen(cli(kb, "kb", "load-samples", str(path)), cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        if not wait_until_writing(kb, [proc]):
            raise SystemExit(f"the load ended (status {proc.returncode}) before it began writing; see {work}/kill-{attempts}.log")
        began = time.monotonic()
        # the first half of the kills never wait for the last batch, so they cut a load that has not yet
        # written everything even once; the rest may also land in the last batch or the compaction
        target = rng.randrange(batches - 1 if batches > 1 and len(killed_at) < (kills + 1) // 2 else batches)
        watch = StoreWatch(kb)
        while proc.poll() is None and watch.batches < target:
            watch.poll()
            time.sleep(0.01)
        if watch.batches:
            batch_s = (time.monotonic() - began) / watch.batches
        deadline = time.monotonic() + rng.uniform(0.0, 1.0) * batch_s
        while proc.poll() is None and time.monotonic() < deadline:
            watch.poll()
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            watch.poll()
            killed_at.append(round(time.monotonic() - began, 2))
            written_at_kill.append(min(watch.batches, batches))
            stored_after.append(stored_samples(kb))
            log(
                f"  kill {len(killed_at)}: SIGKILL {killed_at[-1]:.2f}s into the write, after {written_at_kill[-1]} of its {batches} "
                f"batches; {stored_after[-1]} samples in the store"
            )
        else:
            finished_first += 1
            log(f"  load {attempts} finished (status {proc.returncode}) before its kill")
        watch.close()
    started = time.monotonic()
    status = run_cli(kb, "kb", "load-samples", str(path), log_file=work / "rerun.log")
    return {
        "killed": len(killed_at),
        "killed_at_s": killed_at,
        "written_at_kill": written_at_kill,
        "stored_after_kill": stored_after,
        "finished_before_kill": finished_first,
        "rerun_status": status,
        "rerun_s": round(time.monotonic() - started, 1),
    }


# ---- 2. concurrent writers ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(kb: Path):
    import httpx
    import uvicorn

    from agent.context import Context
    from ui.rest import create_app

    app = create_app(str(kb), Context(budget=5, max_tags=2, use_knowledge=False, max_examples=1))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return server, thread, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the in-process API did not start")


def concurrency_phase(
    kb: Path,
    work: Path,
    writers: int,
    per_writer: int,
    learns: int,
    vocabulary: list[str],
    rng: random.Random,
    log_file: Path,
    spread_s: float,
) -> dict:
    import httpx

    from knowledge_base import KnowledgeBase

    files = [write_jsonl(work / f"writer-{k}.jsonl", make_records(per_writer, f"writer{k}", vocabulary, rng)) for k in range(writers)]
    loaded = {k: [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()] for k, f in enumerate(files)}
    before = KnowledgeBase(kb).collection("samples").count()
    server, thread, base = start_api(kb)
    stamp = secrets.token_hex(3)
    corrections = [
        {
            "text": f"A concurrent correction {stamp}-{i}: a small tool number {i} for {vocabulary[i % len(vocabulary)]}",
            "correct": [vocabulary[(7 * i) % len(vocabulary)]],
            "incorrect": [vocabulary[(7 * i + 1) % len(vocabulary)]],
            "id": f"learn-{stamp}-{i}",
        }
        for i in range(learns)
    ]
    delays = [rng.uniform(0, spread_s) for _ in corrections]
    procs: list[subprocess.Popen] = []
    during = 0
    lock = threading.Lock()

    def learn(i: int):
        nonlocal during
        time.sleep(delays[i])
        with lock:
            if any(p.poll() is None for p in procs):
                during += 1
        try:
            r = httpx.post(f"{base}/v1/learn", json=corrections[i], timeout=600)
            return r.status_code, r.text[:200]
        except httpx.HTTPError as exc:
            return type(exc).__name__, str(exc)[:200]

    started = time.monotonic()
    try:
        with open(log_file, "ab") as out:
            procs += [
                subprocess.Popen(cli(kb, "kb", "load-samples", str(f)), cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT)
                for f in files
            ]
        wait_until_writing(kb, procs)
        with ThreadPoolExecutor(max(1, learns)) as pool:
            answers = list(pool.map(learn, range(learns)))
        statuses = [p.wait() for p in procs]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    seconds = round(time.monotonic() - started, 1)
    acknowledged = [c for c, (status, _) in zip(corrections, answers) if status == 200]
    failed_learns = [f"{c['id']}: {status} {text}" for c, (status, text) in zip(corrections, answers) if status != 200]
    expected: dict = {}
    for k, status in enumerate(statuses):
        if status == 0:
            expected.update(expected_of(loaded[k]))
    expected.update({c["id"]: (clean_text(c["text"]), c["correct"], c["incorrect"]) for c in acknowledged})
    check = verify(kb, expected, before + len(expected))
    return {
        "loaders": writers,
        "loader_samples": per_writer,
        "loader_status": statuses,
        "learns": learns,
        "learns_during_a_load": during,
        "learns_acknowledged": len(acknowledged),
        "failed_learns": failed_learns[:10],
        "seconds": seconds,
        "check": check,
    }


# ---- main --------------------------------------------------------------------------------------
FILL_THE_DISK = """
import json, sys
from agent import tagging
from knowledge_base.errors import Llm4tagError
kb, tag, first, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(first, first + n):
    text = f"A text learned while the disk fills up, number {i}. " + ("filler words " * 300).strip()
    try:
        tagging.learn(text, [tag], kb_dir=kb)
        print(json.dumps({"i": i, "text": text, "ok": True}), flush=True)
    except Llm4tagError as exc:
        print(json.dumps({"i": i, "text": text, "ok": False, "error": str(exc), "kind": type(exc).__name__}), flush=True)
"""


def learns_in_a_process(kb: Path, tag: str, first: int, n: int, reserve: int | None = None) -> dict:
    """``n`` learns in one new process (``tagging.learn``): each one's outcome, and the process's end."""
    env = {**ENV, **({"LLM4TAG_DISK_RESERVE": str(reserve)} if reserve is not None else {})}
    done = subprocess.run(
        [sys.executable, "-c", FILL_THE_DISK, str(kb), tag, str(first), str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    return {
        "status": done.returncode,
        "traceback": "Traceback" in done.stderr,
        "stderr": done.stderr[-3000:],
        "results": [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")],
    }


def rest_on_a_full_disk(kb: Path, tag: str, disk: Path, learns: int) -> dict:
    """``llm4tag serve`` on the full disk (a 100 KB reserve): learns until the disk is full under
    them, then ``/health`` and ``/v1/tag`` (a server once hung here for good), learns again once
    space is back, and a SIGTERM (once ignored)."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(disk.parent / "serve-on-a-full-disk.log", "w") as log:  # the log on the machine's disk, not the full one
        proc = subprocess.Popen(
            [sys.executable, "-m", "ui.cli", "--kb", str(kb), "serve", "--port", str(port)],
            cwd=ROOT,
            env={**ENV, "LLM4TAG_DISK_RESERVE": "100000"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(url + "/health", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llm4tag serve did not start; see {disk.parent / 'serve-on-a-full-disk.log'}")
            time.sleep(1)
        filler = disk / "filler-rest"
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, shutil.disk_usage(disk).free - 400_000))

        def learn(i: int, timeout: float = 600) -> dict:
            text = f"A text learned over REST while the disk fills up, number {i}. " + ("filler words " * 300).strip()
            try:
                response = httpx.post(url + "/v1/learn", json={"text": text, "correct": [tag]}, timeout=timeout)
            except httpx.TimeoutException:
                return {"i": i, "text": text, "ok": False, "status": "no answer", "error": f"no answer within {timeout:.0f} s"}
            return {
                "i": i,
                "text": text,
                "ok": response.status_code == 200,
                "status": response.status_code,
                "error": "" if response.status_code == 200 else str(response.json().get("detail")),
            }

        def learns_until_one_hangs(first: int, n: int) -> list[dict]:
            """``n`` learns, stopping at one that gets no answer in 180 s: after a write failed inside Chroma's embedded
            engine for want of space, that process's next write can wait there forever (issue 31, item 3)."""
            out = []
            for i in range(n):
                out.append(learn(first + i, timeout=180))
                if out[-1]["status"] == "no answer":
                    break
            return out

        def status(method: str, path: str, **kwargs) -> int | str:
            try:
                return httpx.request(method, url + path, timeout=180, **kwargs).status_code
            except httpx.TimeoutException:
                return "no answer"

        filling = learns_until_one_hangs(1000, learns)
        health = status("GET", "/health")
        tagged = status("POST", "/v1/tag", json={"text": "A command-line tool that converts images to PDF", "llm": "fast"})
        filler.unlink()
        after = learns_until_one_hangs(2000, 2) if not any(r["status"] == "no answer" for r in filling) else []
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
        return {"filling": filling, "health": health, "tag": tagged, "after": after, "stopped_on_sigterm": stopped}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def full_disk_phase(source: Path, work: Path, learns: int = 40) -> dict:
    """Round 3 (see the module's text); ``{"skipped": why}`` where a tmpfs cannot be mounted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return {"skipped": "mounting a small tmpfs needs root"}
    disk = work / "disk"
    disk.mkdir()
    size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size + 24 * 2**20}", "tmpfs", str(disk)], capture_output=True).returncode:
        return {"skipped": "this machine does not let a tmpfs be mounted"}
    from knowledge_base import KnowledgeBase
    from knowledge_base.loaders import content_id

    try:
        kb = disk / "kb"
        shutil.copytree(source, kb, ignore=shutil.ignore_patterns(".write.lock"))
        tag = sorted(KnowledgeBase(kb).tag_names())[0]
        filler = disk / "filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, shutil.disk_usage(disk).free - 400_000))
        before = KnowledgeBase(kb).collection("samples").count()
        refused = learns_in_a_process(kb, tag, 0, 2)  # the default reserve: refused whole
        samples_after_refusal = KnowledgeBase(kb).collection("samples").count()
        filling = learns_in_a_process(kb, tag, 10, learns, reserve=100_000)  # writes start, and the disk fills under them
        filler.unlink()
        after = learns_in_a_process(kb, tag, 100, 3)  # space is back
        rest = rest_on_a_full_disk(kb, tag, disk, learns=max(12, learns // 2))
        reported = [p for p in KnowledgeBase(kb).stats(check=True).get("problems", []) if "halfway" in p]
        repaired = None
        if reported:
            repaired = KnowledgeBase(kb, load_graph=False).rebuild_graph()["restored_contents"]
        fresh = KnowledgeBase(kb)
        left = [p for p in fresh.stats(check=True).get("problems", []) if "halfway" in p]
        acknowledged = [r for r in [*filling["results"], *after["results"], *rest["filling"], *rest["after"]] if r["ok"]]
        lost = [r["i"] for r in acknowledged if (s := fresh.get_sample(content_id(r["text"]))) is None or list(s.tags) != [tag]]
        return {
            "refused": refused,
            "samples_before": before,
            "samples_after_refusal": samples_after_refusal,
            "filling": filling,
            "after": after,
            "rest": rest,
            "reported_halfway": reported,
            "restored_contents": repaired,
            "left_halfway": left,
            "acknowledged": len(acknowledged),
            "lost": lost,
        }
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def worker_phase(kb: Path, items: int = 12) -> dict:
    """Round 4 (see the module's text)."""
    from agent import Context
    from agent.workers import TaggerPool, WorkerError

    texts = [f"A command-line tool number {i} that converts images between formats and prints a report." for i in range(items)]
    answered, failed = 0, []
    started = time.monotonic()
    with TaggerPool(2, Context(kb_dir=str(kb), llm="full", budget=10, max_tags=3)) as pool:
        pool.start()
        futures = [pool.submit(t) for t in texts]
        futures[0].result(timeout=900)
        victim = next(iter(pool.memory()))
        os.kill(victim, signal.SIGKILL)
        for i, f in enumerate(futures):
            try:
                answered += bool(f.result(timeout=900)["candidates"])
            except WorkerError as exc:
                failed.append((i, str(exc)))
    return {"items": items, "answered": answered, "failed": failed, "killed_pid": victim, "seconds": round(time.monotonic() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="lines of the samples file that is loaded and killed")
    parser.add_argument("--kills", type=int, default=5, help="how many times the load is killed with SIGKILL before the re-run")
    parser.add_argument("--writers", type=int, default=3, help="loaders run at once in the concurrency check")
    parser.add_argument("--writer-samples", type=int, default=300, help="lines of each concurrent loader's file")
    parser.add_argument("--learns", type=int, default=32, help="concurrent REST corrections")
    parser.add_argument("--kb", type=Path, default=None, help="a knowledge base to copy (default: a fresh one with the demo vocabulary)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill moments and data (default: random, printed)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (knowledge base, files, logs)")
    parser.add_argument("--worker-items", type=int, default=12, help="texts tagged by two worker processes, one of which is killed")
    parser.add_argument("--out", type=Path, default=OUT / "crash_safety.json")
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="llm4tag-crash-"))
    kb = work / "kb"
    log_file = work / "loads.log"
    log(f"work folder {work} (seed {seed}); load output goes to {log_file}")
    try:
        if args.kb:
            shutil.copytree(args.kb.expanduser(), kb, ignore=shutil.ignore_patterns(".write.lock"))
        elif run_cli(kb, "kb", "load-vocab", str(DEMO_DATA / "tags.tsv"), log_file=log_file):
            raise SystemExit(f"building the knowledge base failed; see {log_file}")
        from knowledge_base import KnowledgeBase

        base_kb = KnowledgeBase(kb)
        vocabulary = sorted(base_kb.tag_names())
        baseline = base_kb.collection("samples").count()
        del base_kb

        log(f"1. kill -9: loading {args.samples} samples, killed {args.kills} times, then re-run")
        records = make_records(args.samples, "crash", vocabulary, rng)
        path = write_jsonl(work / "samples.jsonl", records)
        started = time.monotonic()
        kills = kill_phase(kb, path, args.samples, args.kills, rng, work)
        crash_check = verify(kb, expected_of(records), baseline + len(records))
        kills["seconds"] = round(time.monotonic() - started, 1)

        log(f"2. concurrent writers: {args.writers} loaders at once + {args.learns} REST learns")
        spread = max(2.0, args.writers * args.writer_samples / 60)
        conc = concurrency_phase(kb, work, args.writers, args.writer_samples, args.learns, vocabulary, rng, log_file, spread)

        log("3. a full disk: learns on a tmpfs that fills up, then space comes back")
        disk = full_disk_phase(kb, work)
        log(f"4. a killed worker: two model workers tag {args.worker_items} texts, one is killed after the first answer")
        workers = worker_phase(kb, args.worker_items)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    cc = conc["check"]
    verified = crash_check["verified"] + cc["verified"]
    lost = crash_check["lost"] + cc["lost"]
    wrong = crash_check["wrong"] + cc["wrong"] + crash_check["duplicated_or_extra"] + cc["duplicated_or_extra"]
    failed_writers = (
        (kills["rerun_status"] != 0) + sum(1 for s in conc["loader_status"] if s) + (conc["learns"] - conc["learns_acknowledged"])
    )
    graph_bad = crash_check["graph_disagrees"] + cc["graph_disagrees"]
    print(
        f"kill -9: {args.samples}-line samples file, {kills['killed']} loads killed with SIGKILL "
        f"(at {', '.join(f'{s:.2f}' for s in kills['killed_at_s'])} s into the write, after "
        f"{', '.join(str(n) for n in kills['written_at_kill'])} of {-(-args.samples // BATCH)} batches written), "
        f"{kills['finished_before_kill']} finished before "
        f"their kill, re-run to completion (status {kills['rerun_status']}, {kills['rerun_s']} s)"
    )
    print(
        f"  items verified {crash_check['verified']}/{crash_check['expected']}: lost {crash_check['lost']}, wrong {crash_check['wrong']}, "
        f"extra {crash_check['duplicated_or_extra']}, graph disagreements {crash_check['graph_disagrees']}"
    )
    disk_failed = disk_lost = 0
    if "skipped" in disk:
        print(f"full disk: skipped ({disk['skipped']})")
    else:
        runs = (disk["refused"], disk["filling"], disk["after"])
        refused_ok = all(not r["ok"] and r["kind"] == "DiskFullError" for r in disk["refused"]["results"])
        failures = [r for r in disk["filling"]["results"] if not r["ok"]]
        disk_failed = (
            sum(1 for run in runs if run["status"] or run["traceback"])
            + (not refused_ok)
            + sum(1 for r in failures if r["kind"] != "DiskFullError")
            + sum(1 for r in disk["after"]["results"] if not r["ok"])
            + (disk["samples_after_refusal"] != disk["samples_before"])
            + len(disk["left_halfway"])
        )
        rest = disk["rest"]
        rest_failed = [r for r in rest["filling"] if not r["ok"]]
        disk_failed += (
            sum(1 for r in rest_failed if r["status"] != 507)
            + (rest["health"] != 200)
            + (rest["tag"] != 200)
            + sum(1 for r in rest["after"] if not r["ok"])
            + (not rest["stopped_on_sigterm"])
        )
        disk_lost = len(disk["lost"])
        if not failures:
            print("full disk: WARNING the disk did not fill up during the learns, so the failure path was not exercised")
        print(
            f"full disk: {len(disk['refused']['results'])} learns under the reserve refused whole ({'' if refused_ok else 'NOT '}all "
            f"DiskFullError, samples {disk['samples_before']} -> {disk['samples_after_refusal']}); {len(disk['filling']['results'])} "
            f"learns as the disk filled: {len(disk['filling']['results']) - len(failures)} acknowledged, {len(failures)} DiskFullError"
            f"{'' if all(r['kind'] == 'DiskFullError' for r in failures) else ' (and other errors)'}; after space came back "
            f"{sum(1 for r in disk['after']['results'] if r['ok'])}/{len(disk['after']['results'])} acknowledged; half-written "
            f"reported {len(disk['reported_halfway'])}, restored {disk['restored_contents'] or 0}, left {len(disk['left_halfway'])}; "
            f"acknowledged learns verified {disk['acknowledged'] - disk_lost}/{disk['acknowledged']}"
        )
        print(
            f"  over REST: {len(rest['filling'])} learns as the disk filled: {len(rest['filling']) - len(rest_failed)} acknowledged, "
            f"statuses of the others {sorted({r['status'] for r in rest_failed})}; then /health {rest['health']}, /v1/tag {rest['tag']}; "
            f"after space came back {sum(1 for r in rest['after'] if r['ok'])}/{len(rest['after'])} acknowledged; "
            f"{'stopped' if rest['stopped_on_sigterm'] else 'did NOT stop'} on SIGTERM"
        )
    print(
        f"killed worker: {workers['items']} texts on 2 workers, one killed after the first answer: {workers['answered']} answered, "
        f"{len(workers['failed'])} failed, {workers['seconds']} s"
    )
    print(
        f"concurrent writers: {conc['loaders']} loaders at once ({conc['loaders']} x {conc['loader_samples']} samples, status "
        f"{conc['loader_status']}) + {conc['learns']} concurrent REST learns ({conc['learns_during_a_load']} sent while a load ran, "
        f"{conc['learns_acknowledged']} acknowledged) in {conc['seconds']} s"
    )
    print(
        f"  items verified {cc['verified']}/{cc['expected']}: lost {cc['lost']}, wrong {cc['wrong']}, extra {cc['duplicated_or_extra']}, "
        f"graph disagreements {cc['graph_disagrees']}"
    )
    lost += disk_lost + len(workers["failed"])
    failed_writers += disk_failed
    print(
        f"total: loads killed {kills['killed']}, concurrent writers {conc['loaders'] + conc['learns']}, items verified {verified}, "
        f"items lost {lost}, wrong or extra {wrong}, failed writes {failed_writers}"
    )
    for problem in crash_check["examples"] + cc["examples"] + conc["failed_learns"]:
        print(f"  problem: {problem}")
    OUT.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "seed": seed,
                "samples": args.samples,
                "kill": kills,
                "kill_check": crash_check,
                "concurrency": conc,
                "full_disk": disk,
                "killed_worker": workers,
                "totals": {
                    "loads_killed": kills["killed"],
                    "concurrent_writers": conc["loaders"] + conc["learns"],
                    "items_verified": verified,
                    "items_lost": lost,
                    "wrong_or_extra": wrong,
                    "failed_writes": failed_writers,
                },
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return 1 if (lost or wrong or failed_writers or graph_bad) else 0


if __name__ == "__main__":
    sys.exit(main())
