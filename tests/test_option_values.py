"""Option values are checked and a mistyped --kb never becomes an empty knowledge base (issue 15 item 11)."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from agent.context import Context
from knowledge_base import RecallConfig
from knowledge_base.config import KnowledgeBaseConfig
from ui.cli import main


@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--budget", "-5"),
        ("--budget", "0"),
        ("--max-c2t", "-3"),
        ("--max-c2c2t", "-1"),
        ("--delta-ct", "nan"),
        ("--delta-ct", "inf"),
        ("--delta-cc", "-inf"),
        ("--delta-ct", "1.5"),
        ("--delta-cc", "nan"),
    ],
)
def test_recall_refuses_out_of_range_settings(runner, small_kb_dir, option, value):
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "recall", "a web browser", option, value])
    assert r.exit_code == 2, r.output
    assert option.lstrip("-").replace("-", "_") in r.output and "Traceback" not in r.output


def test_one_rule_for_every_surface():
    for bad in (
        {"budget": 0},
        {"max_c2t": -3},
        {"delta_ct": math.nan},
        {"delta_cc": math.inf},
        {"max_learned": -1},
        {"similar_contents": -2},
        {"strategy": "nope"},
    ):
        with pytest.raises(ValueError):
            RecallConfig(**bad)
        with pytest.raises(ValueError):
            RecallConfig().with_overrides(**bad)
    for bad in (
        {"budget": -5},
        {"max_c2t": -3},
        {"delta_ct": math.nan},
        {"history_keep": math.inf},
        {"max_examples": -1},
        {"web_timeout_s": math.nan},
        {"content_chars": 0},
    ):
        with pytest.raises(ValueError):
            Context(**bad)
    assert RecallConfig(max_learned=0, max_c2c2t=0).budget == 20  # 0 switches a path off
    assert Context(budget=1, delta_ct=-0.1).budget == 1


def test_a_stored_config_with_bad_recall_settings_is_named(tmp_path):
    from knowledge_base.errors import KnowledgeBaseError

    path = tmp_path / "config.json"
    path.write_text('{"recall": {"budget": -1}}')
    with pytest.raises(KnowledgeBaseError, match="budget"):
        KnowledgeBaseConfig.load(path)


def test_kb_search_refuses_a_negative_k(runner, small_kb_dir):
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "kb", "search", "browser", "-k", "-1"])
    assert r.exit_code == 2 and "-k" in r.output, r.output
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "kb", "search", "browser", "-k", "0"])
    assert r.exit_code == 2, r.output


@pytest.mark.parametrize(
    "command",
    [["kb", "stats"], ["recall", "some text"], ["tag", "some text", "--no-llm"], ["kb", "search", "browser"], ["kb", "train-classifier"]],
)
def test_read_commands_refuse_a_missing_or_foreign_kb_folder(runner, tmp_path, command):
    missing = tmp_path / "typo-kb"
    r = runner.invoke(main, ["--kb", str(missing), *command])
    assert r.exit_code == 2 and str(missing) in r.output and "does not exist" in r.output, r.output
    assert not missing.exists()  # nothing created
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_text("x")
    r = runner.invoke(main, ["--kb", str(foreign), *command])
    assert r.exit_code == 2 and str(foreign) in r.output and "not a knowledge base" in r.output, r.output
    assert sorted(p.name for p in foreign.iterdir()) == ["a.jpg"]


def test_loading_creates_a_knowledge_base_and_says_so(runner, tmp_path, small_data_dir):
    kb = tmp_path / "new-kb"
    r = runner.invoke(main, ["--kb", str(kb), "kb", "load-vocab", str(small_data_dir / "tags.tsv")])
    assert r.exit_code == 0, r.output
    assert f"created a new knowledge base at {kb.resolve()}" in r.output
    r = runner.invoke(main, ["--kb", str(kb), "kb", "load-vocab", str(small_data_dir / "tags.tsv")])
    assert "created" not in r.output
    r = runner.invoke(main, ["--kb", str(kb), "kb", "stats", "--json"])
    assert r.exit_code == 0, r.output
