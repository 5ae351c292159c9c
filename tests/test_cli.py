"""The llm4tag command line, run in-process with click's runner on real data."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ui.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def test_build_a_knowledge_base_from_files(runner, tmp_path, small_data_dir):
    kb = str(tmp_path / "kb")
    r = runner.invoke(main, ["--kb", kb, "kb", "load-vocab", str(small_data_dir / "tags.tsv")])
    assert r.exit_code == 0, r.output
    n_tags = len((small_data_dir / "tags.tsv").read_text().splitlines()) - 1
    assert f"{n_tags} added" in r.output
    r = runner.invoke(main, ["--kb", kb, "kb", "load-samples", str(small_data_dir / "samples.jsonl")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["--kb", kb, "kb", "load-docs", str(small_data_dir / "docs")])
    assert r.exit_code == 0, r.output
    # loading the same file again duplicates nothing
    r = runner.invoke(main, ["--kb", kb, "kb", "load-vocab", str(small_data_dir / "tags.tsv")])
    assert f"0 added, {n_tags} updated" in r.output
    r = runner.invoke(main, ["--kb", kb, "kb", "stats", "--json"])
    stats = json.loads(r.output)
    assert stats["tags"] == n_tags and stats["samples"] == 240 and stats["contents"] == 240 and stats["document_passages"] > 0


def test_recall_json_and_text(runner, small_kb_dir):
    text = "An image viewer for the X Window System with a GTK interface"
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "recall", text, "--json", "--budget", "7"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data["candidates"]) == 7
    assert all(ev["path"] in ("C2T", "C2C2T", "match") for c in data["candidates"] for ev in c["evidence"])
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "recall", text, "--strategy", "match", "--budget", "4"])
    assert r.exit_code == 0 and "4 candidates (match recall)" in r.output
    assert r.output.count("match sim") == 4


def test_recall_reads_stdin_and_rejects_bad_input(runner, small_kb_dir):
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "recall", "-", "--json"], input="a web browser for the terminal")
    assert r.exit_code == 0 and json.loads(r.output)["candidates"]
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "recall", "-"], input=b"\xff\xfe broken")
    assert r.exit_code == 1 and "not valid UTF-8" in r.output
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "recall", "   "])
    assert r.exit_code == 1 and "empty" in r.output


def test_malformed_files_name_the_line_and_load_nothing(runner, tmp_path, small_kb_dir):
    import shutil

    kb = tmp_path / "kb"
    shutil.copytree(small_kb_dir, kb)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "x1", "text": "a fine line", "tags": ["role::program"]}\n{"id": "x2", "text": \n')
    r = runner.invoke(main, ["--kb", str(kb), "kb", "load-samples", str(bad)])
    assert r.exit_code == 1 and f"{bad}:2" in r.output and "nothing was loaded" in r.output
    r = runner.invoke(main, ["--kb", str(kb), "kb", "stats", "--json"])
    assert json.loads(r.output)["samples"] == 240
    r = runner.invoke(main, ["--kb", str(kb), "kb", "load-samples", str(bad), "--on-error", "skip"])
    assert r.exit_code == 0, r.output
    assert "1 added" in r.output and f"skipped {bad}:2" in r.output


def test_tag_command_json_and_explain(runner, small_kb_dir):
    text = "A puzzle game for children with colourful graphics, written in Python with pygame"
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "tag", text, "--json", "--threshold", "0", "--limit", "2"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)  # the shape every surface returns
    assert 1 <= len(data["tags"]) <= 2 and data["threshold"] == 0 and data["mode"] == "multi"
    assert [t["rank"] for t in data["tags"]] == list(range(1, len(data["tags"]) + 1)) and all(t["why"] for t in data["tags"])
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "tag", text, "--json", "--explain", "--llm", "fast", "--limit", "2"])
    full = json.loads(r.output)  # with --explain: the pipeline's whole output
    assert {"candidates", "examples", "judgments", "selection", "timings"} <= set(full)
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "tag", text, "--explain", "--no-judge", "--limit", "2"])
    assert r.exit_code == 0, r.output
    for heading in ("candidates (", "examples (", "knowledge (", "generator:", "words behind each tag", "tags:"):
        assert heading in r.output


def test_bad_option_values_are_reported(runner, small_kb_dir):
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "tag", "some text", "--threshold", "2"])
    assert r.exit_code == 2 and "threshold" in r.output
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "tag", "some text", "--backend", "nope:x"])
    assert r.exit_code == 1 and "unknown backend" in r.output


def test_run_options_say_what_the_run_configuration_says(runner):
    """Issue 27: the click help was written by hand beside Context's field help, and they disagreed."""
    from dataclasses import fields

    from agent.context import Context
    from ui.cli import CONTEXT_OPTIONS, tag_command

    said = {f.name: f.metadata["help"] for f in fields(Context)}
    shown = {p.name: p.help for p in tag_command.params}
    for _, name, _ in CONTEXT_OPTIONS:
        assert shown[name] == f"{said[name]} (env LLM4TAG_{name.upper()})", name
    assert "else 0.5" in shown["threshold"] and "tuned threshold" in shown["threshold"]
    judge = next(p for p in tag_command.params if p.name == "use_calibration")  # named as eval's no-judge; the old name stays
    assert {"--judge", "--calibrate"} <= set(judge.opts) and {"--no-judge", "--no-calibrate"} <= set(judge.secondary_opts)
