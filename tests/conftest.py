"""Shared fixtures: real MiniLM embeddings, real Chroma, real networkx — on small data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowledge_base import KnowledgeBase, read_samples, read_tags  # noqa: E402
from knowledge_base.demo import DEMO_DATA  # noqa: E402

SMALL_SAMPLES = 240

# The fast tier, `pytest -m "not slow"`: the real encoder, Chroma and graph, and the no-LLM path, in
# about three minutes on two cores. Every other module — the embedded LLM, training, browsers,
# servers and worker processes, whole-pipeline and hostile-input runs — is marked slow here, so a
# new module starts in the full suite until it is listed.
FAST_MODULES = {
    "test_architecture",
    "test_attribution",
    "test_documents",
    "test_encoder",
    "test_graph",
    "test_graph_safety",
    "test_hardening",
    "test_hierarchy",
    "test_llm_ollama",
    "test_loaders",
    "test_metrics",
    "test_read_only_kb",
    "test_recall",
    "test_routing",
    "test_settings",
    "test_skos",
    "test_store",
    "test_surfaces_agree",
    "test_tag_changes",
    "test_ui_logic",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] not in FAST_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """A tag repository and history cut from the bundled demo data (debtags)."""
    d = tmp_path_factory.mktemp("small-data")
    samples = [json.loads(l) for l in (DEMO_DATA / "samples.jsonl").read_text(encoding="utf-8").splitlines()[:SMALL_SAMPLES]]
    used = {t for s in samples for t in s["tags"]}
    lines = (DEMO_DATA / "tags.tsv").read_text(encoding="utf-8").splitlines()
    kept = [lines[0]] + [l for l in lines[1:] if l.split("\t")[0] in used]
    (d / "tags.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    (d / "docs").mkdir()
    (d / "docs" / "guide.md").write_text((DEMO_DATA / "docs" / "debtags-guide.md").read_text(encoding="utf-8"), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def small_kb_dir(small_data_dir, tmp_path_factory) -> Path:
    """A knowledge base built once per test session; tests that write must copy it (see ``small_kb``)."""
    from knowledge_base import read_documents

    d = tmp_path_factory.mktemp("small-kb")
    kb = KnowledgeBase(d)
    kb.add_tags(read_tags(small_data_dir / "tags.tsv").records)
    kb.add_samples(read_samples(small_data_dir / "samples.jsonl").records)
    kb.add_documents(read_documents([small_data_dir / "docs"]).records)
    return d


@pytest.fixture(scope="session")
def small_kb(small_kb_dir) -> KnowledgeBase:
    """Read-only use: the session's knowledge base. Do not write to it."""
    return KnowledgeBase(small_kb_dir)


def copy_kb(source: Path, target: Path) -> Path:
    """A copy of a knowledge base folder (without its write lock) that the copier may change."""
    import shutil

    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".write.lock"))
    return target


@pytest.fixture
def writable_kb(small_kb_dir, tmp_path) -> KnowledgeBase:
    """A private copy of the small knowledge base that a test may change."""
    return KnowledgeBase(copy_kb(small_kb_dir, tmp_path / "kb"))


@pytest.fixture(scope="module")
def kb_dir(small_kb_dir, tmp_path_factory, request) -> Path:
    """A copy of the small knowledge base shared by one test module, which may write to it."""
    return copy_kb(small_kb_dir, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "kb")


@pytest.fixture
def empty_kb(tmp_path) -> KnowledgeBase:
    return KnowledgeBase(tmp_path / "empty-kb")


@pytest.fixture(scope="session")
def trained_kb_dir(small_kb_dir, tmp_path_factory) -> Path:
    """A copy of the small knowledge base with its learned recall path (classifier + recall ranker)
    trained once per session; read-only use."""
    import shutil

    from knowledge_base.learned_recall import train_learned_recall

    target = tmp_path_factory.mktemp("trained") / "kb"
    shutil.copytree(small_kb_dir, target, ignore=shutil.ignore_patterns(".write.lock"))
    train_learned_recall(KnowledgeBase(target))
    return target


@pytest.fixture(scope="module")
def trained_kb_copy(trained_kb_dir, tmp_path_factory, request) -> Path:
    """A copy of the trained knowledge base shared by one test module, which may change it (add a
    fitted fusion, tag and cache in it)."""
    return copy_kb(trained_kb_dir, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "-trained") / "kb")


@pytest.fixture
def fresh_process():
    """The process's registries (Taggers and Runtimes, LLM backends, retry failures) emptied before
    and after the test: it opens every knowledge base afresh, as a new process would."""
    from agent.tagger import reset

    reset()
    yield
    reset()
