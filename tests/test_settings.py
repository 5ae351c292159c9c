"""This process's settings (``knowledge_base.settings``): every machine-level ``LLM4TAG_*`` variable
is read, checked and shown in one place, and a bad value names the variable and what it may be."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from click.testing import CliRunner

from agent.context import Context
from knowledge_base.settings import Settings, SettingsError, settings
from ui.cli import main
from ui.rest import default_workers


@pytest.fixture
def clean_env(monkeypatch):
    for f in fields(Settings):
        monkeypatch.delenv(Settings.variable(f.name), raising=False)
    return monkeypatch


def test_unset_variables_give_the_documented_defaults(clean_env):
    s = settings()
    assert s == Settings()
    assert (s.encoder_runtime, s.encoder_threads, s.llm_threads, s.ollama_parallel, s.api_workers) == ("onnx-int8", 1, 1, 4, None)
    assert s.home_path.name == "llm4tag" and "~" not in str(s.home_path)


def test_set_variables_are_parsed_to_their_types(clean_env):
    clean_env.setenv("LLM4TAG_ENCODER_RUNTIME", " ONNX ")
    clean_env.setenv("LLM4TAG_ENCODER_THREADS", "2")
    clean_env.setenv("LLM4TAG_OLLAMA_TIMEOUT", "2.5")
    clean_env.setenv("LLM4TAG_LLAMA_REPACK", "1")
    clean_env.setenv("LLM4TAG_API_WORKERS", "3")
    clean_env.setenv("LLM4TAG_API_QUEUE", "0")
    s = settings()
    assert (s.encoder_runtime, s.encoder_threads, s.ollama_timeout, s.llama_repack, s.api_workers, s.api_queue) == (
        "onnx",
        2,
        2.5,
        True,
        3,
        0,
    )
    assert default_workers(Context()) == 3  # the REST API reads its worker count from here


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("LLM4TAG_ENCODER_RUNTIME", "fast", r"LLM4TAG_ENCODER_RUNTIME='fast': choose one of onnx-int8, onnx, torch"),
        ("LLM4TAG_ENCODER_THREADS", "two", r"LLM4TAG_ENCODER_THREADS='two' is not a whole number"),
        ("LLM4TAG_LLM_THREADS", "0", r"LLM4TAG_LLM_THREADS must be at least 1, not '0'"),
        ("LLM4TAG_OLLAMA_TIMEOUT", "0", r"LLM4TAG_OLLAMA_TIMEOUT must be greater than 0, not '0'"),
        ("LLM4TAG_OLLAMA_CONNECT_TIMEOUT", "inf", r"LLM4TAG_OLLAMA_CONNECT_TIMEOUT='inf' is not a finite number"),
        ("LLM4TAG_API_QUEUE", "-1", r"LLM4TAG_API_QUEUE must be at least 0, not '-1'"),
        ("LLM4TAG_LLAMA_REPACK", "maybe", r"LLM4TAG_LLAMA_REPACK='maybe' is not a yes/no value"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_may_be(clean_env, variable, value, message):
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        settings()


def test_llm4tag_config_shows_the_run_and_the_process_settings(clean_env):
    clean_env.setenv("LLM4TAG_ENCODER_THREADS", "2")
    clean_env.setenv("LLM4TAG_MAX_TAGS", "3")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["run"]["max_tags"] == 3
    assert shown["process"]["LLM4TAG_ENCODER_THREADS"] == 2
    assert set(shown["process"]) == {Settings.variable(f.name) for f in fields(Settings)}


def test_llm4tag_config_shows_the_values_in_effect_for_a_knowledge_base(clean_env, trained_kb_dir):
    """Issue 27: config printed "threshold": null and "kb_dir": null instead of what a run uses."""
    from agent import Context
    from agent.runtime import runtime_for

    result = CliRunner().invoke(main, ["--kb", str(trained_kb_dir), "config"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)["run"]
    rt = runtime_for(str(trained_kb_dir))
    assert run["kb_dir"] == str(rt.kb.directory) and run["threshold"] == rt.threshold(Context(kb_dir=str(trained_kb_dir)))
    assert run["threshold"] is not None and run["backend"].startswith("llamacpp") and run["llm"] == "auto"


def test_llm4tag_config_refuses_a_bad_value_without_a_traceback(clean_env):
    clean_env.setenv("LLM4TAG_API_MAX_BODY", "1MB")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1
    assert "LLM4TAG_API_MAX_BODY='1MB' is not a whole number" in result.output and "Traceback" not in result.output


def test_the_run_configuration_parses_its_variables_with_the_same_rules(clean_env):
    clean_env.setenv("LLM4TAG_THRESHOLD", "none")
    clean_env.setenv("LLM4TAG_USE_KNOWLEDGE", "off")
    clean_env.setenv("LLM4TAG_MODE", " Single ")
    ctx = Context.from_env()
    assert (ctx.threshold, ctx.use_knowledge, ctx.mode) == (None, False, "single")
    clean_env.setenv("LLM4TAG_MAX_TAGS", "three")
    with pytest.raises(SettingsError, match="LLM4TAG_MAX_TAGS='three' is not a whole number"):
        Context.from_env()
    clean_env.setenv("LLM4TAG_MAX_TAGS", "3")
    clean_env.setenv("LLM4TAG_MODE", "both")
    with pytest.raises(SettingsError, match="LLM4TAG_MODE='both': choose one of multi, single"):
        Context.from_env()


def test_a_new_folders_store_variables_are_checked_like_every_other(clean_env):
    """Issue 27: LLM4TAG_CHROMA_PORT was read with a bare int() (a ValueError naming no variable)."""
    from knowledge_base.config import KnowledgeBaseConfig

    clean_env.setenv("LLM4TAG_CHROMA_HOST", "chroma.internal")
    clean_env.setenv("LLM4TAG_CHROMA_PORT", "8123")
    config = KnowledgeBaseConfig.from_env()
    assert (config.chroma_host, config.chroma_port, config.encoder) == ("chroma.internal", 8123, KnowledgeBaseConfig().encoder)
    clean_env.setenv("LLM4TAG_CHROMA_PORT", "eighty")
    with pytest.raises(SettingsError, match=r"LLM4TAG_CHROMA_PORT='eighty' is not a whole number"):
        KnowledgeBaseConfig.from_env()
