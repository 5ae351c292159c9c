"""Model worker processes: the same results as tagging in-process, in order, and a dead worker is reported."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from agent import Context, tag
from agent.batch import run_batch
from agent.workers import TaggerPool, WorkerError

TEXTS = [
    "A chess engine with a graphical board written in C++",
    "Library for parsing XML documents in Python",
    "Command-line tool to resize and convert images",
    "A text editor for the terminal with syntax highlighting",
]


@pytest.fixture(scope="module")
def ctx(small_kb_dir) -> Context:
    # the real pipeline, kept small: 8 candidates, 2 tags, 2 judged from recall
    return Context(kb_dir=str(small_kb_dir), budget=8, max_tags=2, judge_top=2, use_cache=False)


@pytest.fixture(scope="module")
def pool(ctx):
    with TaggerPool(2, ctx) as pool:
        pool.start()
        yield pool


def test_workers_tag_like_this_process_and_report_their_memory(pool, ctx):
    futures = [pool.submit(text) for text in TEXTS]
    pooled = [f.result() for f in futures]
    here = [tag(text, context=ctx) for text in TEXTS]
    assert [r["tags"] for r in pooled] == [r["tags"] for r in here]
    assert all(r["judgments"] and r["selection"]["tags"] for r in pooled)  # the LLM ran in the workers
    memory = pool.memory()
    assert len(memory) == 2 and os.getpid() not in memory  # two processes answered, neither is this one
    assert all(100 < mib < 8000 for mib in memory.values())
    with pytest.raises(ValueError, match="knowledge base and backend"):
        pool.submit(TEXTS[0], context=ctx.with_overrides(backend="ollama:x"))


def test_batch_with_workers_writes_in_input_order_and_resumes(pool, ctx, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"i{n}", "text": t}) for n, t in enumerate(TEXTS)]
    lines.insert(2, '{"id": "bad", "text": ')
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    report = run_batch(src, out, ctx, pool=pool)
    assert report.tagged == 4 and len(report.errors) == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["i0", "i1", "line-3", "i2", "i3"]
    assert all(r["candidates"] and all("confidence" in t and t["why"] for t in r["tags"]) for r in records if "error" not in r)
    again = run_batch(src, out, ctx, pool=pool)
    assert again.tagged == 0 and again.skipped_done == 4  # the bad line is tried again, and is still bad
    assert len(again.errors) == 1


def _workers_of(pool: TaggerPool, other_than: object = None, timeout: float = 120) -> tuple[object, list[int]]:
    """The pool's executor and its worker pids, once it has started some (a fresh one when ``other_than``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor = pool._executor
        pids = list(getattr(executor, "_processes", None) or {})
        if executor is not other_than and pids:
            return executor, pids
        time.sleep(0.05)
    raise AssertionError("no worker process started")


def test_a_dead_worker_costs_no_queued_item_and_an_item_that_kills_twice_fails(ctx):
    """Issue 31 (7): kill -9 of 1 of 2 workers failed 69 of 100 queued documents."""
    with TaggerPool(1, ctx.with_overrides(use_generation=False, use_calibration=False)) as pool:
        pool.submit(TEXTS[0]).result()
        (pid,) = pool.memory()
        os.kill(pid, signal.SIGKILL)  # idle: the next call runs on a fresh worker
        assert pool.submit(TEXTS[1]).result(timeout=180)["candidates"]
        queued = [pool.submit(TEXTS[i % len(TEXTS)]) for i in range(8)]
        _, pids = _workers_of(pool)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)  # in flight and queued items alike are run again
        assert all(f.result(timeout=300)["candidates"] for f in queued)
        doomed = pool.submit(TEXTS[2])
        first, pids = _workers_of(pool)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        _, pids = _workers_of(pool, other_than=first)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match="died twice"):
            doomed.result(timeout=120)
        assert pool.submit(TEXTS[3]).result(timeout=180)["candidates"]  # and the pool goes on
