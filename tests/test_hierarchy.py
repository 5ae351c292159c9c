"""The tag tree (issue 29, 3): the small knowledge base's debtags tags under their facets, loaded
through the real vocabulary reader; the ranker retrained with the tree's features, results that
show each tag's path, and an answer made to agree with the tree — on the real encoder, Chroma,
omikuji and ranker."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from agent import Context, tag
from agent.confidence import rank_tags, rethreshold
from agent.explanation import explain
from agent.results import tag_result
from knowledge_base import KnowledgeBase, Tag, read_tags
from knowledge_base.hierarchy import FAMILY_FEATURES, consistent, family_features, path
from knowledge_base.learned_recall import train_learned_recall
from knowledge_base.recall import recall_candidates

TEXT = "A chess engine with a graphical board, written in C++, that plays against you and analyses games."


@pytest.fixture(scope="module")
def tree_kb(trained_kb_copy, tmp_path_factory):
    """The trained copy with its vocabulary reloaded under facets (``role::program`` under ``role``), retrained."""
    kb = KnowledgeBase(trained_kb_copy)
    rows = [(t.name, t.description) for t in kb.get_tags(sorted(kb.tag_names())).values()]
    facets = sorted({name.split("::")[0] for name, _ in rows if "::" in name})
    file = tmp_path_factory.mktemp("tree") / "tree.tsv"
    with open(file, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter="\t")
        out.writerow(["tag", "description", "parent"])
        out.writerows([(facet, f"the {facet} facet", "") for facet in facets])
        out.writerows([(name, description, name.split("::")[0] if "::" in name else "") for name, description in rows])
    parsed = read_tags(file)
    assert not parsed.problems
    kb.add_tags(parsed.records)
    config = json.loads((trained_kb_copy / "config.json").read_text())
    assert config["hierarchy_features"] is False  # off by default (bench/hierarchy.py found no gain on debtags)
    (trained_kb_copy / "config.json").write_text(json.dumps({**config, "hierarchy_features": True}))
    train_learned_recall(KnowledgeBase(trained_kb_copy))
    return trained_kb_copy


def test_the_tree_is_read_from_the_vocabulary_and_a_flat_repository_has_none(tree_kb, kb_dir):
    parents = KnowledgeBase(tree_kb).hierarchy()
    assert parents["role::program"] == "role" and "role" not in parents and len(parents) > 20
    assert all("::" in child and child.split("::")[0] == parent for child, parent in parents.items())
    assert KnowledgeBase(kb_dir).hierarchy() == {}
    assert path("role::program", parents) == ["role", "role::program"] and path("role", parents) == ["role"]


def test_the_ranker_learns_weights_for_the_relatives_evidence(tree_kb):
    kb = KnowledgeBase(tree_kb)
    ranker = kb.classifier().ranker
    weights = dict(zip(ranker.features, ranker.coefficients))
    assert set(FAMILY_FEATURES) <= set(weights) and any(abs(weights[f]) > 0.01 for f in FAMILY_FEATURES), weights
    result = recall_candidates(kb, TEXT)
    evidence = {c.tag: {ev.path: ev.score for ev in c.evidence if ev.path in ("learned", "C2C2T")} for c in result.candidates}
    family = family_features(evidence, kb.hierarchy())
    assert any(f["sibling_evidence"] > 0 for f in family.values())  # some candidate has a sibling with evidence
    assert all(f["children_evidence"] == 0 for t, f in family.items() if t in kb.hierarchy())  # the tree has two levels
    # within a facet, at most one candidate is the strongest of its siblings
    for facet in {kb.hierarchy().get(t) for t in family} - {None}:
        assert sum(family[t]["family_best"] for t in family if kb.hierarchy().get(t) == facet) <= 1


def test_results_show_each_tags_path_and_follow_the_output_rule(tree_kb):
    ctx = Context(kb_dir=str(tree_kb), llm="fast", threshold=0.0, max_tags=4)
    result = tag(TEXT, context=ctx)
    assert result["tags"] and result["tree"]["output"] == "as-is"
    for t in result["tags"]:
        if "::" in t["tag"]:
            assert t["path"] == [t["tag"].split("::")[0], t["tag"]]
    compact = tag_result(result)
    assert all("in the tree: " in t.why for t in compact.tags if t.path) and any(t.path for t in compact.tags)
    first = result["tags"][0]["tag"]
    assert explain(result, first)["path"] == result["tags"][0].get("path")
    # the same scores, cut with each rule (the result keeps the part of the tree it needs)
    ancestors = rank_tags(rethreshold(result, 0.0), 0.0, 4, {**result["tree"], "output": "add-ancestors"})
    facets = {t["tag"] for t in ancestors if t.get("origin") == "hierarchy"}
    assert facets and all(any(k["tag"].startswith(f + "::") for k in ancestors) for f in facets)
    kept = [t["tag"] for t in result["tags"]]
    with_parent = [{"tag": kept[0].split("::")[0], "confidence": 0.99}] + [{"tag": k, "confidence": 0.5} for k in kept]
    assert [t["tag"] for t in consistent(with_parent, result["tree"]["parents"], "drop-covered-parents")] == kept


def test_the_output_rule_is_a_checked_setting(tree_kb):
    kb = KnowledgeBase(tree_kb)
    with pytest.raises(ValueError, match="hierarchy_output must be one of"):
        replace(kb.config, hierarchy_output="parents-first")
    config = json.loads((tree_kb / "config.json").read_text())
    assert config["hierarchy_features"] is True and config["hierarchy_output"] == "as-is"


def test_the_tree_is_read_again_after_a_vocabulary_change_and_not_after_a_correction(writable_kb):
    """A correction does not change the tree, so it does not cost a query over every tag."""
    from knowledge_base.store import VOCABULARY_FILE

    kb = writable_kb
    assert kb.hierarchy() == {}
    name = sorted(kb.tag_names())[0]
    tag = kb.get_tags([name])[name]
    kb.add_tags([Tag("facet-x", "a facet"), replace(tag, parent="facet-x")])
    assert kb.hierarchy() == {name: "facet-x"}
    stamp = (kb.directory / VOCABULARY_FILE).read_text()
    kb.record_feedback("A text a person corrected by hand, about nothing in particular.", [name], [])
    assert (kb.directory / VOCABULARY_FILE).read_text() == stamp and kb.hierarchy() == {name: "facet-x"}
    KnowledgeBase(kb.directory).change_tag("facet-x", None)  # retired: its child is left without a parent
    assert name not in KnowledgeBase(kb.directory).hierarchy()
