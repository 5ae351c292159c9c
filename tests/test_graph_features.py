"""What the tagging graph takes from LangGraph: node caching in the knowledge base, human review
as an interrupt kept by a SQLite checkpointer (surviving a restart), parallel retrieval and
streamed judgments. Real knowledge base, Chroma, MiniLM and the embedded SmolLM2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent import Context, tagging
from agent.runtime import NODE_CACHE, REVIEWS
from agent.tagger import tagger_for
from knowledge_base import InputError, KnowledgeBase, UnknownTagsError

TEXT = (
    "A small command-line utility that converts scanned PNG and JPEG images into searchable PDF documents, "
    "with optical character recognition in several languages. Written in Python; runs in a terminal."
)
NO_LLM = dict(use_generation=False, use_calibration=False, budget=10, max_tags=3, threshold=0.0)


def run_nodes(kb_dir: str, text: str = TEXT, **overrides) -> tuple[list[str], list[str], dict]:
    """(nodes that ran, nodes served from the cache, the output) of one façade run."""
    ctx = Context(kb_dir=kb_dir, **{**NO_LLM, **overrides})
    rt_graph = tagger_for(kb_dir).graph()
    ran, cached = [], []
    for update in rt_graph.stream({"content": text}, config=tagging.review_thread("cache-probe"), context=ctx, stream_mode="updates"):
        meta = update.pop("__metadata__", {}) or {}
        for node in update:
            (cached if meta.get("cached") else ran).append(node)
    return ran, cached, tagging.tag(text, context=ctx)


def test_a_second_identical_run_skips_recall_and_knowledge_until_the_knowledge_base_changes(writable_kb):
    kb_dir = str(writable_kb.directory)
    first_ran, first_cached, first = run_nodes(kb_dir)
    assert {"recall", "knowledge"} <= set(first_ran) and not first_cached
    assert (writable_kb.directory / NODE_CACHE).is_file()

    ran, cached, again = run_nodes(kb_dir)
    assert set(cached) == {"recall", "knowledge"} and "recall" not in ran and "knowledge" not in ran
    assert [c["tag"] for c in again["candidates"]] == [c["tag"] for c in first["candidates"]]
    assert again["tags"] == first["tags"]

    # other settings are other entries
    ran, cached, fewer = run_nodes(kb_dir, budget=4)
    assert "recall" in ran and "recall" not in cached and len(fewer["candidates"]) == 4
    # so is another encoder runtime (LLM4TAG_ENCODER_RUNTIME, read when the encoder is made): its vectors differ
    encoder = tagger_for(kb_dir).kb.encoder
    configured = encoder.runtime
    try:
        encoder.runtime = "torch" if configured != "torch" else "onnx"
        ran, cached, _ = run_nodes(kb_dir)
        assert {"recall", "knowledge"} <= set(ran) and not cached
    finally:
        encoder.runtime = configured

    # a correction changes the knowledge base: nothing cached before it is used after it
    tagging.learn("A terminal program that prints PDF files", [first["candidates"][0]["tag"]], kb_dir=kb_dir)
    ran, cached, _ = run_nodes(kb_dir)
    assert {"recall", "knowledge"} <= set(ran) and not cached

    # use_cache off: always recomputed
    ran, cached, _ = run_nodes(kb_dir, use_cache=False)
    ran2, cached2, _ = run_nodes(kb_dir, use_cache=False)
    assert "recall" in ran and "recall" in ran2 and not cached and not cached2


def test_reading_the_knowledge_base_does_not_change_its_revision(small_kb):
    before = small_kb.revision()
    small_kb.similar_contents(small_kb.encoder.encode_one(TEXT)[0], 5)
    small_kb.stats()
    assert KnowledgeBase(small_kb.directory).revision() == before == small_kb.revision()


REVIEW_IN_ANOTHER_PROCESS = """
import json, sys
from agent import tagging
result = tagging.tag(sys.argv[2], kb_dir=sys.argv[1], review=True, use_generation=False, use_calibration=False,
                     budget=10, max_tags=3, threshold=0.0)
