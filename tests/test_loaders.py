"""Readers for tag repositories, annotated samples and domain documents (knowledge_base/loaders.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from knowledge_base import LoadError, Passage, Sample, Tag, read_documents, read_samples, read_tags
from knowledge_base.loaders import content_id, humanize_tag, require_text, split_passages
from knowledge_base.errors import InputError


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write_lines(path, [r if isinstance(r, str) else json.dumps(r) for r in rows])


# ---- tag repositories ---------------------------------------------------------------------


def test_tsv_with_header_and_extra_columns(tmp_path):
    path = write_lines(
        tmp_path / "tags.tsv",
        [
            "Tag\tDescription\tSynonyms\tParent\tOwner",
            "sports::football\tAssociation football\tsoccer|footy\tsports\talice",
            "sports\tAll sports\t\t\tbob",
            "",
            "music::jazz\tJazz music\tswing; bebop\tmusic\tcarol",
            "music\tAll music",
        ],
    )
    parsed = read_tags(path)
    assert parsed.problems == []
    assert len(parsed.warnings) == 1 and f"{path}:1: columns not read: 'Owner'" in parsed.warnings[0]  # named, not read
    assert parsed.records == [
        Tag("sports::football", "Association football", ("soccer", "footy"), "sports"),
        Tag("sports", "All sports", (), None),
        Tag("music::jazz", "Jazz music", ("swing", "bebop"), "music"),
        Tag("music", "All music"),
    ]


def test_header_columns_in_any_order(tmp_path):
    path = write_lines(tmp_path / "tags.tsv", ["description\tname", "Round fruit\tapple"])
    assert read_tags(path).records == [Tag("apple", "Round fruit")]


def test_headerless_tsv_uses_positional_columns(tmp_path):
    path = write_lines(
        tmp_path / "tags.tsv",
        [
            "card_arrival\tWhen will my card arrive\tcard delivery|new card\tcards",
            "top_up\tAdding money",
            "refund",
            "cards\tAnything about cards",
        ],
    )
    parsed = read_tags(path)
    assert parsed.records == [
        Tag("card_arrival", "When will my card arrive", ("card delivery", "new card"), "cards"),
        Tag("top_up", "Adding money"),
        Tag("refund"),
        Tag("cards", "Anything about cards"),
    ]


def test_csv_with_quoted_commas(tmp_path):
    path = write_lines(
        tmp_path / "tags.csv",
        [
            "name,description,synonyms",
            'fruit,"Apples, pears and plums",produce|groceries',
            "vehicle,Cars,",
        ],
    )
    parsed = read_tags(path)
    assert parsed.records == [
        Tag("fruit", "Apples, pears and plums", ("produce", "groceries")),
        Tag("vehicle", "Cars"),
    ]


def test_jsonl_synonyms_as_list_or_string(tmp_path):
    path = jsonl(
        tmp_path / "tags.jsonl",
        [
            {"name": "fruit", "description": "Apples", "synonyms": ["produce", " produce ", "", "fruits"], "parent": "food"},
            {"tag": "vehicle", "synonyms": "car | truck"},
            {"label": "music"},
            {"name": "food"},
        ],
    )
    parsed = read_tags(path)
    assert parsed.records == [
        Tag("fruit", "Apples", ("produce", "fruits"), "food"),  # trimmed, empties dropped, de-duplicated
        Tag("vehicle", "", ("car", "truck")),
        Tag("music"),
        Tag("food"),
    ]


def test_a_duplicate_tag_is_refused_naming_both_lines(tmp_path):
    path = write_lines(tmp_path / "tags.tsv", ["tag\tdescription", "a\tfirst", "b\tother", "a\tsecond"])
    with pytest.raises(LoadError) as info:
        read_tags(path)
    assert info.value.line == 4 and "'a' is already on line 2" in str(info.value) and "nothing was loaded" in str(info.value)
    parsed = read_tags(path, on_error="skip")  # the page's loader: the first line kept, the repeat reported
    assert [(t.name, t.description) for t in parsed.records] == [("a", "first"), ("b", "other")]
    assert [p.line for p in parsed.problems] == [4]


@pytest.mark.parametrize(
    "header, expected",
    [
        ("tagname\tdesc", [Tag("card_arrival", "When will my card arrive")]),
        ("Label\tDefinition\tAlt labels\tBroader", [Tag("card_arrival", "When will my card arrive", ("delivery",), "cards"), Tag("cards")]),
        ("prefLabel\tScope note", [Tag("card_arrival", "When will my card arrive")]),
    ],
)
def test_header_columns_by_their_usual_names(tmp_path, header, expected):
    """A header row is read by its names, never loaded as a tag (a 'tagname' header once became a tag)."""
    rows = (
        ["card_arrival\tWhen will my card arrive\tdelivery\tcards", "cards"]
        if "Broader" in header
        else ["card_arrival\tWhen will my card arrive"]
    )
    parsed = read_tags(write_lines(tmp_path / "tags.tsv", [header, *rows]))
    assert parsed.records == expected and parsed.warnings == [] and parsed.problems == []


def test_a_header_without_a_tag_column_refuses_the_file(tmp_path):
    path = write_lines(tmp_path / "tags.csv", ["code,description", "x1,First", "x2,Second"])
    for on_error in ("stop", "skip"):
        with pytest.raises(LoadError) as info:
            read_tags(path, on_error=on_error)
        assert info.value.line == 1 and "names no tag column" in str(info.value) and "'tag'" in str(info.value)


def test_an_unrecognised_description_column_is_named(tmp_path):
    """'label,notes' once loaded with every description silently dropped: the column is named and
    the warning says no tag got a description."""
    path = write_lines(tmp_path / "tags.csv", ["label,notes", "apple,A round fruit", "pear,A sweet fruit"])
    parsed = read_tags(path)
    assert [t.name for t in parsed.records] == ["apple", "pear"]
    assert len(parsed.warnings) == 1
    assert "'notes'" in parsed.warnings[0] and "no description column was recognised" in parsed.warnings[0]
    meaning = read_tags(write_lines(tmp_path / "meaning.csv", ["label,meaning", "apple,A round fruit"]))
    assert meaning.records == [Tag("apple", "A round fruit")] and meaning.warnings == []


def test_jsonl_keys_by_their_usual_names_and_unknown_keys_named(tmp_path):
    path = jsonl(
        tmp_path / "tags.jsonl",
        [{"prefLabel": "fruit", "definition": "Apples", "altLabel": ["produce"], "owner": "x"}, {"tag": "apple", "broader": "fruit"}],
    )
    parsed = read_tags(path)
    assert parsed.records == [Tag("fruit", "Apples", ("produce",)), Tag("apple", "", (), "fruit")]
    assert len(parsed.warnings) == 1 and "keys not read: 'owner'" in parsed.warnings[0]


def test_a_parent_must_exist_in_the_file_or_the_repository(tmp_path):
    path = write_lines(tmp_path / "tags.tsv", ["tag\tdescription\tsynonyms\tparent", "jazz\tJazz\t\tmusic", "rock\tRock\t\tmusci"])
    with pytest.raises(LoadError) as info:
        read_tags(path, known={"music"})
    assert info.value.line == 3 and "'musci'" in str(info.value) and "neither in this file nor in the repository" in str(info.value)
    parsed = read_tags(path, on_error="skip", known={"music"})
    assert [t.name for t in parsed.records] == ["jazz"] and [p.line for p in parsed.problems] == [3]


def test_a_cycle_in_the_hierarchy_refuses_the_file(tmp_path):
    path = write_lines(tmp_path / "tags.tsv", ["tag\tparent", "a\tb", "b\tc", "c\ta", "d\ta"])
    for on_error in ("stop", "skip"):
        with pytest.raises(LoadError) as info:
            read_tags(path, on_error=on_error)
        assert "cycle" in str(info.value) and "lines 2, 3, 4" in str(info.value).replace("lines 3, 4, 2", "lines 2, 3, 4")
    with pytest.raises(LoadError, match="cycle: a → a"):
        read_tags(write_lines(tmp_path / "self.tsv", ["tag\tparent", "a\ta"]))


def test_missing_tag_name_is_a_problem(tmp_path):
    path = jsonl(tmp_path / "tags.jsonl", [{"name": "ok"}, {"description": "no name here"}, {"name": "   "}])
    with pytest.raises(LoadError) as info:
        read_tags(path)
    assert info.value.path == str(path) and info.value.line == 2
    assert "missing tag name" in str(info.value)
    assert "and 1 more bad lines" in str(info.value)
    parsed = read_tags(path, on_error="skip")
    assert parsed.records == [Tag("ok")]
    assert [(p.line, "missing tag name" in p.message) for p in parsed.problems] == [(2, True), (3, True)]


def test_invalid_utf8_line_stop_names_file_and_line(tmp_path):
    path = write_bytes(tmp_path / "tags.tsv", b"tag\tdescription\napple\tfruit\nbad\t\xff\xfe broken\npear\tfruit\n")
    with pytest.raises(LoadError) as info:
        read_tags(path)
    assert info.value.path == str(path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}:3: not valid UTF-8")
    assert "nothing was loaded" in str(info.value)


def test_invalid_utf8_line_skip_loads_the_rest(tmp_path):
    path = write_bytes(tmp_path / "tags.tsv", b"tag\tdescription\napple\tfruit\nbad\t\xff\xfe broken\npear\tfruit\n")
    parsed = read_tags(path, on_error="skip")
    assert [t.name for t in parsed.records] == ["apple", "pear"]
    assert len(parsed.problems) == 1
    assert str(parsed.problems[0]).startswith(f"{path}:3: not valid UTF-8")


def test_utf8_bom_is_ignored(tmp_path):
    path = write_bytes(tmp_path / "tags.tsv", "\ufefftag\tdescription\ncafé\tCoffee\n".encode("utf-8"))
    assert read_tags(path).records == [Tag("café", "Coffee")]


def test_malformed_json_tag_lines(tmp_path):
    path = jsonl(tmp_path / "tags.jsonl", [{"name": "a"}, '{"name": "b"', "[1, 2]", {"name": "c", "synonyms": [1, 2]}, {"name": "d"}])
    with pytest.raises(LoadError) as info:
        read_tags(path)
    assert info.value.line == 2 and "malformed JSON" in str(info.value)
    parsed = read_tags(path, on_error="skip")
    assert [t.name for t in parsed.records] == ["a", "d"]
    assert [p.line for p in parsed.problems] == [2, 3, 4]
    assert "must be a JSON object" in parsed.problems[1].message
    assert "'synonyms' must be a list of strings" in parsed.problems[2].message


def test_unsupported_missing_and_empty_tag_files(tmp_path):
    with pytest.raises(LoadError, match="unsupported tag repository format '.xlsx'"):
        read_tags(write_bytes(tmp_path / "tags.xlsx", b"PK\x03\x04"))
    with pytest.raises(LoadError, match="file not found"):
        read_tags(tmp_path / "nope.tsv")
    with pytest.raises(LoadError, match="no tags found"):
        read_tags(write_lines(tmp_path / "empty.tsv", ["tag\tdescription", "", "  "]))
    with pytest.raises(LoadError, match="no tags found"):  # skip leaves nothing: still an error
        read_tags(write_bytes(tmp_path / "allbad.tsv", b"\xff\n"), on_error="skip")


def test_tag_embedding_text():
    tag = Tag("works-with::image", "Pictures", ("photo", "bitmap"))
    assert tag.embedding_text() == "works-with: image. also: photo, bitmap. Pictures"
    assert Tag("card_arrival").embedding_text() == "card arrival"


def test_humanize_tag():
    assert humanize_tag("works-with::image") == "works-with: image"
    assert humanize_tag("card_arrival") == "card arrival"
    assert humanize_tag("a::b_c::d") == "a: b c: d"
    assert humanize_tag("  plain ") == "plain"


# ---- annotated samples --------------------------------------------------------------------


def test_samples_basic_fields(tmp_path):
    path = jsonl(
        tmp_path / "samples.jsonl",
        [
            {"id": "s1", "text": "  A text\x00 about apples  ", "tags": ["fruit", "food", "fruit"], "incorrect_tags": ["vehicle", "fruit"]},
            {"id": 7, "text": "numbers as ids", "tags": "a|b"},
            {"id": "s3", "text": "only negatives", "incorrect_tags": ["x"]},
        ],
    )
    parsed = read_samples(path)
    assert parsed.problems == [] and parsed.warnings == []
    assert parsed.records == [
        # control characters become spaces, duplicates go, an incorrect tag that is also correct is dropped
        Sample("s1", "A text  about apples", ("fruit", "food"), ("vehicle",)),
        Sample("7", "numbers as ids", ("a", "b")),
        Sample("s3", "only negatives", (), ("x",)),
    ]


def test_samples_without_id_get_stable_sha1_ids(tmp_path):
    text = "a sample that came without an id"
    path = jsonl(tmp_path / "samples.jsonl", [{"text": text, "tags": ["t"]}, {"id": "", "text": "another", "tags": ["t"]}])
    first = read_samples(path).records
    again = read_samples(path).records
    expected = "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
    assert first[0].id == expected == content_id(text)
    assert first[1].id == content_id("another")
    assert [s.id for s in first] == [s.id for s in again]


def test_repeated_sample_ids_later_line_wins(tmp_path):
    path = jsonl(
        tmp_path / "samples.jsonl",
        [
            {"id": "x", "text": "old text", "tags": ["a"]},
            {"id": "y", "text": "other", "tags": ["b"]},
            {"id": "x", "text": "new text", "tags": ["c"]},
        ],
    )
    parsed = read_samples(path)
    assert {s.id: s for s in parsed.records} == {"y": Sample("y", "other", ("b",)), "x": Sample("x", "new text", ("c",))}
    assert len(parsed.records) == 2
    assert len(parsed.warnings) == 1 and f"{path}:3" in parsed.warnings[0] and "repeats line 1" in parsed.warnings[0]


def test_samples_malformed_lines(tmp_path):
    path = jsonl(
        tmp_path / "samples.jsonl",
        [
            {"id": "good1", "text": "fine", "tags": ["a"]},
            '{"id": "torn", "text": ',
            {"id": "empty", "text": "   ", "tags": ["a"]},
            {"id": "notext", "tags": ["a"]},
            {"id": "notags", "text": "no tags at all"},
            {"id": "badtags", "text": "bad tags", "tags": [1]},
            '"just a string"',
            {"id": "good2", "text": "fine too", "tags": ["b"]},
        ],
    )
    with pytest.raises(LoadError) as info:
        read_samples(path)
    assert (info.value.path, info.value.line) == (str(path), 2)
    assert "and 5 more bad lines" in str(info.value)
    parsed = read_samples(path, on_error="skip")
    assert [s.id for s in parsed.records] == ["good1", "good2"]
    assert [p.line for p in parsed.problems] == [2, 3, 4, 5, 6, 7]
    messages = [p.message for p in parsed.problems]
    assert "'text' is missing or empty" in messages[1] and "'text' is missing or empty" in messages[2]
    assert "needs at least one" in messages[3]
    assert "'tags' must be a list of strings" in messages[4]
    assert "must be a JSON object" in messages[5]


def test_samples_invalid_utf8_line(tmp_path):
    path = write_bytes(
        tmp_path / "samples.jsonl",
        b'{"id": "a", "text": "fine", "tags": ["t"]}\n{"id": "b", "text": "caf\xe9", "tags": ["t"]}\n{"id": "c", "text": "ok", "tags": ["t"]}\n',
    )
    with pytest.raises(LoadError) as info:
        read_samples(path)
    assert str(info.value).startswith(f"{path}:2: not valid UTF-8")
    parsed = read_samples(path, on_error="skip")
    assert [s.id for s in parsed.records] == ["a", "c"]
    assert [(p.path, p.line) for p in parsed.problems] == [(str(path), 2)]


def test_samples_missing_or_empty_file(tmp_path):
    with pytest.raises(LoadError, match="file not found"):
        read_samples(tmp_path / "missing.jsonl")
    with pytest.raises(LoadError, match="no samples found"):
        read_samples(write_lines(tmp_path / "blank.jsonl", ["", "   "]))


def test_require_text():
    assert require_text("  hello\x07 world ") == "hello  world"
    for bad in ("", "   \n\t ", "\x00\x01", None, 42):
        with pytest.raises(InputError):
            require_text(bad)


# ---- domain documents ---------------------------------------------------------------------


def test_split_passages_groups_paragraphs_up_to_the_limit():
    paras = [f"Paragraph {i} " + "x" * 280 for i in range(5)]  # ~292 chars each
    passages = split_passages("\n\n".join(paras), max_chars=800)
    assert passages == ["\n\n".join(paras[0:2]), "\n\n".join(paras[2:4]), paras[4]]


def test_split_passages_huge_paragraph_cuts_at_spaces():
    words = [f"w{i:04d}" for i in range(1500)]  # one paragraph of 8999 characters
    text = " ".join(words)
    passages = split_passages(text, max_chars=800)
    assert all(0 < len(p) <= 800 for p in passages)
    assert len(passages) == 12
    assert " ".join(passages).split() == words  # nothing lost, no word cut in half


def test_split_passages_without_spaces_cuts_hard():
    passages = split_passages("x" * 2000, max_chars=800)
    assert [len(p) for p in passages] == [800, 800, 400]


def test_split_passages_huge_paragraph_between_small_ones():
    text = "intro\n\n" + "y " * 1000 + "\n\noutro"
    passages = split_passages(text, max_chars=300)
    assert passages[0] == "intro"
    assert passages[-1].endswith("outro")
    assert all(len(p) <= 300 for p in passages)
    assert "".join(passages).count("y") == 1000


def test_read_documents_recurses_and_ignores_other_files(tmp_path):
    root = tmp_path / "docs"
    (root / "rules" / "deep").mkdir(parents=True)
    (root / "glossary.md").write_text("Term one: a definition.\n\nTerm two: another.", encoding="utf-8")
    (root / "rules" / "tagging.txt").write_text("Always tag the language.", encoding="utf-8")
    (root / "rules" / "deep" / "more.markdown").write_text("Deep rule.", encoding="utf-8")
    (root / "rules" / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")  # a document too (see test_documents.py)
    (root / "rules" / "data.json").write_text('{"a": 1}', encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    parsed = read_documents([root])
    assert parsed.problems == []
    assert parsed.records == [
        Passage("glossary.md#0", "glossary.md", "Term one: a definition.\n\nTerm two: another.", index=0),
        Passage("rules/data.csv#0", "rules/data.csv", "a: 1\nb: 2", row=1, index=0),
        Passage("rules/deep/more.markdown#0", "rules/deep/more.markdown", "Deep rule.", index=0),
        Passage("rules/tagging.txt#0", "rules/tagging.txt", "Always tag the language.", index=0),
    ]


def test_read_documents_same_file_name_in_two_folders_gets_distinct_ids(tmp_path):
    root = tmp_path / "docs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "README.md").write_text("Alpha.", encoding="utf-8")
    (root / "b" / "README.md").write_text("Beta.", encoding="utf-8")
    records = read_documents([root]).records
    assert [(p.id, p.text) for p in records] == [("a/README.md#0", "Alpha."), ("b/README.md#0", "Beta.")]


def test_read_documents_splits_long_files_into_numbered_passages(tmp_path):
    para = "This paragraph explains a tagging rule in detail. " * 10  # ~500 characters
    path = tmp_path / "guide.md"
    path.write_text("\n\n".join([para] * 4), encoding="utf-8")
    records = read_documents([path]).records
    assert [p.id for p in records] == ["guide.md#0", "guide.md#1", "guide.md#2", "guide.md#3"]
    assert all(p.source == "guide.md" and p.text == para.strip() for p in records)


def test_read_documents_missing_unreadable_and_empty(tmp_path):
    with pytest.raises(LoadError, match="file or directory not found"):
        read_documents([tmp_path / "nowhere"])
    only_other = tmp_path / "other"
    only_other.mkdir()
    (only_other / "table.json").write_text("[]", encoding="utf-8")
    with pytest.raises(LoadError, match="no document files found in the folder"):
        read_documents([only_other])
    with pytest.raises(LoadError, match="no document text found"):
        read_documents([write_lines(tmp_path / "blank.md", ["", "   "])])
    binary = write_bytes(tmp_path / "manual.txt", b"line one\nline two\nbad \xff\xfe\n")
    good = write_lines(tmp_path / "good.md", ["A good rule."])
    with pytest.raises(LoadError) as info:
        read_documents([binary, good])
    assert (info.value.path, info.value.line) == (str(binary), 3)
    parsed = read_documents([binary, good], on_error="skip")
    assert [p.id for p in parsed.records] == ["good.md#0"]
    assert [(p.path, p.line) for p in parsed.problems] == [(str(binary), 3)]


def test_a_csv_cell_beyond_the_csv_modules_default_limit_loads(tmp_path):
    """Issue 31 (11): a 10 MB cell was refused by the csv module's 128 KiB field limit."""
    long = "word " * 400_000  # 2 MB
    path = tmp_path / "tags.csv"
    path.write_text(f'name,description\nbig,"{long}"\nsmall,A short one\n', encoding="utf-8")
    parsed = read_tags(path)
    assert [t.name for t in parsed.records] == ["big", "small"] and len(parsed.records[0].description) >= 2_000_000 - 5
    docs = tmp_path / "table.csv"
    docs.write_text(f'topic,notes\nlong,"{long}"\n', encoding="utf-8")
    passages = read_documents([docs]).records
    assert passages and sum(len(p.text) for p in passages) > 1_000_000
