"""Issue 15: bad or hostile input through the façade and REST gets a clear 4xx/error, never a
traceback or a 500, and never changes what is already stored. Real knowledge base, real Chroma."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent import Context, tagging
from knowledge_base import InputError, KnowledgeBase
from ui.rest import create_app

CHEAP = dict(budget=5, max_tags=2, use_knowledge=False, max_examples=1, threshold=0.0)


@pytest.fixture(scope="module")
def kb_dir(small_kb_dir, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("hardening") / "kb"
    shutil.copytree(small_kb_dir, target, ignore=shutil.ignore_patterns(".write.lock"))
    return target


@pytest.fixture(scope="module")
def client(kb_dir):
    with TestClient(create_app(str(kb_dir), Context(**CHEAP)), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def known(kb_dir) -> list[str]:
    return sorted(KnowledgeBase(kb_dir).tag_names())[:3]


def stored(kb_dir: Path, cid: str):
    kb = KnowledgeBase(kb_dir)
    return kb.get_sample(cid), kb.graph.tags_of(cid), sorted(kb.graph.g[f"c:{cid}"]) if f"c:{cid}" in kb.graph.g else None


# ---- item 3: a known id with another text is a conflict ------------------------------------------
def test_rest_learn_with_a_known_id_and_another_text_is_409_and_changes_nothing(client, kb_dir, known):
    first = client.post("/v1/learn", json={"text": "A chess engine with a text interface", "correct": [known[0]], "id": "conflict-1"})
    assert first.status_code == 200, first.text
    before = stored(kb_dir, "conflict-1")

    clash = client.post("/v1/learn", json={"text": "A photo editor for raw camera files", "correct": [known[1]], "id": "conflict-1"})
    assert clash.status_code == 409, clash.text
    detail = clash.json()["detail"]
    assert "conflict-1" in detail and "replace" in detail and "chess engine" in detail
    assert stored(kb_dir, "conflict-1") == before

    # the same text under the same id amends the verdict
    amend = client.post("/v1/learn", json={"text": "A chess engine with a text interface", "correct": [known[2]], "id": "conflict-1"})
    assert amend.status_code == 200, amend.text
    assert KnowledgeBase(kb_dir).get_sample("conflict-1").tags == (known[2],)

    # the caller may say replace
    replaced = client.post("/v1/learn", json={"text": "A photo editor for raw camera files", "correct": [known[1]], "id": "conflict-1",
                                              "replace": True})
    assert replaced.status_code == 200, replaced.text
    sample, tags, _ = stored(kb_dir, "conflict-1")
    assert sample.text == "A photo editor for raw camera files" and tags == {known[1]: 1.0}


def test_facade_learn_refuses_to_replace_a_history_sample(kb_dir, known):
    kb = KnowledgeBase(kb_dir)
    victim = sorted(kb.collection("samples").get(include=[])["ids"])[0]
    before = stored(kb_dir, victim)
    with pytest.raises(InputError, match="already holds a different text"):
        tagging.learn("something else entirely", [known[0]], sample_id=victim, kb_dir=str(kb_dir))
    assert stored(kb_dir, victim) == before
