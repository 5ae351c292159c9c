"""Batch tagging: results as they come, bad lines skipped, resumable after a crash."""

from __future__ import annotations

import json

import pytest

from agent import Context
from agent.batch import finished_keys, read_items, run_batch

ITEMS = [
    {"id": "a", "text": "A chess engine with a graphical board written in C++"},
    {"id": "b", "text": "Library for parsing XML documents in Python"},
    {"id": "c", "text": "Command-line tool to resize and convert images"},
]


@pytest.fixture
def batch_in(tmp_path):
    p = tmp_path / "in.jsonl"
    lines = [json.dumps(ITEMS[0]), '{"id": "broken", "text": ', json.dumps(ITEMS[1]), json.dumps({"id": "empty", "text": "  "}), json.dumps(ITEMS[2])]
    p.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe not utf-8\n")
    return p


def test_read_items_reports_bad_lines(batch_in):
    items = list(read_items(batch_in))
    assert [i.key for i in items] == ["a", "line-2", "b", "empty", "c", "line-6"]
    assert [bool(i.error) for i in items] == [False, True, False, True, False, True]
    assert "malformed JSON" in items[1].error and "UTF-8" in items[5].error


def test_batch_runs_resumes_and_skips_bad_lines(batch_in, tmp_path, small_kb_dir):
    out = tmp_path / "out.jsonl"
    ctx = Context(kb_dir=str(small_kb_dir), use_calibration=False, budget=8, max_tags=2)
    calls = []

    def counting_tagger(text, **kw):
        from agent import tag

        calls.append(text)
        return tag(text, **kw)

    first = run_batch(batch_in, out, ctx, tagger=counting_tagger)
    assert first.tagged == 3 and len(first.errors) == 3 and len(calls) == 3
    lines = out.read_text().splitlines()
    records = [json.loads(l) for l in lines]
    assert [r["id"] for r in records] == ["a", "line-2", "b", "empty", "c", "line-6"]
    assert all(r["tags"] for r in records if "error" not in r)
    # simulate a crash while "b" was being written: two whole lines, then a torn one
    keep = "\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2]
    out.write_text(keep)
    assert finished_keys(out) == {"a", "line-2"}
    assert out.read_text().endswith("\n")  # the torn line was cut off
    calls.clear()
    second = run_batch(batch_in, out, ctx, tagger=counting_tagger)
    assert second.skipped_done == 2 and second.tagged == 2
    assert calls == [ITEMS[1]["text"], ITEMS[2]["text"]]
    assert [json.loads(l)["id"] for l in out.read_text().splitlines()] == ["a", "line-2", "b", "empty", "c", "line-6"]
