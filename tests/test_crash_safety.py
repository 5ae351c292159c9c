"""A load killed with SIGKILL while it writes, then re-run, leaves every sample there once and the
graph agreeing with the stores (the quick form of ``bench/crash_safety.py``, which kills N times
and adds concurrent writers). Real CLI subprocess, real Chroma, real encoder."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from knowledge_base import KnowledgeBase

ROOT = Path(__file__).resolve().parents[1]


def bench():
    spec = importlib.util.spec_from_file_location("crash_safety", ROOT / "bench" / "crash_safety.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_load_killed_mid_write_and_re_run_loses_nothing(small_kb_dir, tmp_path):
    cs = bench()
    kb = tmp_path / "kb"
    shutil.copytree(small_kb_dir, kb, ignore=shutil.ignore_patterns(".write.lock"))
    base = KnowledgeBase(kb)
    vocabulary, before = sorted(base.tag_names()), base.collection("samples").count()
    del base
    records = cs.make_records(200, "kill", vocabulary, random.Random(3))
    path = cs.write_jsonl(tmp_path / "samples.jsonl", records)
    log_file = tmp_path / "load.log"

    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cs.cli(kb, "kb", "load-samples", str(path)), cwd=ROOT, env=cs.ENV, stdout=out, stderr=subprocess.STDOUT)
    assert cs.wait_until_writing(kb, [proc], timeout=120), log_file.read_text()
    time.sleep(random.uniform(0.2, 1.0))  # inside the write: encoding and writing 200 samples takes longer
    assert proc.poll() is None, "the load finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cs.stored_samples(kb)  # the store opens after the kill

    assert cs.run_cli(kb, "kb", "load-samples", str(path), log_file=log_file) == 0, log_file.read_text()[-2000:]
    check = cs.verify(kb, cs.expected_of(records), before + len(records))
    assert cs.ok(check) and check["verified"] == len(records), check


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


def _learns(kb: Path, tag: str, first: int, n: int, reserve: int | None = None) -> list[dict]:
    import json
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"LLM4TAG_DISK_RESERVE": str(reserve)} if reserve is not None else {})}
    done = subprocess.run([sys.executable, "-c", FILL_THE_DISK, str(kb), tag, str(first), str(n)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_a_full_disk_gives_a_clear_error_loses_no_acknowledged_write_and_heals_once_space_is_back(small_kb_dir, tmp_path):
    """Issue 31 (3): learns on a full disk got 500 "internal error (OSError)", then hung; those that
    failed were left in samples with no content and no graph node."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        import pytest

        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    size = sum(f.stat().st_size for f in small_kb_dir.rglob("*") if f.is_file())
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size + 24 * 2**20}", "tmpfs", str(disk)], capture_output=True).returncode:
        import pytest

        pytest.skip("this machine does not let the test mount a tmpfs")
    try:
        kb = disk / "kb"
        shutil.copytree(small_kb_dir, kb, ignore=shutil.ignore_patterns(".write.lock"))
        tag = sorted(KnowledgeBase(kb).tag_names())[0]
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, free - 400_000))
        # the default reserve (16 MiB) refuses every write up front: nothing is written
        before = KnowledgeBase(kb).collection("samples").count()
        refused = _learns(kb, tag, 0, 2)
        assert all(not r["ok"] and r["kind"] == "DiskFullError" and "nothing was written" in r["error"] for r in refused), refused
        assert KnowledgeBase(kb).collection("samples").count() == before
        # a small reserve lets writes start until the disk is full under them
        results = _learns(kb, tag, 10, 12, reserve=100_000)
        failed = [r for r in results if not r["ok"]]
        assert len(results) == 12 and failed, results  # the disk filled up (and the process answered every call)
        assert all(r["kind"] == "DiskFullError" and "disk holding the knowledge base" in r["error"] for r in failed), failed
        filler.unlink()  # space is back
        after = _learns(kb, tag, 100, 3)
        assert all(r["ok"] for r in after), after
        stats = subprocess.run([*bench().cli(kb, "kb", "stats")], cwd=ROOT, capture_output=True, text=True, timeout=300)
        if "half-written" in stats.stdout or "halfway" in stats.stdout:
            assert bench().run_cli(kb, "kb", "rebuild-graph", log_file=tmp_path / "rebuild.log") == 0
        fresh = KnowledgeBase(kb)
        checked = fresh.stats(check=True)
        assert not any("halfway" in p for p in checked.get("problems", [])), checked
        from knowledge_base.loaders import content_id

        for r in [*results, *after]:
            if r["ok"]:  # every acknowledged learn is stored, with its tag
                sample = fresh.get_sample(content_id(r["text"]))
                assert sample is not None and list(sample.tags) == [tag], r["i"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
