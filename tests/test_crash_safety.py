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


def test_a_full_disk_gives_a_clear_error_loses_no_acknowledged_write_and_heals_once_space_is_back(small_kb_dir, tmp_path):
    """Issue 31 (3): learns on a full disk got 500 "internal error (OSError)", then hung — REST too,
    ignoring SIGTERM; those that failed were left in samples with no content and no graph node
    (``bench/crash_safety.py``'s round 3)."""
    import pytest

    disk = bench().full_disk_phase(small_kb_dir, tmp_path, learns=12)
    if "skipped" in disk:
        pytest.skip(disk["skipped"])
    for run in (disk["refused"], disk["filling"], disk["after"]):  # each process answered every call and ended cleanly
        assert run["status"] == 0 and not run["traceback"], run["stderr"]
    # the default reserve (16 MiB) refuses every write up front: nothing is written
    assert all(not r["ok"] and r["kind"] == "DiskFullError" and "nothing was written" in r["error"] for r in disk["refused"]["results"])
    assert disk["samples_after_refusal"] == disk["samples_before"]
    # a small reserve lets writes start until the disk is full under them
    failed = [r for r in disk["filling"]["results"] if not r["ok"]]
    assert len(disk["filling"]["results"]) == 12 and failed, disk["filling"]
    assert all(r["kind"] == "DiskFullError" and "disk holding the knowledge base" in r["error"] for r in failed), failed
    assert all(r["ok"] for r in disk["after"]["results"]), disk["after"]  # space is back
    # over REST the same: 507s with a message, then the server keeps answering and stops on SIGTERM (it once hung for good)
    rest = disk["rest"]
    refused = [r for r in rest["filling"] if not r["ok"]]
    assert refused and all(r["status"] in (507, "no answer") for r in refused), rest["filling"]
    assert all("disk" in r["error"] for r in refused if r["status"] == 507), rest["filling"]
    assert disk["left_halfway"] == [] and disk["lost"] == [] and disk["acknowledged"] >= 3  # repaired; every acknowledged learn stored
    if any(r["status"] == "no answer" for r in rest["filling"] + rest["after"]):
        # not fixed: on a disk filled under a small reserve, a write inside Chroma's embedded engine can wait forever instead of
        # failing (py-spy: RustBindingsAPI._upsert on a futex, the disk 100% full; a fresh client did not help); the default
        # 16 MiB reserve refuses a write long before. Issue 31 stays open for it.
        # While it waits (the write lock held, the disk full) a tag once answered 500 too: reads are asserted only without a hang.
        pytest.xfail("a learn over REST on the full disk waited in Chroma's engine (issue 31, item 3: still open)")
    assert rest["health"] == 200 and rest["tag"] == 200, rest  # the server keeps answering reads on a full disk
    assert all(r["ok"] for r in rest["after"]) and rest["stopped_on_sigterm"], rest


def test_a_killed_worker_costs_no_item(small_kb_dir, tmp_path):
    """Issue 31 (7), ``bench/crash_safety.py``'s round 4: a worker killed while a batch is queued."""
    kb = shutil.copytree(small_kb_dir, tmp_path / "kb", ignore=shutil.ignore_patterns(".write.lock"))
    workers = bench().worker_phase(kb, items=6)
    assert workers["answered"] == 6 and workers["failed"] == [], workers
