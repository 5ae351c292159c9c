"""The façade (agent.tagging) and the run-time holders: one encode per content, corrections as
journal appends that other processes see, files re-read only when they change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import Context, tagging
from agent.graph import NODE_ORDER
from agent.runtime import FileCache, runtime_for
from knowledge_base import KnowledgeBase, UnknownTagsError
from knowledge_base.encoder import Encoder

TEXT = (
    "A small command-line utility that converts scanned PNG and JPEG images into searchable PDF documents, "
    "with optical character recognition in several languages. Written in Python; runs in a terminal."
)


@pytest.fixture
def encoded_texts(monkeypatch):
    """Every text the real encoder embeds during a test (a spy around the real model call)."""
    seen: list[str] = []
    real = Encoder.encode

    def spy(self, texts, *args, **kwargs):
        seen.extend(texts)
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode", spy)
    return seen


def test_tag_stream_then_accept_encodes_the_text_once_and_stores_the_correction(writable_kb, encoded_texts):
    ctx = Context(kb_dir=str(writable_kb.directory), budget=10, max_tags=3, threshold=0.0)
    steps = list(tagging.tag_stream(TEXT, context=ctx))
    assert [node for node, _, _ in steps if node != "judgment"] == [
        n for n in NODE_ORDER if n not in ("prepare", "review", "record_review", "write_back")
    ]
    judged = [changes for node, changes, _ in steps if node == "judgment"]  # streamed one by one, before calibrate's own step
    assert judged and judged == steps[-1][1]["judgments"] and steps[-1][0] == "calibrate"
    result = steps[-1][2]
    assert result["text"] == TEXT and result["tags"] and result["content_id"]
    assert [c["tag"] for c in result["candidates"]] == tagging.recall(TEXT, context=ctx).tags  # the same settings everywhere

    accepted = [t["tag"] for t in result["tags"]][:2]
    learned = tagging.learn(result["text"], accepted, kb_dir=ctx.kb_dir, sample_id=result["content_id"])
    assert learned["id"] == result["content_id"] and learned["correct"] == accepted

    assert encoded_texts == [TEXT], "tagging and correcting one content must encode it exactly once"
    assert set(writable_kb.graph.tags_of(result["content_id"])) == set(accepted)

    # another process sees the correction: its sample, and the deterministic edges in the graph store
    probe = (
        "import json, sys; from knowledge_base import KnowledgeBase; kb = KnowledgeBase(sys.argv[1]); "
        "print(json.dumps({'tags': sorted(kb.graph.tags_of(sys.argv[2])), 'sample': list(kb.get_sample(sys.argv[2]).tags)}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(writable_kb.directory), result["content_id"]],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"tags": sorted(accepted), "sample": accepted}


def test_learn_refuses_unknown_tags_and_writes_nothing(writable_kb):
    count = writable_kb.collection("samples").count()
    known = sorted(writable_kb.tag_names())[0]
    with pytest.raises(UnknownTagsError) as caught:
        tagging.learn("a text about nothing in particular", [known, "no::such-tag"], ["also::missing"], kb_dir=str(writable_kb.directory))
    assert caught.value.tags == ["also::missing", "no::such-tag"]
    assert "no::such-tag" in str(caught.value) and "nothing was written" in str(caught.value)
    assert KnowledgeBase(writable_kb.directory).collection("samples").count() == count


def test_learn_dedupes_and_keeps_a_tag_from_being_both_right_and_wrong(writable_kb):
    a, b = sorted(writable_kb.tag_names())[:2]
    learned = tagging.learn("  a text with  spaces  ", [a, a], [a, b], kb_dir=str(writable_kb.directory))
    assert (learned["correct"], learned["incorrect"]) == ([a], [b])
    sample = writable_kb.get_sample(learned["id"])
    assert (sample.tags, sample.incorrect_tags) == ((a,), (b,))


def test_file_cache_rereads_only_a_changed_file(tmp_path):
    path = tmp_path / "record.json"
    reads: list[int] = []

    def load(p: Path):
        reads.append(1)
        return json.loads(p.read_text())

    cache = FileCache(path, load)
    assert cache.get() is None and reads == []  # no file: nothing to read
    path.write_text('{"model": "a"}')
    first = cache.get()
    assert first == {"model": "a"} and cache.get() is first and len(reads) == 1
    time.sleep(0.01)
    path.write_text('{"model": "bb"}')
    assert cache.get() == {"model": "bb"} and len(reads) == 2


def test_runtime_threshold_follows_the_knowledge_base_config(writable_kb):
    from dataclasses import replace

    rt = runtime_for(writable_kb.directory)
    assert rt.threshold(Context()) == 0.5  # the paper's, when nothing is tuned
    rt.kb.update_config(replace(rt.kb.config, threshold=0.37))
    assert rt.threshold(Context()) == 0.37 and rt.threshold(Context(threshold=0.9)) == 0.9


def test_explain_gathers_every_step_for_one_tag():
    candidate = {
        "tag": "x",
        "score": 0.9,
        "description": "an x",
        "paths": ["C2C2T"],
        "evidence": [{"path": "C2C2T", "score": 0.6, "via": [{"id": "s1", "similarity": 0.8}]}],
    }
    result = {
        "candidates": [candidate],
        "selection": {"tags": ["x"], "from_history": []},
        "judgments": [{"tag": "x", "p_yes": 0.7, "confidence": 0.8, "logit_yes": 1.0, "logit_no": 0.2}],
        "examples": [{"id": "s1", "similarity": 0.8, "tags": ["x"], "incorrect_tags": []}],
        "tags": [{"tag": "x", "confidence": 0.8}],
    }
    got = tagging.explain(result, "x")
    assert got["candidate"]["rank"] == 1 and got["candidate"]["evidence"] == ["C2C2T vote 0.60 via s1 (0.80)"]
    assert got["generation"] == {"kind": "chosen", "position": 1}
    assert got["judgment"]["learned"] and got["judgment"]["confidence"] == 0.8
    assert got["examples"] == [{"id": "s1", "similarity": 0.8, "marked": "correct"}] and got["final"]
    assert tagging.explain(result, "y")["candidate"] is None


def test_one_tagger_per_knowledge_base_until_the_process_registries_are_reset(small_kb_dir, fresh_process):
    """Issue 27: one Tagger per knowledge base and process, and a fixture that empties the registries."""
    from agent.runtime import runtime_for
    from agent.tagger import reset, tagger_for

    first = tagger_for(str(small_kb_dir))
    assert tagger_for(small_kb_dir) is first and first.runtime is runtime_for(str(small_kb_dir))  # however the folder is named
    assert first.context(kb_dir="/somewhere/else").kb_dir == first.kb_dir  # a run on it stays on it
    reset()
    again = tagger_for(str(small_kb_dir))
    assert again is not first and again.runtime is not first.runtime and again.kb.directory == first.kb.directory
