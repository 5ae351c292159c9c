"""The annotation queue (agent.annotation over knowledge_base.annotation_queue): records loaded
from a file with suggestions, decisions learned at once through the one learn path, the records
a decision can change re-scored, everything kept in the knowledge base across restarts."""

from __future__ import annotations

import json

import pytest

from agent import tagging
from agent.annotation import AnnotationQueue
from knowledge_base import KnowledgeBase, UnknownTagsError
from knowledge_base.annotation_queue import QueueStore, uncertainty
from knowledge_base.demo import DEMO_DATA
from knowledge_base.errors import InputError


@pytest.fixture(scope="module")
def records(trained_kb_copy):
    """Demo texts that are not in the small knowledge base, with their true tags that are in its repository."""
    known = KnowledgeBase(trained_kb_copy).tag_names()
    out = []
    for line in (DEMO_DATA / "samples.jsonl").read_text(encoding="utf-8").splitlines()[300:]:
        sample = json.loads(line)
        tags = [t for t in sample["tags"] if t in known]
        if tags:
            out.append({"id": sample["id"], "text": sample["text"], "tags": tags})
        if len(out) == 12:
            return out
    raise AssertionError("the demo data has too few texts for the queue tests")


@pytest.fixture(scope="module")
def queue_file(records, tmp_path_factory):
    path = tmp_path_factory.mktemp("queue") / "texts.jsonl"
    lines = [json.dumps({"id": r["id"], "text": r["text"]}) for r in records]
    lines.insert(3, "{not json")  # a bad line is reported and skipped
    lines.append(json.dumps({"id": records[0]["id"], "text": records[0]["text"]}))  # queued once
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_uncertainty_is_the_expected_number_of_wrong_pre_selections():
    assert uncertainty([("a", 1.0), ("b", 0.0)], 0.4) == 0.0  # certain either way
    assert uncertainty([("a", 0.5)], 0.4) == 0.5  # pre-selected, wrong half the time
    assert uncertainty([("a", 0.7), ("b", 0.3)], 0.4) == pytest.approx(0.6)  # 0.3 wrong + 0.3 missed
    assert uncertainty([("a", 0.95), ("b", 0.02)], 0.4) < uncertainty([("a", 0.45), ("b", 0.35)], 0.4)
    assert uncertainty([("a", None)], 0.4) == uncertainty([], 0.4) == 1.0


def test_a_loaded_file_is_queued_with_suggestions_and_shown_in_the_order_asked(trained_kb_copy, queue_file, records):
    queue = AnnotationQueue(str(trained_kb_copy))
    report = queue.load(queue_file)
    assert report["added"] == len(records) and report["already_queued"] == 1
    assert len(report["problems"]) == 1 and report["problems"][0].startswith("line 4: malformed JSON")
    counts = queue.counts()
    assert (counts.total, counts.open, counts.decided) == (len(records), len(records), 0)

    assert queue.next("file").id == records[0]["id"]
    threshold = queue.threshold()
    stored = [queue.store.get(r["id"]) for r in records]
    assert all(r.suggestions and r.suggestions == sorted(r.suggestions, key=lambda s: -s[1]) for r in stored)
    # the suggestions are fused recall's answer: the tag page's first answer for the same text
    first = tagging.tag(records[0]["text"], kb_dir=str(trained_kb_copy), llm="fast")
    assert [t["tag"] for t in first["tags"]] == stored[0].preselected == [t for t, _ in stored[0].suggestions][: len(first["tags"])]
    most_uncertain = max(stored, key=lambda r: (uncertainty(r.suggestions, threshold), -r.position))
    assert queue.next("uncertain").id == most_uncertain.id
    surest = max(stored, key=lambda r: (r.suggestions[0][1], -r.position))
    assert queue.next("score").id == surest.id
    with pytest.raises(InputError, match="unknown order"):
        queue.next("random")


def test_a_decision_is_learned_at_once_and_re_scores_what_it_can_change(trained_kb_copy, records):
    queue = AnnotationQueue(str(trained_kb_copy))
    record = queue.store.get(records[1]["id"])
    truth = records[1]["tags"]
    # a near-duplicate of it waits in the queue, scored before the decision
    near = record.text.replace(record.text.split()[0], "The", 1)
    queue.store.add([("near-duplicate", near, None)], queue.runtime.kb.encoder.encode([near]).vectors)
    queue.score([("near-duplicate", near)])
    before = queue.store.get("near-duplicate").scored_at

    decided = queue.decide(record.id, truth)
    assert decided["status"] == ("accepted" if set(truth) == set(record.preselected) else "changed")
    assert decided["learned"]["correct"] == truth
    # through the one learn path: the same text is now tagged with the tags marked right, none marked wrong
    again = tagging.tag(record.text, kb_dir=str(trained_kb_copy), llm="fast")
    assert set(truth) <= {t["tag"] for t in again["tags"]}
    wrong = {t for t in record.preselected if t not in truth}
    assert not wrong & {t["tag"] for t in again["tags"]}, "a pre-selected tag the person left out is marked wrong"

    # the near-duplicate is re-scored in the background, the decided tags now first
    assert queue.settle(120)
    rescored = queue.store.get("near-duplicate")
    assert rescored.scored_at > before, "a decision must re-score the undecided records nearest to it"
    assert set(truth) <= {t for t, _ in rescored.suggestions[: max(3, len(truth))]}
    assert queue.next("file", after=[r["id"] for r in records]).id == "near-duplicate"

    with pytest.raises(InputError, match="decided already"):
        queue.decide(record.id, truth)


