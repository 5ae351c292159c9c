"""The knowledge base store (knowledge_base/store.py): real MiniLM, real Chroma, real networkx."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from knowledge_base import (
    InputError,
    KnowledgeBase,
    KnowledgeBaseConfig,
    KnowledgeBaseError,
    Passage,
    Sample,
    Tag,
    read_documents,
    read_samples,
    read_tags,
    recall_candidates,
)
from knowledge_base.graph import content_node, tag_node
from knowledge_base.loaders import content_id
from knowledge_base.neighbourhood import embeddings, neighbourhood, similarity_edges

from conftest import copy_kb

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_tags(small_data_dir) -> list[Tag]:
    return read_tags(small_data_dir / "tags.tsv").records


@pytest.fixture(scope="module")
def small_samples(small_data_dir) -> list[Sample]:
    return read_samples(small_data_dir / "samples.jsonl").records


def edge_set(kb: KnowledgeBase) -> set:
    return {(frozenset((u, v)), d["kind"], d["weight"]) for u, v, d in kb.graph.to_networkx().edges(data=True)}


def det_tags(kb: KnowledgeBase, cid: str) -> set[str]:
    kb.graph.refresh()
    return set(kb.graph.tags_of(cid))


def counts(kb: KnowledgeBase) -> dict:
    s = kb.stats()
    return {k: s[k] for k in ("tags", "contents", "samples", "document_passages")} | s["graph"]


# ---- reading the session's knowledge base -------------------------------------------------


def test_stats_of_the_small_kb(small_kb, small_tags, small_samples, small_data_dir):
    passages = read_documents([small_data_dir / "docs"]).records
    stats = small_kb.stats()
    assert stats["encoder"] == "minilm"
    assert stats["store"] == "embedded chroma"
    assert stats["directory"] == str(small_kb.directory)
    assert stats["tags"] == len(small_tags) == len({t.name for t in small_tags})
    assert stats["tags_with_description"] == sum(1 for t in small_tags if t.description)
    assert stats["contents"] == stats["samples"] == len(small_samples) == 240
    assert stats["document_passages"] == len(passages) > 1
    graph = stats["graph"]
    assert graph["tag_nodes"] == len(small_tags)
    assert graph["content_nodes"] == 240
    assert graph["deterministic_edges"] == sum(len(s.tags) for s in small_samples)
    assert set(graph) == {"tag_nodes", "content_nodes", "deterministic_edges"}  # similarity edges are queries, not stored
    assert small_kb.graph.counts()["similarity_edges"] == 0
    assert stats["recall"]["delta_ct"] == 0.25 and stats["recall"]["delta_cc"] == 0.45


def test_every_history_sample_has_exactly_its_tags_as_det_edges(small_kb, small_samples):
    for s in small_samples:
        assert det_tags(small_kb, s.id) == set(s.tags), s.id
    assert small_kb.get_sample(small_samples[3].id) == small_samples[3]
    assert small_kb.get_sample("no-such-sample") is None


def test_similarity_edges_are_the_nearest_nodes_above_the_thresholds(small_kb, small_samples):
    """A content's c–t and c–c edges and a tag's c–t edges, asked of the vector index, are exactly
    what the stored embeddings give by brute force: the nearest above δ, at most as many as
    configured, annotated pairs left to their deterministic edge."""

    rc = small_kb.config.recall
    tags = sorted(small_kb.tag_names())
    contents = small_kb.collection("contents").get(include=[])["ids"]
    vec = embeddings(small_kb, [tag_node(t) for t in tags] + [content_node(c) for c in contents])
    for s in small_samples[:5]:
        node = content_node(s.id)
        edges = similarity_edges(small_kb, node)
        cos = {n: float(vec[node] @ v) for n, v in vec.items() if n != node}
        want_t = sorted((n for n in cos if n.startswith("t:")), key=lambda n: -cos[n])[: rc.max_c2t]
        want_t = {n for n in want_t if cos[n] > rc.delta_ct and n[2:] not in s.tags}
        want_c = sorted((n for n in cos if n.startswith("c:")), key=lambda n: -cos[n])[: rc.similar_contents]
        want_c = {n for n in want_c if cos[n] > rc.delta_cc}
        assert {n for n, _ in edges} == want_t | want_c, s.id
        assert all(abs(w - cos[n]) < 1e-3 for n, w in edges) and [w for _, w in edges] == sorted((w for _, w in edges), reverse=True)
    tag = tag_node(small_samples[0].tags[0])
    hits = similarity_edges(small_kb, tag, k=30)
    assert hits and all(w > rc.delta_ct and n.startswith("c:") and tag[2:] not in small_kb.graph.tags_of(n[2:]) for n, w in hits)
    assert similarity_edges(small_kb, "c:no-such-content") == [] and similarity_edges(small_kb, "t:no-such-tag") == []


def test_neighbourhood_joins_stored_annotations_and_queried_similarity(small_kb, small_samples):
    rc = small_kb.config.recall
    s = small_samples[0]
    node = content_node(s.id)
    g = neighbourhood(small_kb, node, radius=1, limit=30)
    assert {n for n, d in g[node].items() if d["kind"] == "det"} == {tag_node(t) for t in s.tags}
    sims = [(n, d["weight"]) for n, d in g[node].items() if d["kind"] == "sim"]
    assert sims and all(w > (rc.delta_ct if n.startswith("t:") else rc.delta_cc) for n, w in sims)
    assert g.nodes[node]["kind"] == "content" and all(g.nodes[tag_node(t)]["kind"] == "tag" for t in s.tags)
    assert g.number_of_nodes() <= 31
    wider = neighbourhood(small_kb, node, radius=2, limit=30)
    assert set(g.nodes) <= set(wider.nodes) and wider.number_of_nodes() > g.number_of_nodes()
    assert neighbourhood(small_kb, "c:no-such-content").number_of_nodes() == 0


def test_similarity_edges_an_older_llm4tag_stored_are_removed_on_open(writable_kb, small_samples):
    s = small_samples[0]
    writable_kb.graph.write([{"op": "edge", "u": content_node(s.id), "v": content_node(small_samples[1].id), "kind": "sim", "w": 0.5}])
    assert writable_kb.graph_counts()["stored_similarity_edges"] == 1
    before = writable_kb.graph_counts()["deterministic_edges"]
    again = KnowledgeBase(writable_kb.directory)
    assert "stored_similarity_edges" not in again.graph_counts() and writable_kb.graph_counts() == again.graph_counts()
    assert again.graph_counts()["deterministic_edges"] == before and det_tags(again, s.id) == set(s.tags)


def test_get_tags_returns_stored_fields(small_kb, small_tags):
    wanted = [small_tags[0].name, small_tags[5].name, "not-a-tag"]
    got = small_kb.get_tags(wanted)
    assert got == {small_tags[0].name: small_tags[0], small_tags[5].name: small_tags[5]}
    assert small_kb.get_tags([]) == {}
    assert small_kb.has_tag(small_tags[0].name) and not small_kb.has_tag("not-a-tag")
    assert small_kb.tag_names() == {t.name for t in small_tags}


def test_search_tags_by_substring(small_kb):
    hits = small_kb.search_tags("shared-lib", k=5)
    assert hits[0].id == "role::shared-lib" and hits[0].similarity == 1.0
    assert len(hits) == 5
    assert all(h.similarity < 1.0 for h in hits[1:])  # the rest come by meaning
    python = small_kb.search_tags("PYTHON", k=4)
    assert {h.id for h in python[:2]} == {"implemented-in::python", "devel::lang:python"}
    assert [h.similarity for h in python[:2]] == [1.0, 1.0]
    # the readable form of a name matches too ("role::shared-lib" reads "role: shared-lib")
    assert small_kb.search_tags("role: shared", k=3)[0].id == "role::shared-lib"
    assert len({h.id for h in small_kb.search_tags("lib", k=50)}) == 50  # no duplicates between the two parts


def test_search_tags_by_meaning(small_kb):
    hits = small_kb.search_tags("graphics picture editing", k=5)
    assert len(hits) == 5
    assert all(h.similarity < 1.0 for h in hits)  # no name contains the phrase
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert {"use::editing", "works-with::image", "works-with::image:vector", "works-with::image:raster"} & {h.id for h in hits}
    with pytest.raises(InputError):
        small_kb.search_tags("   ")


def test_search_documents(small_kb):
    vector, _ = small_kb.encoder.encode_one("debtags guide")
    hits = small_kb.search_documents(vector, 3)
    assert len(hits) == 3
    assert all(h.metadata["source"] == "guide.md" and h.id.startswith("guide.md#") for h in hits)


def test_encoder_reports_truncation(small_kb):
    enc = small_kb.encoder.encode(["short text", "word " * 2000])
    assert enc.truncated == [False, True]
    assert enc.vectors.shape == (2, small_kb.encoder.dim)
    assert abs(float((enc.vectors[1] ** 2).sum()) - 1.0) < 1e-4


# ---- opening --------------------------------------------------------------------------------


def test_reopening_with_another_encoder_is_refused(small_kb_dir):
    before = (small_kb_dir / "config.json").read_text()
    with pytest.raises(KnowledgeBaseError, match="built with encoder 'minilm'"):
        KnowledgeBase(small_kb_dir, KnowledgeBaseConfig(encoder="BAAI/bge-small-en-v1.5"))
    assert (small_kb_dir / "config.json").read_text() == before
    same = KnowledgeBase(small_kb_dir, KnowledgeBaseConfig(encoder="minilm"))
    assert same.config.encoder == "minilm"


def test_new_directory_saves_its_config(tmp_path):
    kb = KnowledgeBase(tmp_path / "new", KnowledgeBaseConfig(collection_prefix="other"))
    saved = json.loads((tmp_path / "new" / "config.json").read_text())
    assert saved["collection_prefix"] == "other" and saved["encoder"] == "minilm"
    assert KnowledgeBase(tmp_path / "new").config.collection_prefix == "other"
    assert kb.stats()["tags"] == 0


def test_corrupt_config_is_reported(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(KnowledgeBaseError, match="not a valid llm4tag config"):
        KnowledgeBase(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"encoder": "minilm", "colour": "red"}))
    with pytest.raises(KnowledgeBaseError, match="unknown settings"):
        KnowledgeBase(tmp_path)


# ---- loading tags and samples -------------------------------------------------------------


def test_add_tags_twice_changes_nothing(writable_kb, small_tags):
    before = counts(writable_kb)
    edges = edge_set(writable_kb)
    chunk = small_tags[:12]
    report = writable_kb.add_tags(chunk)
    assert (report.added, report.updated, report.edges) == (0, 12, 0)
    again = writable_kb.add_tags(chunk)
    assert (again.added, again.updated, again.edges) == (0, 12, 0)
    assert counts(writable_kb) == before
    assert edge_set(writable_kb) == edges
    assert writable_kb.get_tags([chunk[0].name])[chunk[0].name] == chunk[0]


def test_add_tags_updates_descriptions_and_links_new_tags(writable_kb, small_samples):
    old = writable_kb.get_tags(["role::shared-lib"])["role::shared-lib"].description  # read (and kept in memory) first
    assert old != "A new description"
    report = writable_kb.add_tags([Tag("role::shared-lib", "A new description"), Tag("brand-new", "Vector optimized functions for SIMD")])
    assert (report.added, report.updated) == (1, 1)
    assert writable_kb.get_tags(["role::shared-lib"])["role::shared-lib"].description == "A new description"
    assert writable_kb.stats()["tags"] == 217
    # a new tag is a node at once, and its similarity edges reach the contents it is similar to, above δ_ct
    assert writable_kb.graph.has_node(tag_node("brand-new")) and report.edges == 0
    linked = dict(similarity_edges(writable_kb, tag_node("brand-new"), k=20))
    assert content_node(small_samples[0].id) in linked  # "vector optimized functions ..." (libvolk)
    assert all(w > writable_kb.config.recall.delta_ct for w in linked.values())
    # a write by another instance (another process, as far as this one knows) is seen too
    KnowledgeBase(writable_kb.directory).add_tags([Tag("role::shared-lib", "Changed elsewhere")])
    assert writable_kb.get_tags(["role::shared-lib", "brand-new", "no-such-tag"]) == {
        "role::shared-lib": Tag("role::shared-lib", "Changed elsewhere"),
        "brand-new": Tag("brand-new", "Vector optimized functions for SIMD"),
    }


def test_add_samples_twice_is_idempotent(writable_kb, small_samples):
    before = counts(writable_kb)
    edges = edge_set(writable_kb)
    report = writable_kb.add_samples(small_samples[:20])
    assert (report.added, report.updated, report.skipped) == (0, 20, 0)
    assert counts(writable_kb) == before
    assert edge_set(writable_kb) == edges

    fresh = [
        Sample("new-1", "A command line tool to resize and convert photographs", ("interface::commandline",)),
        Sample("new-2", "Python library for parsing configuration files", ("devel::library", "implemented-in::python")),
    ]
    first = writable_kb.add_samples(fresh)
    assert (first.added, first.updated) == (2, 0)
    after_first = counts(writable_kb)
    edges_first = edge_set(writable_kb)
    second = writable_kb.add_samples(fresh)
    assert (second.added, second.updated) == (0, 2)
    assert counts(writable_kb) == after_first
    assert edge_set(writable_kb) == edges_first
    assert after_first["samples"] == after_first["contents"] == 242
    assert after_first["content_nodes"] == 242
    assert after_first["deterministic_edges"] == before["deterministic_edges"] + 3
    assert det_tags(writable_kb, "new-2") == {"devel::library", "implemented-in::python"}


def test_reloading_a_sample_with_other_tags_replaces_its_det_edges(writable_kb, small_samples):
    s = small_samples[0]
    det_before = writable_kb.stats()["graph"]["deterministic_edges"]
    writable_kb.add_samples([Sample(s.id, s.text, ("devel::library", "implemented-in::c"), ("role::shared-lib",))])
    assert det_tags(writable_kb, s.id) == {"devel::library", "implemented-in::c"}
    assert writable_kb.get_sample(s.id) == Sample(s.id, s.text, ("devel::library", "implemented-in::c"), ("role::shared-lib",))
    assert writable_kb.stats()["graph"]["deterministic_edges"] == det_before - len(s.tags) + 2


def test_unknown_tags_skip(writable_kb):
    before = counts(writable_kb)
    samples = [
        Sample("u-1", "a text manipulation utility", ("devel::library", "no-such-tag"), ("another-unknown",)),
        Sample("u-2", "only unknown tags here", ("no-such-tag",)),
    ]
    report = writable_kb.add_samples(samples, unknown_tags="skip")
    assert (report.added, report.skipped) == (1, 1)
    assert any("ignored 3 uses of 2 tags" in w for w in report.warnings)
    assert writable_kb.get_sample("u-1") == Sample("u-1", "a text manipulation utility", ("devel::library",), ())
    assert writable_kb.get_sample("u-2") is None
    assert not writable_kb.has_tag("no-such-tag")
    after = counts(writable_kb)
    assert (after["samples"], after["tags"], after["deterministic_edges"]) == (
        before["samples"] + 1,
        before["tags"],
        before["deterministic_edges"] + 1,
    )


def test_unknown_tags_add(writable_kb):
    before = counts(writable_kb)
    report = writable_kb.add_samples([Sample("a-1", "a tool to brew coffee", ("devel::library", "coffee"), ("tea",))], unknown_tags="add")
    assert report.added == 1
    assert any("added 2 tags" in w for w in report.warnings)
    assert writable_kb.has_tag("coffee") and writable_kb.has_tag("tea")
    assert det_tags(writable_kb, "a-1") == {"devel::library", "coffee"}
    assert writable_kb.get_sample("a-1").incorrect_tags == ("tea",)
    assert counts(writable_kb)["tags"] == before["tags"] + 2


def test_unknown_tags_error_loads_nothing(writable_kb):
    before = counts(writable_kb)
    edges = edge_set(writable_kb)
    samples = [
        Sample("e-1", "perfectly fine sample", ("devel::library",)),
        Sample("e-2", "a sample with a bad tag", ("nope",)),
    ]
    with pytest.raises(InputError, match="1 tags are not in the tag repository: 'nope'"):
        writable_kb.add_samples(samples, unknown_tags="error")
    assert counts(writable_kb) == before
    assert edge_set(writable_kb) == edges
    assert writable_kb.get_sample("e-1") is None


def test_empty_repository(empty_kb):
    samples = [Sample("s", "some text", ("x",))]
    for policy in ("skip", "error"):
        with pytest.raises(InputError, match="tag repository is empty"):
            empty_kb.add_samples(samples, unknown_tags=policy)
    assert empty_kb.stats()["samples"] == 0
    report = empty_kb.add_samples(samples, unknown_tags="add")
    assert report.added == 1
    assert empty_kb.tag_names() == {"x"}
    assert det_tags(empty_kb, "s") == {"x"}


def test_det_edges_are_never_overwritten_by_similarity(writable_kb):
    tag = writable_kb.get_tags(["role::shared-lib"])["role::shared-lib"]
    text = tag.embedding_text()  # cosine 1.0 with the tag: it would get a similarity edge
    writable_kb.add_samples([Sample("det-1", text, ("role::shared-lib",))])
    node = content_node("det-1")
    g = writable_kb.graph.to_networkx()
    assert g[node][tag_node("role::shared-lib")] == {"kind": "det", "weight": 1.0}
    sims = {n for n, _ in similarity_edges(writable_kb, node) if n.startswith("t:")}
    assert sims and tag_node("role::shared-lib") not in sims  # other similar tags do get similarity edges
    writable_kb.insert_content(text + " (again)", tags=["role::shared-lib"], cid="det-2")
    assert (
        writable_kb.graph.subgraph([content_node("det-2"), tag_node("role::shared-lib")]).edges[
            content_node("det-2"), tag_node("role::shared-lib")
        ]["kind"]
        == "det"
    )
    writable_kb.add_tags([tag])  # updating the tag does not touch the edge
    writable_kb.add_samples([Sample("det-3", "unrelated text", ("devel::library",))])
    assert writable_kb.graph.to_networkx()[node][tag_node("role::shared-lib")]["kind"] == "det"
    assert KnowledgeBase(writable_kb.directory).graph.to_networkx()[node][tag_node("role::shared-lib")]["kind"] == "det"


def test_add_samples_reports_truncation(writable_kb):
    huge = "An enormous package description about network servers. " * 800
    report = writable_kb.add_samples([Sample("huge", huge, ("devel::library",)), Sample("small", "a tiny text", ("devel::library",))])
    assert (report.added, report.truncated) == (2, 1)
    assert "1 truncated to the encoder's window" in report.summary()
    assert writable_kb.get_sample("huge").text == huge
    cid = writable_kb.insert_content(huge + " more", tags=["devel::library"])
    assert det_tags(writable_kb, cid) == {"devel::library"}


def test_progress_callback(writable_kb):
    calls = []
    writable_kb.add_samples(
        [Sample(f"p-{i}", f"progress sample {i}", ("devel::library",)) for i in range(3)], progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(3, 3)]


# ---- growing: write-back, feedback, removal -----------------------------------------------


def test_insert_content_adds_similarity_and_det_edges(writable_kb, small_samples):
    rc = writable_kb.config.recall
    before = counts(writable_kb)
    base = small_samples[0]  # libvolk: "vector optimized functions ..."
    text = base.text + " It also ships benchmarks."
    cid = writable_kb.insert_content(text, tags=["devel::library", "devel::library", "hardware::embedded"])
    assert cid == content_id(text)
    node = content_node(cid)
    assert det_tags(writable_kb, cid) == {"devel::library", "hardware::embedded"}
    sims = dict(similarity_edges(writable_kb, node))  # the index finds the new content at once
    assert sims[content_node(base.id)] > 0.9
    assert node in dict(similarity_edges(writable_kb, content_node(base.id)))
    c2t = [w for n, w in sims.items() if n.startswith("t:")]
    c2c = [w for n, w in sims.items() if n.startswith("c:")]
    assert 0 < len(c2t) <= rc.max_c2t and all(w > rc.delta_ct for w in c2t)
    assert 0 < len(c2c) <= rc.similar_contents and all(w > rc.delta_cc for w in c2c)
    after = counts(writable_kb)
    assert after["contents"] == before["contents"] + 1
    assert after["samples"] == before["samples"]  # a write-back is not a training sample
    assert after["deterministic_edges"] == before["deterministic_edges"] + 2
    got = writable_kb.collection("contents").get(ids=[cid], include=["metadatas"])["metadatas"][0]
    assert got["origin"] == "writeback" and json.loads(got["tags"]) == ["devel::library", "hardware::embedded"]
    # inserting again with other final tags replaces the deterministic edges
    assert writable_kb.insert_content(text, tags=["devel::library"]) == cid
    assert det_tags(writable_kb, cid) == {"devel::library"}
    assert counts(writable_kb)["contents"] == before["contents"] + 1


def test_write_back_is_reachable_through_c2c2t(writable_kb, small_samples):
    base = small_samples[0]
    cid = writable_kb.insert_content(base.text + " Written back.", tags=["security::cryptography"])
    result = recall_candidates(writable_kb, base.text + " A query.", exclude_ids=[base.id])
    cand = next(c for c in result.candidates if c.tag == "security::cryptography")
    assert cid in [v["id"] for v in cand.evidence_for("C2C2T").via]


def test_insert_content_rejects_unknown_tags_and_empty_text(writable_kb):
    before = counts(writable_kb)
    with pytest.raises(InputError, match="unknown tags \\['made-up'\\]"):
        writable_kb.insert_content("some content", tags=["devel::library", "made-up"])
    with pytest.raises(InputError):
        writable_kb.insert_content("  \n ", tags=["devel::library"])
    assert counts(writable_kb) == before


def test_insert_content_without_tags(writable_kb):
    cid = writable_kb.insert_content("an untagged content about compilers", cid="plain")
    assert cid == "plain"
    assert det_tags(writable_kb, "plain") == set()
    assert content_node("plain") in writable_kb.graph.to_networkx()


def test_record_feedback_and_get_sample(writable_kb):
    before = counts(writable_kb)
    text = "A daemon that monitors disk health and sends mail"
    cid = writable_kb.record_feedback(text, correct=["admin::monitoring", "role::program"], incorrect=["game::rpg", "role::program"])
    assert cid == content_id(text)
    assert writable_kb.get_sample(cid) == Sample(cid, text, ("admin::monitoring", "role::program"), ("game::rpg",))
    assert det_tags(writable_kb, cid) == {"admin::monitoring", "role::program"}  # incorrect tags are no edges
    meta = writable_kb.collection("samples").get(ids=[cid], include=["metadatas"])["metadatas"][0]
    assert meta["origin"] == "feedback"
    after = counts(writable_kb)
    assert (after["samples"], after["contents"]) == (before["samples"] + 1, before["contents"] + 1)
    assert after["deterministic_edges"] == before["deterministic_edges"] + 2
    # a later verdict on the same content replaces the earlier one
    writable_kb.record_feedback(text, correct=["admin::monitoring"], incorrect=["role::program"], cid=cid)
    assert writable_kb.get_sample(cid) == Sample(cid, text, ("admin::monitoring",), ("role::program",))
    assert det_tags(writable_kb, cid) == {"admin::monitoring"}
    assert counts(writable_kb)["samples"] == before["samples"] + 1
    only_wrong = writable_kb.record_feedback("a text that was tagged badly", correct=[], incorrect=["game::rpg"])
    assert writable_kb.get_sample(only_wrong).tags == ()


def test_record_feedback_rejects_bad_input(writable_kb):
    before = counts(writable_kb)
    with pytest.raises(InputError, match="unknown tags"):
        writable_kb.record_feedback("text", correct=["nope"])
    with pytest.raises(InputError, match="at least one"):
        writable_kb.record_feedback("text", correct=[], incorrect=[])
    with pytest.raises(InputError):
        writable_kb.record_feedback("", correct=["role::program"])
    assert counts(writable_kb) == before


def test_remove_sample(writable_kb, small_samples):
    before = counts(writable_kb)
    edges = edge_set(writable_kb)
    cid = writable_kb.record_feedback("a feedback to undo", correct=["role::program"])
    writable_kb.remove_sample(cid)
    assert writable_kb.get_sample(cid) is None
    assert content_node(cid) not in writable_kb.graph.to_networkx()
    assert counts(writable_kb) == before
    assert edge_set(writable_kb) == edges
    victim = small_samples[1]
    writable_kb.remove_sample(victim.id)
    writable_kb.remove_sample("never-existed")
    after = counts(writable_kb)
    assert (after["samples"], after["contents"], after["content_nodes"]) == (239, 239, 239)
    assert after["deterministic_edges"] == before["deterministic_edges"] - len(victim.tags)
    reopened = KnowledgeBase(writable_kb.directory)
    assert content_node(victim.id) not in reopened.graph.to_networkx()
    assert reopened.get_sample(victim.id) is None


# ---- documents ----------------------------------------------------------------------------


def test_add_documents_replaces_a_reloaded_source(writable_kb, small_data_dir):
    passages = read_documents([small_data_dir / "docs"]).records
    n = len(passages)
    report = writable_kb.add_documents(passages)
    assert (report.added, report.updated, report.unchanged) == (0, 0, n)  # the same file again: nothing written
    assert writable_kb.stats()["document_passages"] == n
    shorter = [Passage("guide.md#0", "guide.md", "A rewritten guide with one passage.")]
    report = writable_kb.add_documents(shorter)
    assert (report.added, report.updated, report.removed) == (0, 1, n - 1)
    docs = writable_kb.collection("documents").get(include=["documents"])
    assert docs["ids"] == ["guide.md#0"] and docs["documents"] == ["A rewritten guide with one passage."]
    other = writable_kb.add_documents(
        [Passage("rules.md#0", "rules.md", "Tag the language."), Passage("rules.md#1", "rules.md", "Tag the role.")]
    )
    assert (other.added, other.updated) == (2, 0)
    assert writable_kb.stats()["document_passages"] == 3


# ---- reopening ----------------------------------------------------------------------------


def test_reopened_directory_sees_everything(writable_kb):
    writable_kb.add_tags([Tag("reopen-tag", "a tag added before reopening")])
    fb = writable_kb.record_feedback("feedback before reopening", correct=["reopen-tag"], incorrect=["role::program"])
    wb = writable_kb.insert_content("written back before reopening", tags=["reopen-tag"])
    writable_kb.add_documents([Passage("new.md#0", "new.md", "A new rule.")])
    expected_counts = counts(writable_kb)
    expected_edges = edge_set(writable_kb)
    reopened = KnowledgeBase(writable_kb.directory)
    assert counts(reopened) == expected_counts
    assert edge_set(reopened) == expected_edges
    assert reopened.has_tag("reopen-tag")
    assert reopened.get_sample(fb) == Sample(fb, "feedback before reopening", ("reopen-tag",), ("role::program",))
    assert det_tags(reopened, wb) == {"reopen-tag"}
    assert reopened.search_tags("reopen-tag", k=1)[0].id == "reopen-tag"


def test_a_second_instance_sees_writes_after_refresh(writable_kb):
    other = KnowledgeBase(writable_kb.directory)
    writable_kb.record_feedback("seen by the other instance", correct=["role::program"], cid="seen")
    assert other.tag_names() == writable_kb.tag_names()  # tag_names refreshes the graph
    assert set(other.graph.tags_of("seen")) == {"role::program"}
    assert other.get_sample("seen").tags == ("role::program",)


# ---- concurrency --------------------------------------------------------------------------

TINY_TAGS = [
    Tag("fruit", "apples, pears and other fruit"),
    Tag("vehicle", "cars, trucks and bicycles"),
    Tag("music", "songs and instruments"),
]

CHILD = r"""
import os, sys, time
from pathlib import Path
from knowledge_base import KnowledgeBase, Sample
directory, who, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
kb = KnowledgeBase(directory)
kb.encoder  # load the model before the start signal, so the writes overlap
Path(go.parent / f"ready-{who}").touch()
deadline = time.time() + 120
while not go.exists() and time.time() < deadline:
    time.sleep(0.02)
