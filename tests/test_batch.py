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
    lines = [
        json.dumps(ITEMS[0]),
        '{"id": "broken", "text": ',
        json.dumps(ITEMS[1]),
        json.dumps({"id": "empty", "text": "  "}),
        json.dumps(ITEMS[2]),
    ]
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
    from agent.results import TagResult

    for r in (r for r in records if "error" not in r):  # the result every surface returns, with the id and the candidates
        shaped = {k: r[k] for k in TagResult.model_fields}
        assert TagResult.model_validate(shaped).model_dump(mode="json") == shaped and set(r) == {"id", "candidates", *shaped}
        assert all(set(c) == {"tag", "score", "probability", "evidence_score", "paths"} for c in r["candidates"])
    # simulate a crash while "b" was being written: two whole lines, then a torn one
    keep = "\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2]
    out.write_text(keep)
    assert finished_keys(out) == {"a"}  # line-2 is an error: checked again on the next run
    assert out.read_text().endswith("\n")  # the torn line was cut off
    calls.clear()
    second = run_batch(batch_in, out, ctx, tagger=counting_tagger)
    assert second.skipped_done == 1 and second.tagged == 2
    assert calls == [ITEMS[1]["text"], ITEMS[2]["text"]]
    assert [json.loads(l)["id"] for l in out.read_text().splitlines()] == ["a", "line-2", "line-2", "b", "empty", "c", "line-6"]


# ---- issue 15 items 1 and 4 ---------------------------------------------------------------------
def _no_llm(kb_dir, **extra) -> Context:
    return Context(kb_dir=str(kb_dir), use_generation=False, use_calibration=False, budget=5, max_tags=2, **extra)


def test_index_never_cuts_a_line_it_did_not_write(tmp_path, small_kb_dir):
    from click.testing import CliRunner

    from ui.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ITEMS[0]) + "\n", encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"one\ntwo\nlast")
    result = CliRunner().invoke(main, ["--kb", str(small_kb_dir), "index", str(src), str(notes)])
    assert result.exit_code == 1 and "not a result line llm4tag wrote" in result.output, result.output
    assert notes.read_bytes() == b"one\ntwo\nlast"

    mine = tmp_path / "results.jsonl"  # this tool's records, the last one complete but unterminated
    mine.write_bytes(b'{"id": "x", "tags": [], "confidence": [], "candidates": [], "notes": []}')
    assert finished_keys(mine) == {"x"} and mine.read_bytes().endswith(b"[]}\n")


def test_index_refuses_the_input_file_as_output(tmp_path, small_kb_dir):
    from click.testing import CliRunner

    from ui.cli import main

    src = tmp_path / "in.jsonl"
    src.write_bytes(b"one\ntwo\nlast")
    result = CliRunner().invoke(main, ["--kb", str(small_kb_dir), "index", str(src), str(src)])
    assert result.exit_code == 1 and "is the input file too" in result.output
    assert src.read_bytes() == b"one\ntwo\nlast"


def test_failed_items_are_recorded_as_failures_and_retried(tmp_path, small_kb_dir, monkeypatch):
    from click.testing import CliRunner

    from ui.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(i) + "\n" for i in ITEMS[:2]), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    down = _no_llm(small_kb_dir).with_overrides(use_generation=True, backend="ollama:absent-model")
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens there: the model server is down
    first = run_batch(src, out, down)
    assert first.tagged == 0 and len(first.failed) == 2 and not first.errors
    records = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["failed", "failed"] and all("Ollama" in r["error"] for r in records)
    assert finished_keys(out) == set()

    # the CLI finds the server down before it loads anything: it exits non-zero, names the server, writes nothing
    before = out.read_bytes()
    result = CliRunner().invoke(main, ["--kb", str(small_kb_dir), "index", str(src), str(out), "--backend", "ollama:absent-model"])
    assert result.exit_code == 1 and "Ollama is not reachable" in result.output and out.read_bytes() == before

    # items that fail while the CLI runs (here one with no text) make it exit non-zero and say how to retry
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ITEMS[2]) + "\n" + json.dumps({"id": "empty", "text": "   "}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--kb", str(small_kb_dir), "index", str(bad), str(tmp_path / "bad-out.jsonl"), "--no-llm"])
    assert result.exit_code == 1 and "1 tagged" in result.output and "run the same command again" in result.output

    # the server is back: a re-run retries exactly the failures
    second = run_batch(src, out, _no_llm(small_kb_dir))
    assert second.tagged == 2 and second.skipped_done == 0 and not second.failed
    assert finished_keys(out) == {"a", "b"}
    third = run_batch(src, out, _no_llm(small_kb_dir))
    assert third.tagged == 0 and third.skipped_done == 2
