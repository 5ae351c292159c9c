"""SKOS vocabularies: a hand-made file with every case, debtags' own vocabulary as SKOS and back
in three serialisations, bad files refused, and the command line end to end."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from knowledge_base import KnowledgeBase, LoadError, Tag, read_tags
from knowledge_base.demo import DEMO_DATA
from knowledge_base.skos import read_skos, read_vocabulary, write_skos
from ui.cli import main

HAND_MADE = """\
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix dct: <http://purl.org/dc/terms/> .
@prefix ex: <http://example.org/food/> .

ex:food a skos:Concept ; skos:prefLabel "food"@en, "Essen"@de ; skos:definition "Anything eaten"@en .
ex:fruit a skos:Concept ; skos:prefLabel "fruit"@en, "Obst"@de ;
    skos:altLabel "fruits"@en, "Früchte"@de ; skos:hiddenLabel "frut"@en ;
    skos:definition "The sweet, seed-bearing part of a plant"@en, "Süßer Teil einer Pflanze"@de ;
    skos:broader ex:food ; skos:related ex:dessert .
ex:apple a skos:Concept ; skos:prefLabel "apple"@en, "Apfel"@de ; skos:scopeNote "Only the fruit, not the company"@en .
ex:fruit skos:narrower ex:apple .
ex:dessert skos:prefLabel "dessert" .
ex:pudding a skos:Concept ; skos:prefLabel "pudding"@en ; owl:deprecated true .
ex:sweets a skos:Concept ; skos:prefLabel "sweets"@en ; dct:isReplacedBy ex:dessert .
"""


def test_a_hand_made_skos_file_with_every_case(tmp_path):
    path = tmp_path / "food.ttl"
    path.write_text(HAND_MADE, encoding="utf-8")
    parsed = read_skos(path)
    tags = {t.name: t for t in parsed.records}
    assert set(tags) == {"food", "fruit", "apple", "dessert"}  # the deprecated and the replaced concept are not loaded
    assert tags["fruit"] == Tag("fruit", "The sweet, seed-bearing part of a plant", ("fruits", "frut"), "food", (("de", "Obst"),))
    assert tags["apple"] == Tag(
        "apple", "Only the fruit, not the company", (), "fruit", (("de", "Apfel"),)
    )  # scopeNote; parent from narrower
    assert tags["apple"].label("de") == "Apfel" and tags["apple"].label("fi") == "apple" and tags["apple"].label(None) == "apple"
    assert tags["dessert"] == Tag("dessert")  # typed only by its prefLabel, in no language
    assert any("2 deprecated concepts not loaded" in w and "sweets → dessert" in w for w in parsed.warnings)
    german = {t.name: t for t in read_skos(path, language="de").records}
    assert german["Obst"] == Tag(
        "Obst", "Süßer Teil einer Pflanze", ("Früchte",), "Essen", (("en", "fruit"),)
    )  # synonyms in that language or none
    assert german["Essen"].description == "Anything eaten"  # no German definition: the English one is better than none
    assert read_vocabulary(path).records == parsed.records  # load-vocab reads SKOS by its suffix


def test_debtags_vocabulary_to_skos_and_back_in_three_formats(tmp_path):
    """The demo's debtags vocabulary (560 tags, facet::value names) with the facets as the tree's
    upper level, written as SKOS and read back unchanged."""
    tags = [
        Tag(t.name, t.description, t.synonyms, t.name.split("::")[0] if "::" in t.name else None)
        for t in read_tags(DEMO_DATA / "tags.tsv").records
    ]
    facets = {t.parent for t in tags if t.parent} - {t.name for t in tags}
    assert len(tags) > 500 and len(facets) > 20
    for suffix in (".ttl", ".rdf", ".jsonld"):
        path = tmp_path / f"debtags{suffix}"
        assert write_skos(tags, path) == len(tags) + len(facets)
        back = {t.name: t for t in read_skos(path).records}
        assert set(back) == {t.name for t in tags} | facets
        assert all(back[t.name] == t for t in tags), suffix
        assert all(back[f].parent is None for f in facets)


def test_bad_skos_files_are_refused_with_what_to_do(tmp_path):
    broken = tmp_path / "broken.ttl"
    broken.write_text('@prefix skos: <http://www.w3.org/2004/02/skos/core#> .\n<a> skos:prefLabel "x .\n', encoding="utf-8")
    with pytest.raises(LoadError, match="not a readable turtle file"):
        read_skos(broken)
    empty = tmp_path / "empty.ttl"
    empty.write_text("@prefix ex: <http://example.org/> .\nex:a ex:b ex:c .\n", encoding="utf-8")
    with pytest.raises(LoadError, match="no SKOS concept found"):
        read_skos(empty)
    cycle = tmp_path / "cycle.ttl"
    cycle.write_text(
        "@prefix skos: <http://www.w3.org/2004/02/skos/core#> .\n"
        '<x:a> skos:prefLabel "a" ; skos:broader <x:b> .\n<x:b> skos:prefLabel "b" ; skos:broader <x:a> .\n',
        encoding="utf-8",
    )
    with pytest.raises(LoadError, match="cycle: a → b → a"):
        read_skos(cycle)
    twins = tmp_path / "twins.ttl"
    twins.write_text(
        '@prefix skos: <http://www.w3.org/2004/02/skos/core#> .\n<x:a> skos:prefLabel "same" .\n<x:b> skos:prefLabel "same" .\n',
        encoding="utf-8",
    )
    with pytest.raises(LoadError, match="share the label 'same'"):
        read_skos(twins)
    assert [t.name for t in read_skos(twins, on_error="skip").records] == ["same"]


def test_load_and_export_skos_on_the_command_line(tmp_path):
    path = tmp_path / "food.ttl"
    path.write_text(HAND_MADE, encoding="utf-8")
    kb_dir = tmp_path / "kb"
    runner = CliRunner()
    loaded = runner.invoke(main, ["--kb", str(kb_dir), "kb", "load-vocab", str(path)])
    assert loaded.exit_code == 0, loaded.output
    assert "4 added" in loaded.output and "deprecated concepts not loaded" in loaded.output
    kb = KnowledgeBase(kb_dir)
    assert kb.get_tags(["apple"])["apple"].parent == "fruit"
    # the hidden misspelling is a synonym: recall's tag search finds the concept by it
    found = runner.invoke(main, ["--kb", str(kb_dir), "kb", "search", "frut", "-k", "1"])
    assert found.exit_code == 0 and "fruit" in found.output
    out = tmp_path / "export.jsonld"
    exported = runner.invoke(main, ["--kb", str(kb_dir), "kb", "export-vocab", str(out)])
    assert exported.exit_code == 0 and "4 concepts" in exported.output
    assert {t.name: t for t in read_skos(out).records} == {t.name: t for t in read_skos(path).records}


def test_results_give_each_tag_its_label_in_the_language_asked_for(tmp_path):
    """Issue 29 (5): ``--label-language``, REST's and the tools' ``label_language``: a SKOS
    vocabulary's prefLabel in that language, the tag's name where it has none."""
    import json

    from fastapi.testclient import TestClient

    from agent import Context
    from agent.tools import make_tagging_tool
    from ui.rest import create_app

    path = tmp_path / "food.ttl"
    path.write_text(HAND_MADE, encoding="utf-8")
    kb_dir = tmp_path / "kb"
    runner = CliRunner()
    assert runner.invoke(main, ["--kb", str(kb_dir), "kb", "load-vocab", str(path)]).exit_code == 0
    text = "A crisp red apple, a sweet fruit from the orchard, eaten raw or baked into a pie."
    shown = runner.invoke(main, ["--kb", str(kb_dir), "tag", text, "--llm", "fast", "--threshold", "0", "--label-language", "de", "--json"])
    assert shown.exit_code == 0, shown.output
    labels = {t["tag"]: t["label"] for t in json.loads(shown.output)["tags"]}
    assert labels["apple"] == "Apfel" and labels.get("fruit", "Obst") == "Obst" and labels.get("dessert", "dessert") == "dessert"
    plain = runner.invoke(main, ["--kb", str(kb_dir), "tag", text, "--llm", "fast", "--threshold", "0", "--label-language", "de"])
    assert "apple «Apfel»" in plain.output and "in food › fruit" in plain.output  # the CLI shows the label and the tag's place in the tree
    with TestClient(create_app(str(kb_dir), Context(threshold=0.0))) as client:
        answer = client.post("/v1/tag", json={"text": text, "llm": "fast", "label_language": "de"}).json()
        assert {t["tag"]: t["label"] for t in answer["tags"]}["apple"] == "Apfel"
        assert next(t for t in answer["tags"] if t["tag"] == "apple")["path"] == ["food", "fruit", "apple"]
        refused = client.post("/v1/tag", json={"text": text, "llm": "fast", "label_language": "../de"})
        assert refused.status_code == 422 and "label_language" in refused.text
    tool = make_tagging_tool(Context(kb_dir=str(kb_dir), threshold=0.0))
    compact = tool.invoke({"text": text, "llm": "fast", "label_language": "de"})
    assert {t["tag"]: t.get("label") for t in compact["tags"]}["apple"] == "Apfel"