for i in range(n):
    tags = ("fruit",) if i % 2 else ("vehicle", "music")
    kb.add_samples([Sample(f"{who}-{i}", f"{who} writes sample {i} about apples and trucks", tags)])
print("ok", who)
"""


def expected_det(who: str, n: int) -> dict[str, set[str]]:
    return {f"{who}-{i}": ({"fruit"} if i % 2 else {"vehicle", "music"}) for i in range(n)}


def test_two_processes_write_the_same_kb(tmp_path):
    seed = KnowledgeBase(tmp_path / "seed")
    seed.add_tags(TINY_TAGS)
    directory = tmp_path / "kb"
    shutil.copytree(tmp_path / "seed", directory, ignore=shutil.ignore_patterns(".write.lock"))
    # a long-lived reader (like the app) that has the knowledge base open while others write
    reader = KnowledgeBase(directory)
    probe, _ = reader.encoder.encode_one("B writes sample 3 about apples and trucks")
    assert reader.similar_contents(probe, 8) == []
    go = tmp_path / "go"
    n = 4
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False", OMP_NUM_THREADS="1")
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory), who, str(n), str(go)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("A", "B")
    ]
    try:
        deadline = time.time() + 120
        while not all((tmp_path / f"ready-{w}").exists() for w in "AB"):
            assert all(c.poll() is None for c in children), [c.communicate() for c in children]
            assert time.time() < deadline, "the writer processes did not start"
            time.sleep(0.05)
        go.touch()
        outputs = [c.communicate(timeout=180) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
    for c, (out, err) in zip(children, outputs):
        assert c.returncode == 0, err[-3000:]
        assert out.startswith("ok")

    kb = KnowledgeBase(directory)
    stats = kb.stats()
    assert (stats["samples"], stats["contents"], stats["tags"]) == (2 * n, 2 * n, 3)
    assert stats["graph"]["content_nodes"] == 2 * n
    want = expected_det("A", n) | expected_det("B", n)
    assert stats["graph"]["deterministic_edges"] == sum(len(t) for t in want.values())
    for cid, tags in want.items():
        assert set(kb.graph.tags_of(cid)) == tags, cid
        assert kb.get_sample(cid).tags == tuple(sorted(tags, key=["vehicle", "music", "fruit"].index)), cid
    vector, _ = kb.encoder.encode_one("B writes sample 3 about apples and trucks")
    found = {h.id for h in kb.similar_contents(vector, 2 * n)}
    assert found == set(want)  # every process's contents are searchable
    # the reader that was open all along sees the other processes' writes too
    assert {h.id for h in reader.similar_contents(probe, 2 * n)} == set(want)
    assert set(reader.graph.tags_of("A-1")) == {"fruit"}


def test_two_threads_write_the_same_kb(tmp_path):
    directory = tmp_path / "kb"
    KnowledgeBase(directory).add_tags(TINY_TAGS)
    n = 4
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(who: str) -> None:
        try:
            kb = KnowledgeBase(directory)  # one object per thread, as two app sessions would have
            start.wait(timeout=30)
            for i in range(n):
                tags = ("fruit",) if i % 2 else ("vehicle", "music")
                kb.add_samples([Sample(f"{who}-{i}", f"{who} writes sample {i} about apples and trucks", tags)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(who,)) for who in ("T1", "T2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    kb = KnowledgeBase(directory)
    stats = kb.stats()
    assert (stats["samples"], stats["contents"], stats["graph"]["content_nodes"]) == (2 * n, 2 * n, 2 * n)
    want = expected_det("T1", n) | expected_det("T2", n)
    assert stats["graph"]["deterministic_edges"] == sum(len(t) for t in want.values())
    for cid, tags in want.items():
        assert set(kb.graph.tags_of(cid)) == tags, cid


def test_loads_encode_outside_the_write_lock_and_a_writer_never_holds_up_readers(
    writable_kb, small_samples, trained_kb_dir, tmp_path, monkeypatch
):
    """Issue 31 (4): a large load-docs encoded 77,713 passages inside the write lock; a learn waiting
    for it held the lock every /v1/tag needs (``classifier()``), so one writer froze all readers."""
    from knowledge_base import Passage
    from knowledge_base.encoder import Encoder

    real = Encoder.encode
    held: list[bool] = []

    def encode_watching_the_lock(self, texts, *args, **kwargs):
        held.append(writable_kb._file_lock.is_locked)
        return real(self, texts, *args, **kwargs)

    with monkeypatch.context() as patched:  # the real encoder, watched (on the class: the shared instance is left as it was)
        patched.setattr(Encoder, "encode", encode_watching_the_lock)
        writable_kb.add_documents([Passage(id=f"p{i}", source="guide.md", text=f"Passage {i} about packaging tools.") for i in range(300)])
        writable_kb.add_samples(small_samples[:10])
        writable_kb.add_tags([Tag("new::tag", "A tag added by the test")])
    assert held and not any(held), held
    assert writable_kb.collection("documents").get(ids=["p0", "p299"], include=[])["ids"] == ["p0", "p299"]

    # another process holds the lock (a long load) and a learn here waits for it: readers still answer
    from agent import Context, tagging
    from agent.tagger import tagger_for

    fast = Context(kb_dir=str(copy_kb(trained_kb_dir, tmp_path / "trained")), use_generation=False, use_calibration=False)
    tagging.tag("warm up the encoder and the runtime", context=fast)
    kb = tagger_for(fast.kb_dir).kb  # the instance tagging reads through
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; FileLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
            str(kb.directory / ".write.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"

        def learn_waiting():
            with kb.write_lock():  # while it waits for the other process, it holds this process's writer lock
                pass

        waiting = threading.Thread(target=learn_waiting, daemon=True)
        waiting.start()
        deadline = time.monotonic() + 120
        while kb._thread_lock.acquire(blocking=False):  # until the learn holds this process's writer lock (it waits for the file lock)
            kb._thread_lock.release()
            assert time.monotonic() < deadline, "the learn never took the writer lock"
            time.sleep(0.05)
        answered: list[dict] = []
        reader = threading.Thread(target=lambda: answered.append(tagging.tag("An editor for vector drawings", context=fast)), daemon=True)
        reader.start()
        reader.join(100)  # under the lock's 120 s timeout: before the fix the reader waited for the learn
        assert answered and answered[0]["candidates"], "a reader waited behind a writer"
    finally:
        holder.kill()
        holder.wait()
    waiting.join(60)


def test_stats_names_what_a_halfway_write_left_and_rebuild_graph_repairs_it(writable_kb, small_samples):
    """Issue 31 (3, 11): a write stopped by a full disk or a kill left samples with no content and
    no graph node, which kb stats did not report and kb rebuild-graph did not repair."""
    sid = small_samples[0].id
    writable_kb.collection("contents").delete(ids=[sid])  # what a write that stopped after the samples store leaves
    vector = writable_kb.collection("samples").get(ids=[small_samples[1].id], include=["embeddings"])["embeddings"][0]
    writable_kb.collection("contents").upsert(
        ids=["orphan"], embeddings=[vector], documents=["An orphan content"], metadatas=[{"tags": "[]"}]
    )
    problems = writable_kb.stats(check=True)["problems"]
    assert any(p.startswith("1 samples have no content entry") and "rebuild-graph" in p for p in problems), problems
    assert any(p.startswith("1 contents have no graph node") for p in problems), problems
    assert "problems" not in writable_kb.stats() or not any("halfway" in p for p in writable_kb.stats()["problems"])  # not checked
    counts = KnowledgeBase(writable_kb.directory, load_graph=False).rebuild_graph()
    assert counts["restored_contents"] == 1
    fresh = KnowledgeBase(writable_kb.directory)
    assert not any("halfway" in p for p in fresh.stats(check=True).get("problems", []))
    assert content_node(sid) in fresh.graph.to_networkx() and content_node("orphan") in fresh.graph.to_networkx()
    assert {tag_node(t) for t in small_samples[0].tags} <= set(fresh.graph.to_networkx()[content_node(sid)])
