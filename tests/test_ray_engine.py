"""``index --engine ray``: Ray Data's actor pool of taggers on a local Ray instance, same files as the local engine."""

from __future__ import annotations

import json

import pytest

from agent import Context
from agent.batch import run_batch

ray = pytest.importorskip("ray", reason="Ray Data is in the ray extra, which dev includes")

TEXTS = [
    "A chess engine with a graphical board written in C++",
    "Library for parsing XML documents in Python",
    "Command-line tool to resize and convert images",
]


@pytest.mark.slow
def test_ray_engine_tags_like_the_local_engine_in_order_and_resumes(small_kb_dir, tmp_path):
    ctx = Context(kb_dir=str(small_kb_dir), budget=8, max_tags=2, judge_top=1, use_cache=False)
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"i{n}", "text": t}) for n, t in enumerate(TEXTS)]
    lines.insert(1, "{not json")
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_batch(src, local, ctx)
    try:
        report = run_batch(src, distributed, ctx, workers=1, engine="ray")
        assert report.tagged == 3 and len(report.errors) == 1
        records = [json.loads(line) for line in distributed.read_text().splitlines()]
        assert [r["id"] for r in records] == ["i0", "line-2", "i1", "i2"]
        # the actor ran the same pipeline, with its own model: the same tags and confidences
        expected = [json.loads(line) for line in local.read_text().splitlines()]
        answers = lambda rs: [[(t["tag"], t["confidence"]) for t in r.get("tags") or []] for r in rs]  # noqa: E731
        assert answers(records) == answers(expected)
        again = run_batch(src, distributed, ctx, workers=1, engine="ray")
        assert again.tagged == 0 and again.skipped_done == 3
    finally:
        ray.shutdown()