def test_an_unknown_tag_writes_nothing_and_the_record_stays_open(trained_kb_copy, records):
    queue = AnnotationQueue(str(trained_kb_copy))
    samples = queue.runtime.kb.collection("samples").count()
    with pytest.raises(UnknownTagsError):
        queue.decide(records[4]["id"], ["no-such-tag"])
    assert queue.store.get(records[4]["id"]).status == "open"
    assert queue.runtime.kb.collection("samples").count() == samples


def test_rejection_skip_bulk_acceptance_and_a_restart(trained_kb_copy, records):
    queue = AnnotationQueue(str(trained_kb_copy))
    target = queue.store.get(records[5]["id"])
    rejected = queue.decide(target.id, [])
    assert rejected["status"] == "rejected"
    assert rejected["learned"]["incorrect"] == (target.preselected or [target.suggestions[0][0]])

    queue.skip(records[6]["id"])
    assert queue.next("file").id != records[6]["id"], "a skipped record comes after the open ones"

    # bulk: the surest records first, skipped ones included
    undecided = queue.store.undecided()
    surest = sorted(undecided, key=lambda r: -max(p for _, p in r.suggestions))[:2]
    assert queue.accept_above(0.0, limit=2) == 2
    assert all(queue.store.get(r.id).status in ("accepted", "changed") for r in surest)

    # a new process (a restart) finds the queue where it was left
    counts = QueueStore(trained_kb_copy).counts()
    assert counts == queue.counts() and counts.rejected == 1
    assert counts.skipped == (0 if records[6]["id"] in {r.id for r in surest} else 1)
    assert counts.decided == counts.accepted + counts.changed + counts.rejected
    assert counts.acceptance_rate == pytest.approx(counts.accepted / counts.decided)
    assert AnnotationQueue(str(trained_kb_copy)).store.get(target.id).status == "rejected"


def test_a_filter_narrows_the_list_the_next_record_and_bulk_acceptance(trained_kb_copy, records):
    """Issue 28 (1): "accept all above X for the current filter", and a record list in the order asked."""
    from ui.queue_tab import LIST_ROWS, QueuePage, listing_rows

    queue = AnnotationQueue(str(trained_kb_copy))
    undecided = queue.store.undecided()
    word = next(w for r in undecided for w in r.text.split() if len(w) > 6 and w.isalpha())
    matching = [r for r in undecided if word.lower() in r.text.lower() or word.lower() in json.dumps(r.suggestions).lower()]
    assert 0 < len(matching) < len(undecided)
    listed = queue.store.listing("score", word, limit=50)
    assert {r.id for r in listed} == {r.id for r in matching}
    assert [r.id for r in listed if r.status == "open"] == [
        r.id for r in sorted((r for r in matching if r.status == "open"), key=lambda r: (-max(p for _, p in r.suggestions), r.position))
    ]
    assert queue.next("uncertain", match=word).id in {r.id for r in matching}
    assert queue.store.listing("file", "100%_\\", limit=5) == []  # LIKE's own characters match literally
    rows = listing_rows(listed, queue.threshold())
    assert [row[0] for row in rows] == [r.position for r in listed] and all(len(row[-1]) <= 90 for row in rows)
    # the page: a click on a row of the list shows that record; bulk acceptance keeps to the filter
    page = QueuePage(str(trained_kb_copy))
    shown = page.show("file", word)
    assert shown[0] == queue.store.listing("file", word, 1)[0].id and len(shown[6]["value"]) <= LIST_ROWS
    assert queue.accept_above(0.0, match=word) == len(matching)
    assert all(queue.store.get(r.id).decided for r in matching)
    assert all(not queue.store.get(r.id).decided for r in undecided if r.id not in {m.id for m in matching})
    assert "No undecided record matches" in page.show("file", word)[5]


def test_without_a_trained_ranker_the_suggestions_are_the_tag_pages_without_confidence(kb_dir, queue_file, records):
    queue = AnnotationQueue(str(kb_dir))
    queue.load(queue_file)
    record = queue.next("uncertain")
    assert record.id == records[0]["id"], "without confidences every record is as uncertain as the next: file order"
    fast = tagging.tag(record.text, kb_dir=str(kb_dir), llm="fast")
    assert record.preselected == [t["tag"] for t in fast["tags"]] and all(p is None for _, p in record.suggestions)


def test_a_file_with_nothing_to_queue_is_refused_clearly(kb_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="empty.jsonl is empty"):
        AnnotationQueue(str(kb_dir)).load(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match="no text to queue"):
        AnnotationQueue(str(kb_dir)).load(broken)