print(json.dumps({"review": result["review"], "tags": [t["tag"] for t in result["tags"]], "content_id": result["content_id"]}))
"""


def test_a_review_waits_across_a_restart_and_a_correction_resumes_it(writable_kb):
    kb_dir = str(writable_kb.directory)
    samples_before = writable_kb.collection("samples").count()
    # the first process tags with review on and exits while the review waits
    out = subprocess.run([sys.executable, "-c", REVIEW_IN_ANOTHER_PROCESS, kb_dir, TEXT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    first = json.loads(out.stdout.strip().splitlines()[-1])
    review = first["review"]
    assert review["status"] == "pending" and review["proposed"] == first["tags"] and first["tags"]
    assert (writable_kb.directory / REVIEWS).is_file()
    assert KnowledgeBase(kb_dir).get_sample(first["content_id"]) is None, "nothing is written while the review waits"

    # this process (a restarted server) finds the waiting review
    waiting = tagging.pending_review(TEXT, kb_dir=kb_dir)
    assert waiting is not None and [t["tag"] for t in waiting["proposed"]] == first["tags"]

    # an invalid decision is refused before anything resumes; the review keeps waiting
    with pytest.raises(InputError, match="accept"):
        tagging.review(first["content_id"], accept=[{"not": "a name"}], kb_dir=kb_dir)
    with pytest.raises(UnknownTagsError):
        tagging.review(first["content_id"], add=["no-such-tag"], kb_dir=kb_dir)
    # a client resuming the graph itself (LangGraph's server API) with a decision that cannot be
    # recorded gets the review back, with the reason, instead of a failed run
    from langgraph.types import Command

    compiled, config = tagger_for(kb_dir).graph(review=True), tagging.review_thread(first["content_id"])
    for bad in ({"add": ["no-such-tag"]}, {"accept": "not a list"}, {}):
        again = compiled.invoke(Command(resume=bad), config=config, context=Context(kb_dir=kb_dir))
        assert again["__interrupt__"][0].value["error"], bad
    assert tagging.pending_review(TEXT, kb_dir=kb_dir)["error"]

    # a correction of the same text, from any surface, is the review's decision
    right, wrong = first["tags"][0], first["tags"][1:]
    extra = next(t for t in waiting["other_candidates"])
    learned = tagging.learn(TEXT, [right, extra], wrong, kb_dir=kb_dir)
    assert learned["review"]["status"] == "reviewed"
    assert learned["review"]["accepted"] == [right] and learned["review"]["added"] == [extra] and learned["review"]["rejected"] == wrong
    sample = KnowledgeBase(kb_dir).get_sample(first["content_id"])
    assert sample is not None and set(sample.tags) == {right, extra} and set(sample.incorrect_tags) == set(wrong)
    assert writable_kb.collection("samples").count() == samples_before + 1
    assert tagging.pending_review(TEXT, kb_dir=kb_dir) is None
    with pytest.raises(InputError, match="no review is waiting"):
        tagging.review(first["content_id"], accept=[right], kb_dir=kb_dir)


def test_without_review_a_correction_is_recorded_directly(writable_kb):
    kb_dir = str(writable_kb.directory)
    result = tagging.tag(TEXT, context=Context(kb_dir=kb_dir, **NO_LLM))
    assert "review" not in result
    learned = tagging.learn(TEXT, [result["tags"][0]["tag"]], kb_dir=kb_dir)
    assert "review" not in learned and KnowledgeBase(kb_dir).get_sample(learned["id"]).tags == (result["tags"][0]["tag"],)


def test_waiting_reviews_are_bounded_kept_once_and_dropped_when_stale(writable_kb):
    """reviews.sqlite never pruned (issue 31): five reviews of 900 KB texts had grown it 64 MB. A
    review run is checkpointed once, when it stops to wait; at most ``max_reviews`` wait (a
    further one is refused with what to do, over REST 429); one left waiting longer than
    ``review_days`` is dropped when the next review starts, and the file gives the space back."""
    import sqlite3
    import time
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from knowledge_base.errors import TooManyReviewsError
    from ui.rest import create_app

    kb_dir = str(writable_kb.directory)
    rt = tagger_for(kb_dir)
    rt.kb.update_config(replace(rt.kb.config, max_reviews=2))
    other = "A web browser for the terminal that renders HTML pages as text and follows links with the keyboard."
    long_text = TEXT + " " + " ".join(f"Detail {i} of the image conversion pipeline." for i in range(4000))  # ~180 KB
    first = tagging.tag(long_text, review=True, context=Context(kb_dir=kb_dir, **NO_LLM))
    second = tagging.tag(other, review=True, context=Context(kb_dir=kb_dir, **NO_LLM))
    assert first["review"]["status"] == second["review"]["status"] == "pending"
    path = writable_kb.directory / REVIEWS
    with sqlite3.connect(str(path)) as db:
        per_thread = dict(db.execute("SELECT thread_id, COUNT(*) FROM checkpoints GROUP BY thread_id"))
    assert per_thread == {first["review"]["thread_id"]: 1, second["review"]["thread_id"]: 1}  # one checkpoint each, not one per node

    # the third review is refused, and says what to do; the same content again replaces its own
    with pytest.raises(TooManyReviewsError, match="2 reviews are waiting.*max_reviews.*decide some first"):
        tagging.tag("A tool that synchronises files between two folders over SSH.", review=True, context=Context(kb_dir=kb_dir, **NO_LLM))
    again = tagging.tag(other, review=True, context=Context(kb_dir=kb_dir, **NO_LLM))
    assert again["review"]["status"] == "pending"
    client = TestClient(create_app(kb_dir, Context(**NO_LLM)), raise_server_exceptions=False)
    refused = client.post("/v1/tag", json={"text": "A tool that synchronises files between two folders over SSH.", "review": True})
    assert refused.status_code == 429 and "max_reviews" in refused.json()["detail"]
    assert tagging.pending_review(long_text, kb_dir=kb_dir) is not None  # nothing waiting was lost to the refusals

    # a decision frees its place
    tagging.review(second["content_id"], accept=[t["tag"] for t in second["tags"][:1]], kb_dir=kb_dir)
    third = tagging.tag(
        "A tool that synchronises files between two folders over SSH.", review=True, context=Context(kb_dir=kb_dir, **NO_LLM)
    )
    assert third["review"]["status"] == "pending"

    # the long text's review is left waiting past review_days: the next review drops it and the file shrinks
    def size():  # the file and LangGraph's write-ahead log
        return sum(p.stat().st_size for p in path.parent.glob(REVIEWS + "*") if p.suffix != ".lock")

    before = size()
    with sqlite3.connect(str(path)) as db:
        db.execute("UPDATE llm4tag_reviews SET started = ? WHERE thread_id = ?", (time.time() - 31 * 86400, first["review"]["thread_id"]))
    tagging.tag(other, review=True, context=Context(kb_dir=kb_dir, **NO_LLM))
    assert tagging.pending_review(long_text, kb_dir=kb_dir) is None
    assert tagging.pending_review("A tool that synchronises files between two folders over SSH.", kb_dir=kb_dir) is not None
    assert size() < before - 100_000


def test_judgments_stream_one_by_one_with_the_embedded_model(small_kb_dir):
    ctx = Context(kb_dir=str(small_kb_dir), budget=8, max_tags=2, judge_top=3, threshold=0.0, use_generation=False, use_knowledge=False)
    steps = list(tagging.tag_stream(TEXT, context=ctx))
    kinds = [node for node, _, _ in steps]
    judged = [changes for node, changes, _ in steps if node == "judgment"]
    assert len(judged) == 3 and kinds.index("judgment") < kinds.index("calibrate")
    assert all(0.0 < j["p_yes"] < 1.0 and j["prompt_tokens"] > 0 for j in judged)
    assert judged == steps[-1][2]["judgments"]


def test_review_through_rest_and_the_cli(writable_kb):
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from ui.cli import main
    from ui.rest import create_app

    kb_dir = str(writable_kb.directory)
    with TestClient(create_app(kb_dir, Context(**NO_LLM)), raise_server_exceptions=False) as client:
        tagged = client.post("/v1/tag", json={"text": TEXT, "review": True, "llm": False})
        assert tagged.status_code == 200, tagged.text
        body = tagged.json()
        cid, proposed = body["content_id"], [t["tag"] for t in body["tags"]]
        assert body["review"]["status"] == "pending" and body["review"]["proposed"] == proposed
        assert client.get(f"/v1/review/{cid}").json()["text"] == TEXT
        assert client.get("/v1/review/sha1:0000").status_code == 404
        unknown = client.post(f"/v1/review/{cid}", json={"add": ["no-such-tag"]})
        assert unknown.status_code == 400 and "no-such-tag" in unknown.json()["detail"]
        assert client.post(f"/v1/review/{cid}", json={"accept": proposed, "extra": 1}).status_code == 422
        assert client.get(f"/v1/review/{cid}").status_code == 200, "a refused decision leaves the review waiting"
        learned = client.post("/v1/learn", json={"text": TEXT, "correct": proposed[:1], "incorrect": proposed[1:]})
        assert learned.status_code == 200, learned.text
        assert learned.json()["review"]["accepted"] == proposed[:1] and learned.json()["review"]["rejected"] == proposed[1:]
        assert client.get(f"/v1/review/{cid}").status_code == 404

    other = "A terminal music player that plays MP3 and Ogg files from a playlist, with a curses interface."
    runner = CliRunner()
    out = runner.invoke(main, ["--kb", kb_dir, "tag", other, "--review", "--no-llm", "--threshold", "0"])
    assert out.exit_code == 0, out.output
    line = next(l for l in out.output.splitlines() if l.startswith("review pending: llm4tag review "))
    cid = line.split()[4]
    shown = runner.invoke(main, ["--kb", kb_dir, "review", cid])
    assert shown.exit_code == 0 and "proposed" in shown.output, shown.output
    first = next(l.split()[-1] for l in shown.output.splitlines() if l.strip().startswith("proposed"))
    done = runner.invoke(main, ["--kb", kb_dir, "review", cid, "--accept", first])
    assert done.exit_code == 0, done.output
    assert KnowledgeBase(kb_dir).get_sample(cid).tags == (first,)
    again = runner.invoke(main, ["--kb", kb_dir, "review", cid])
    assert again.exit_code != 0 and "no review is waiting" in again.output


def test_runs_without_review_keep_no_state_between_them(writable_kb):
    kb_dir = str(writable_kb.directory)
    long_text = TEXT + " More words about the tool." * 200
    ctx = Context(kb_dir=kb_dir, **NO_LLM)
    notes = [tagging.tag(long_text, context=ctx)["notes"] for _ in range(3)]
    assert notes[0] == notes[1] == notes[2] and any("window" in n for n in notes[0])
    assert not (writable_kb.directory / REVIEWS).exists(), "a run without review keeps no checkpoint"

    reviewed = tagging.tag(TEXT, context=Context(kb_dir=kb_dir, review=True, **NO_LLM))
    tagging.review(reviewed["content_id"], accept=[reviewed["tags"][0]["tag"]], kb_dir=kb_dir)
    plain = tagging.tag(TEXT, context=ctx)
    assert "review" not in plain and not any(n.startswith("review:") for n in plain["notes"])


def test_a_decision_that_fails_to_be_stored_does_not_stick(writable_kb, monkeypatch):
    from agent.runtime import Runtime
    from knowledge_base import KnowledgeBaseError

    kb_dir = str(writable_kb.directory)
    first = tagging.tag(TEXT, context=Context(kb_dir=kb_dir, review=True, **NO_LLM))
    a, b = first["review"]["proposed"][:2]
    real = Runtime.record
    calls = []

    def store_fails_once(self, *args, **kwargs):  # fault injection: the store refuses the first write
        calls.append(args)
        if len(calls) == 1:
            raise KnowledgeBaseError("the write lock is held by another process")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Runtime, "record", store_fails_once)
    with pytest.raises(KnowledgeBaseError, match="write lock"):
        tagging.review(first["content_id"], accept=[a], reject=[b], kb_dir=kb_dir)
    assert "write lock" in tagging.pending_review(TEXT, kb_dir=kb_dir)["error"]
    assert KnowledgeBase(kb_dir).get_sample(first["content_id"]) is None
    done = tagging.review(first["content_id"], accept=[b], reject=[a], kb_dir=kb_dir)
    assert done["review"]["accepted"] == [b] and done["review"]["rejected"] == [a]
    assert KnowledgeBase(kb_dir).get_sample(first["content_id"]).tags == (b,)


def test_two_decisions_at_once_one_wins_and_the_other_is_told(writable_kb):
    from concurrent.futures import ThreadPoolExecutor

    kb_dir = str(writable_kb.directory)
    first = tagging.tag(TEXT, context=Context(kb_dir=kb_dir, review=True, **NO_LLM))
    a, b = first["review"]["proposed"][:2]

    def decide(accepted):
        try:
            return tagging.review(first["content_id"], accept=[accepted], kb_dir=kb_dir)["review"]["accepted"]
        except InputError as exc:
            return str(exc)

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(decide, [a, b]))
    winners = [o for o in outcomes if isinstance(o, list)]
    assert len(winners) == 1 and any("no review is waiting" in o for o in outcomes if isinstance(o, str)), outcomes
    assert list(KnowledgeBase(kb_dir).get_sample(first["content_id"]).tags) == winners[0]


def test_a_correction_under_an_id_or_of_a_tagged_id_resumes_the_review(writable_kb):
    kb_dir = str(writable_kb.directory)
    tagged = tagging.tag(TEXT, content_id="doc-7", context=Context(kb_dir=kb_dir, review=True, **NO_LLM))
    assert tagged["content_id"] == "doc-7" and tagged["review"]["status"] == "pending"
    learned = tagging.learn(TEXT, [tagged["tags"][0]["tag"]], kb_dir=kb_dir, sample_id="doc-7")
    assert learned["review"]["status"] == "reviewed" and learned["id"] == "doc-7"
    assert tagging.pending_review(content_id="doc-7", kb_dir=kb_dir) is None


def test_a_review_decision_never_overwrites_an_acknowledged_learn_of_the_same_text(writable_kb):
    """Issue 31 (10): in 1 of 12 races both got 200 and the stored tags were the review's."""
    import threading

    from knowledge_base.errors import NoReviewWaitingError

    kb_dir = str(writable_kb.directory)
    for race in range(12):
        text = f"{TEXT} Race {race}."
        tagged = tagging.tag(text, context=Context(kb_dir=kb_dir, review=True, **NO_LLM))
        proposed = [t["tag"] for t in tagged["tags"]]
        assert len(proposed) >= 2, proposed
        learned, decided, errors = [], [], []
        start = threading.Barrier(2)

        def learn():
            start.wait()
            learned.append(tagging.learn(text, [proposed[0]], [proposed[1]], kb_dir=kb_dir))

        def decide():
            start.wait()
            try:
                decided.append(tagging.review(tagged["content_id"], accept=[proposed[1]], reject=[proposed[0]], kb_dir=kb_dir))
            except NoReviewWaitingError as exc:  # the learn resumed it first: one review takes one decision
                errors.append(exc)

        threads = [threading.Thread(target=learn), threading.Thread(target=decide)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert learned and len(decided) + len(errors) == 1
        sample = KnowledgeBase(kb_dir).get_sample(tagged["content_id"])
        assert (list(sample.tags), list(sample.incorrect_tags)) == ([proposed[0]], [proposed[1]]), (race, decided, errors)


def test_the_node_cache_serves_another_process(writable_kb):
    kb_dir = str(writable_kb.directory)
    run_nodes(kb_dir)
    probe = (
        "import json, sys\n"
        "from agent import Context\n"
        "from agent.tagger import tagger_for\n"
        "ctx = Context(kb_dir=sys.argv[1], use_generation=False, use_calibration=False, budget=10, max_tags=3, threshold=0.0)\n"
        "g = tagger_for(sys.argv[1]).graph()\n"
        "cached = [n for u in g.stream({'content': sys.argv[2]}, context=ctx, stream_mode='updates')"
        " if (u.pop('__metadata__', {}) or {}).get('cached') for n in u]\n"
        "print(json.dumps(cached))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, kb_dir, TEXT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(json.loads(out.stdout.strip().splitlines()[-1])) == {"recall", "knowledge"}


def test_a_failed_web_search_is_not_cached(writable_kb, monkeypatch):
    import ddgs

    searches = []
    real = ddgs.DDGS.text

    def counted(self, *args, **kwargs):  # the real client (no network here: it fails), counted
        searches.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ddgs.DDGS, "text", counted)
    ctx = dict(use_web_search=True, use_generation=True, use_calibration=False, web_timeout_s=1.0)
    kb_dir = str(writable_kb.directory)
    c = Context(kb_dir=kb_dir, budget=10, max_tags=3, threshold=0.0, **ctx)
    compiled = tagger_for(kb_dir).graph()
    for _ in range(2):
        updates = list(compiled.stream({"content": TEXT}, context=c, stream_mode="updates"))
        knowledge = next(u["knowledge"] for u in updates if "knowledge" in u)
        assert any(n.startswith("web search unavailable") for n in knowledge["notes"])
    assert len(searches) >= 4, "each run searched again (two attempts each): a failure is never served from the cache"


def test_from_agent_import_graph_is_the_compiled_graph_in_any_import_order():
    from agent import tagging  # noqa: F401 — imports the submodule agent.graph first
    from agent import graph
    from langgraph.graph.state import CompiledStateGraph

    assert isinstance(graph, CompiledStateGraph)
