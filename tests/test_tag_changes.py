"""Tags that change: renaming, merging and retiring a tag moves its history (samples, graph, the
classifier's view) and loses nothing; a retired tag is never suggested again; vocabulary re-loads
carry the changes; every surface (Python, CLI, REST) takes them."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from agent import Context, tagging
from knowledge_base import InputError, KnowledgeBase
from knowledge_base.recall import recall_candidates
from knowledge_base.skos import read_vocabulary
from knowledge_base.store import TAG_CHANGES_FILE
from ui.cli import main
from ui.rest import create_app


def annotations(kb_dir) -> Counter:
    """Every right and wrong verdict in the samples, counted per tag, read from a fresh open."""
    got = KnowledgeBase(kb_dir).collection("samples").get(include=["metadatas"])
    return Counter((t, kind) for m in got["metadatas"] for kind in ("tags", "incorrect_tags") for t in json.loads(m[kind]))


def used(counts: Counter) -> list[str]:
    return [t for t, _ in Counter(t for (t, kind), n in counts.items() if kind == "tags" for _ in range(n)).most_common()]


def test_rename_merge_and_retire_move_every_annotation_and_lose_none(trained_kb_copy):
    kb = KnowledgeBase(trained_kb_copy)
    before = annotations(trained_kb_copy)
    a, b, c = used(before)[3:6]
    parent_of = {t.name: t.parent for t in kb.get_tags(sorted(kb.tag_names())).values()}
    n = lambda counts, tag: counts[(tag, "tags")] + counts[(tag, "incorrect_tags")]  # noqa: E731

    renamed = tagging.change_tag(a, "rename", "renamed-a", kb_dir=str(trained_kb_copy))
    after = annotations(trained_kb_copy)
    assert renamed["change"] == "rename" and renamed["samples"] == n(before, a)
    assert n(after, "renamed-a") == n(before, a) and n(after, a) == 0
    assert sum(after.values()) == sum(before.values())
    fresh = KnowledgeBase(trained_kb_copy)
    entry = fresh.get_tags(["renamed-a"])["renamed-a"]
    assert a in entry.synonyms and entry.parent == parent_of[a] and not fresh.has_tag(a)
    assert fresh.graph.to_networkx().has_node("t:renamed-a") and not fresh.graph.to_networkx().has_node(f"t:{a}")

    got = KnowledgeBase(trained_kb_copy).collection("samples").get(include=["metadatas"])
    sides = [(set(json.loads(m["tags"])), set(json.loads(m["incorrect_tags"]))) for m in got["metadatas"]]
    same_side = sum(("renamed-a" in side and b in side) for pair in sides for side in pair)  # de-duplicated by the merge
    merged = tagging.change_tag("renamed-a", "merge", b, kb_dir=str(trained_kb_copy))
    after = annotations(trained_kb_copy)
    assert merged["change"] == "merge"
    assert n(after, b) == n(before, a) + n(before, b) - merged["conflicts"] - same_side
    assert KnowledgeBase(trained_kb_copy).replacement(a) == b  # followed through the rename

    retired = tagging.change_tag(c, "retire", kb_dir=str(trained_kb_copy))
    after = annotations(trained_kb_copy)
    assert n(after, c) == 0 and not KnowledgeBase(trained_kb_copy).has_tag(c)
    # nothing lost: the retired tag's verdicts (and texts of samples left with none) are kept
    record = [json.loads(line) for line in (trained_kb_copy / TAG_CHANGES_FILE).read_text().splitlines()][-1]
    assert record["change"] == "retire" and len(record["verdicts"]) == retired["samples"] == n(before, c)
    assert len(record["removed_samples"]) == retired["removed_samples"] and all(r["text"] for r in record["removed_samples"])


@pytest.fixture
def fresh_copy(trained_kb_dir, tmp_path):
    from conftest import copy_kb

    return copy_kb(trained_kb_dir, tmp_path / "kb")


def test_a_retired_tag_is_never_suggested_and_a_renamed_one_keeps_its_standing(fresh_copy):
    """Before the classifier is retrained: the retired tag is gone from recall whatever the
    evidence; the renamed tag is recalled under its new name with the same confidence."""
    kb = KnowledgeBase(fresh_copy)
    samples = kb.collection("samples").get(include=["documents", "metadatas"], limit=60)
    text, tags = next(
        (d, json.loads(m["tags"])) for d, m in zip(samples["documents"], samples["metadatas"]) if len(json.loads(m["tags"])) >= 2
    )
    first = recall_candidates(kb, text + " (a new copy)")
    top, second = first.candidates[0], first.candidates[1]
    tagging.change_tag(top.tag, "retire", kb_dir=str(fresh_copy))
    tagging.change_tag(second.tag, "rename", "brand-new-name", kb_dir=str(fresh_copy))
    kb = KnowledgeBase(fresh_copy)
    again = recall_candidates(kb, text + " (a new copy)")
    names = [c.tag for c in again.candidates]
    assert top.tag not in names and second.tag not in names
    renamed = next(c for c in again.candidates if c.tag == "brand-new-name")
    assert renamed.score == pytest.approx(second.score, abs=0.15)
    # a text that names the retired tag's words still never gets it: it left the repository
    assert all(c.tag != top.tag for c in recall_candidates(kb, top.tag.replace("::", " ")).candidates)
    # samples loaded later with the old names: the renamed one is read as its replacement
    report = kb.add_samples([__import__("knowledge_base").Sample("late-1", "A late sample", (second.tag,))])
    assert KnowledgeBase(fresh_copy).get_sample("late-1").tags == ("brand-new-name",)
    assert any("brand-new-name" in w for w in report.warnings)


def test_a_vocabulary_reload_carries_renames_merges_and_retirements(fresh_copy, tmp_path):
    kb = KnowledgeBase(fresh_copy)
    a, b, c = used(annotations(fresh_copy))[:3]
    tsv = tmp_path / "changes.tsv"
    tsv.write_text(f"tag\treplaced_by\tdeprecated\n{a}\t{b}\t\n{c}\t\tyes\nzz-new\t\t\n", encoding="utf-8")
    parsed = read_vocabulary(tsv, known=kb.tag_names())
    assert [t.name for t in parsed.records] == ["zz-new"] and parsed.changes == [(a, b), (c, None)]
    result = CliRunner().invoke(main, ["--kb", str(fresh_copy), "kb", "load-vocab", str(tsv)])
    assert result.exit_code == 0, result.output
    assert f"merged {a} → {b}" in result.output and f"retired {c}" in result.output
    kb = KnowledgeBase(fresh_copy)
    assert not kb.has_tag(a) and not kb.has_tag(c) and kb.has_tag("zz-new")
    again = CliRunner().invoke(main, ["--kb", str(fresh_copy), "kb", "load-vocab", str(tsv)])
    assert again.exit_code == 0 and "merged" not in again.output  # already done: a re-load changes nothing
    bad = tmp_path / "bad.tsv"
    bad.write_text(f"tag\treplaced_by\n{b}\tno-such-tag\n", encoding="utf-8")
    refused = CliRunner().invoke(main, ["--kb", str(fresh_copy), "kb", "load-vocab", str(bad)])
    assert refused.exit_code != 0 and "neither in this file nor in the repository" in refused.output
    assert KnowledgeBase(fresh_copy).has_tag(b)
    skos = tmp_path / "changes.ttl"
    skos.write_text(
        "@prefix skos: <http://www.w3.org/2004/02/skos/core#> .\n@prefix dct: <http://purl.org/dc/terms/> .\n"
        f'<x:old> skos:prefLabel "{b}" ; dct:isReplacedBy <x:new> .\n<x:new> skos:prefLabel "zz-new" .\n',
        encoding="utf-8",
    )
    merged = CliRunner().invoke(main, ["--kb", str(fresh_copy), "kb", "load-vocab", str(skos)])
    assert merged.exit_code == 0 and f"merged {b} → zz-new" in merged.output


def test_cli_and_rest_change_tags_with_clear_refusals(fresh_copy):
    a, b, c, d = used(annotations(fresh_copy))[:4]
    runner = CliRunner()
    wrong = runner.invoke(main, ["--kb", str(fresh_copy), "kb", "rename-tag", a, b])
    assert wrong.exit_code != 0 and "merge instead of rename" in wrong.output
    missing = runner.invoke(main, ["--kb", str(fresh_copy), "kb", "retire-tag", "no::such-tag"])
    assert missing.exit_code != 0 and "not in the tag repository" in missing.output
    done = runner.invoke(main, ["--kb", str(fresh_copy), "kb", "rename-tag", a, "a-renamed"])
    assert done.exit_code == 0 and f"renamed {a} → a-renamed" in done.output and "retrain the classifier" in done.output
    gone = runner.invoke(main, ["--kb", str(fresh_copy), "kb", "merge-tags", a, b])
    assert gone.exit_code != 0 and "it became 'a-renamed'" in gone.output
    with TestClient(create_app(str(fresh_copy), Context(kb_dir=str(fresh_copy)), token="s3cret")) as client:
        assert client.post(f"/v1/tags/{b}/change", json={"action": "retire"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        merged = client.post(f"/v1/tags/{b}/change", json={"action": "merge", "into": c}, headers=auth)
        assert merged.status_code == 200 and merged.json()["change"] == "merge" and merged.json()["into"] == c
        refused = client.post(f"/v1/tags/{d}/change", json={"action": "retire", "into": c}, headers=auth)
        assert refused.status_code == 400 and "merge it instead" in refused.json()["detail"]
        listed = client.get("/v1/tags", params={"limit": 500}).json()["tags"]
        assert b not in {t["name"] for t in listed} and c in {t["name"] for t in listed}
    with pytest.raises(InputError, match="unknown action"):
        tagging.change_tag(d, "delete", kb_dir=str(fresh_copy))


def test_merging_a_tag_into_its_own_child_keeps_the_tree_a_tree(tmp_path):
    from knowledge_base import Sample, Tag

    kb = KnowledgeBase(tmp_path / "kb")
    kb.add_tags(
        [
            Tag("media", "All media"),
            Tag("media::image", "Images", (), "media"),
            Tag("media::image:raster", "Raster", (), "media::image"),
            Tag("top", "Top level"),
        ]
    )
    kb.change_tag("top", None)  # nothing under it, no history: retired cleanly
    kb.add_samples([Sample("s1", "A photo viewer", ("media", "media::image"))])
    done = kb.change_tag("media", "media::image")
    assert done["change"] == "merge" and done["children"] == 0
    tags = KnowledgeBase(tmp_path / "kb").get_tags(["media::image", "media::image:raster"])
    assert tags["media::image"].parent is None and tags["media::image:raster"].parent == "media::image"
    assert KnowledgeBase(tmp_path / "kb").get_sample("s1").tags == ("media::image",)
