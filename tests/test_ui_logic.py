"""The app's logic without a browser: commands, verdicts, re-filtering, step rendering from real
graph updates, file reading and CSV conversion, feedback and undo on a real knowledge base.

The graph runs for real up to the knowledge step (MiniLM, Chroma, networkx on the small
knowledge base); the LLM's two outputs (a selection, Yes/No logits) are written down as values
so the file stays fast — the LLM itself is tested in test_agent_graph and test_ui_browser.
"""

from __future__ import annotations

import json
import re

import pytest

from agent import Context, graph, tagging
from agent.batch import read_items
from agent.llm import yes_probability
from agent.confidence import rank_tags, rethreshold, scored_tags
from knowledge_base import InputError, KnowledgeBase
from knowledge_base.demo import demo_examples
from knowledge_base.loaders import content_id, require_text
from knowledge_base.neighbourhood import neighbourhood
from ui import render
from ui.app import TaggingApp, new_session
from ui.logic import (
    Command,
    apply_verdict,
    csv_to_jsonl,
    empty_verdict,
    parse_command,
    prepare_batch_input,
    read_dropped_file,
    resolve_tags,
)

TEXT = demo_examples()[0]["text"]  # a validation text, never in the knowledge base


# ---- commands -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "message, expected",
    [
        ("accept", Command("accept")),
        ("  Accept all ", Command("accept")),
        ("accept devel::i18n, role::program", Command("accept", ("devel::i18n", "role::program"))),
        ("reject `role::program`", Command("reject", ("role::program",))),
        ("add works-with::text", Command("add", ("works-with::text",))),
        ("explain devel::i18n", Command("explain", ("devel::i18n",))),
        ("explain", Command("explain")),
        ("UNDO", Command("undo")),
        ("help", Command("help")),
    ],
)
def test_parse_command_reads_follow_ups(message, expected):
    assert parse_command(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "",
        "   ",
        "undo the last three changes",  # undo takes no argument: a text to tag
        "Add-on for Firefox that blocks ads",
        "acceptance testing framework for Python",
        "accept devel::i18n\nand then some more text",  # several lines: a text
        "add " + "x" * 400,
        TEXT,
    ],
)
def test_parse_command_leaves_texts_to_tag(message):
    assert parse_command(message) is None


def test_resolve_tags_against_the_real_repository(small_kb):
    known = small_kb.tag_names()
    assert {"devel::i18n", "role::program"} <= known
    assert resolve_tags(["devel::i18n"], known) == (["devel::i18n"], [])
    assert resolve_tags(["DEVEL::I18N"], known) == (["devel::i18n"], [])
    assert resolve_tags(["devel::i18n role::program"], known) == (["devel::i18n", "role::program"], [])
    assert resolve_tags(["devel::i18n", "no-such::tag", "devel::i18n"], known) == (["devel::i18n"], ["no-such::tag"])


def test_apply_verdict_keeps_each_tag_on_one_side():
    v = apply_verdict(empty_verdict(), "accept", ["a", "b"])
    v = apply_verdict(v, "reject", ["b", "c"])
    v = apply_verdict(v, "add", ["d", "c"])
    assert v == {"correct": ["a", "d", "c"], "incorrect": ["b"]}
    with pytest.raises(ValueError):
        apply_verdict(v, "explain", ["a"])


# ---- real graph updates -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def early_updates(small_kb_dir):
    """The graph's real updates for recall, examples and knowledge (stopped before the LLM)."""
    ctx = Context(kb_dir=str(small_kb_dir), budget=10)
    updates = {}
    for update in graph.stream({"content": TEXT}, context=ctx, stream_mode="updates"):
        updates.update(update)
        if "examples" in updates and "knowledge" in updates:  # the two parallel branches after recall
            break
    return updates


@pytest.fixture(scope="module")
def result(small_kb_dir):
    """A complete result: the real early steps (as the façade streams them) plus an LLM selection
    and Yes/No logits as values."""
    state: dict = {}
    for node, _, so_far in tagging.tag_stream(TEXT, context=Context(kb_dir=str(small_kb_dir), budget=10)):
        state = so_far
        if node == "knowledge":
            break
    candidates = state["candidates"]
    history = next(c["tag"] for c in candidates if "C2C2T" in c["paths"])
    chosen = [c["tag"] for c in candidates if c["tag"] != history][:3]
    state["selection"] = {
        "tags": chosen + [history],
        "raw": json.dumps(chosen),
        "from_history": [history],
        "rejected": [],
        "prompt_tokens": 900,
        "completion_tokens": 20,
        "template": "generate_retrieval",
        "backend": "llama.cpp",
    }
    state["notes"] = [*state["notes"], "a note from generation"]
    state["timings"] = {**state["timings"], "generate": 3.0}
    logits = [(31.2, 30.9), (30.1, 30.5), (30.8, 30.7), (29.0, 30.0)]
    judgments = [
        {"tag": t, "p_yes": round(yes_probability(y, n), 4), "logit_yes": y, "logit_no": n} for t, (y, n) in zip(chosen + [history], logits)
    ]
    state["judgments"] = judgments
    state["timings"]["calibrate"] = 1.0
    state["tags"] = rank_tags(scored_tags(state), 0.5)
    return state


def test_stream_updates_become_collapsible_steps(early_updates, small_kb):
    assert list(early_updates)[:2] == ["prepare", "recall"] and set(early_updates) == {"prepare", "recall", "examples", "knowledge"}
    recall = early_updates["recall"]
    msg = render.step_message("recall", recall, 0.5, recall["timings"]["recall"])
    assert msg["role"] == "assistant" and msg["metadata"]["status"] == "done"
    assert msg["metadata"]["duration"] == round(recall["timings"]["recall"], 2)
    assert msg["metadata"]["title"].startswith(f"Candidates · {len(recall['candidates'])} tags")
    for cand in recall["candidates"]:
        assert f">{cand['tag']}<" in msg["content"]  # a cell of the candidates table
    c2c2t = [c for c in recall["candidates"] if "C2C2T" in c["paths"]]
    assert c2c2t, "the small knowledge base has history close to the demo text"
    via = c2c2t[0]["evidence"][0]["via"][0]["id"]
    assert "C2C2T" in msg["metadata"]["title"] and f"via {via}" in msg["content"]
    assert "Similar items the C2C2T path walks through" in msg["content"]

    examples = early_updates["examples"]
    msg = render.step_message("examples", examples, 0.5)
    assert msg["metadata"]["title"] == f"Examples · {len(examples['examples'])} similar annotated samples"
    first = examples["examples"][0]
    assert first["id"] in msg["content"] and f"`{first['tags'][0]}`" in msg["content"]

    knowledge = early_updates["knowledge"]
    msg = render.step_message("knowledge", knowledge, 0.5)
    assert msg["metadata"]["title"] == f"Knowledge · {len(knowledge['knowledge'])} snippets"
    for snippet in knowledge["knowledge"]:
        assert snippet["source"] in msg["content"]  # guide.md#N: the source is shown


def test_pending_step_and_failure():
    pending = render.pending_message("generate")
    assert render.is_pending(pending) and pending["metadata"]["title"].startswith("The LLM is selecting")
    failed = render.failed_step(pending, "the model server is down")
    assert not render.is_pending(failed) and failed["metadata"]["title"].startswith("✗ The LLM is selecting")
    assert "the model server is down" in failed["content"]


def test_generation_and_calibration_steps(result):
    sel = render.step_message("generate", {"selection": result["selection"], "notes": []}, 0.5)
    history = result["selection"]["from_history"][0]
    assert sel["metadata"]["title"] == "Generator · selected 4 tags (1 from history)"
    assert "Raw output:" in sel["content"] and f"`{history}`" in sel["content"].split("Kept from history")[1]
    cal = render.step_message("calibrate", {"judgments": result["judgments"], "tags": result["tags"]}, 0.5)
    kept = len(result["tags"])
    assert cal["metadata"]["title"] == f"Confidence · P(Yes) for 4 tags, {kept} kept at ≥ 0.50"
    assert cal["content"].count('class="l4t-tag"') == 4
    assert cal["content"].count('data-state="kept"') == kept


def test_refilter_by_threshold_without_the_model(result):
    p = sorted(j["p_yes"] for j in result["judgments"])
    assert [t["tag"] for t in rethreshold(result, 0.0)] == [j["tag"] for j in sorted(result["judgments"], key=lambda j: -j["p_yes"])]
    assert rethreshold(result, 1.0) == []
    middle = rethreshold(result, p[2])
    assert [t["tag"] for t in middle] == [t["tag"] for t in rethreshold(result, 0.0)][:2]
    assert [t["rank"] for t in middle] == [1, 2]
    history = result["selection"]["from_history"][0]
    assert {t["tag"]: t["origin"] for t in rethreshold(result, 0.0)}[history] == "history"
    assert rethreshold(result, 0.5) == result["tags"]
    # without calibration there is nothing to re-filter: the tags stay as they are
    uncalibrated = {**result, "judgments": [], "tags": [{"tag": "x", "confidence": None, "rank": 1}]}
    assert rethreshold(uncalibrated, 0.9) == uncalibrated["tags"]


def test_final_message_and_panel_mark_low_and_dropped_tags(result):
    shown = rethreshold(result, 0.45)
    msg = render.final_message(result, shown, 0.45)
    assert "metadata" not in msg  # the answer itself is not collapsed
    assert msg["content"].count('data-state="kept"') == len(shown)
    assert msg["content"].count('data-state="dropped"') == 4 - len(shown)
    low = [t for t in shown if t["confidence"] < 0.45 + render.LOW_MARGIN or t["confidence"] < 0.5]
    assert [render.is_low(c, 0.2) for c in (0.25, 0.45, 0.55)] == [True, True, False]
    assert msg["content"].count("low confidence") == len(low)
    assert "below threshold" in msg["content"] and "from history" in msg["content"]
    rejected = next(j["tag"] for j in result["judgments"] if j["tag"] != shown[0]["tag"])
    panel = render.result_panel(result, shown, 0.45, {"correct": [shown[0]["tag"]], "incorrect": [rejected]})
    kept = [t for t in shown if t["tag"] != rejected]  # a rejected tag no longer counts among the tags kept
    assert f'data-count="{len(kept)}"' in panel and "✓ accepted" in panel and "✗ rejected" in panel
    assert f'data-tag="{rejected}"' in panel  # a rejected tag stays visible, struck through
    assert "No tag</b> reaches" in render.result_panel(result, [], 1.0)
    # a tag accepted from under the threshold loses its "below threshold" badge; one tag is "1 tag"
    under = next(j["tag"] for j in result["judgments"] if j["tag"] not in {t["tag"] for t in shown})
    accepted = render.result_panel(result, shown[:1], 0.45, {"correct": [shown[0]["tag"], under], "incorrect": []})
    row = accepted.split(f'data-tag="{under}"')[1].split('class="l4t-tag"')[0]
    assert "below threshold" not in row and "✓ accepted" in row
    assert "<b>1 tag</b>" in accepted and "+ 1 accepted by you" in accepted
    assert "(1 tag at confidence" in render.final_message(result, shown[:1], 0.45)["content"]
    # the bars line up: every row is the same grid, whatever the length of the tag's name
    assert panel.count("grid-template-columns:minmax(6em,13em) 140px 3.2em minmax(0,1fr)") == panel.count('class="l4t-tag"')


def test_explain_tag(result):
    history = result["selection"]["from_history"][0]
    text = render.explanation_markdown(tagging.explain(result, history), 0.5)
    assert "kept because most similar history items carry it" in text and "C2C2T vote" in text and "P(Yes)" in text
    assert "not among the candidates" in render.explanation_markdown(tagging.explain(result, "no-such::tag"), 0.5)


# ---- files ----------------------------------------------------------------------------------
def test_read_dropped_file(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\nSome text", encoding="utf-8")
    assert read_dropped_file(tmp_path / "a.md") == ("# Title\n\nSome text", None, None)
    (tmp_path / "b.jsonl").write_text('{"text": "first", "title": "T"}\n\n{"text": "second"}\n', encoding="utf-8")
    text, title, note = read_dropped_file(tmp_path / "b.jsonl")
    assert (text, title) == ("first", "T") and "holds 2 items" in note and "Batch tab" in note
    (tmp_path / "c.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"c.jsonl:1: malformed JSON"):
        read_dropped_file(tmp_path / "c.jsonl")
    (tmp_path / "d.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_dropped_file(tmp_path / "d.txt")
    (tmp_path / "e.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        read_dropped_file(tmp_path / "e.txt")
    with pytest.raises(InputError, match=r"\.txt, \.md or \.jsonl"):
        read_dropped_file(tmp_path / "f.pdf")


def test_csv_to_jsonl_reports_bad_rows_through_the_batch_reader(tmp_path):
    src = tmp_path / "items.csv"
    src.write_text(
        '\ufeffid,Text,title\np1,"editor for gettext PO files",PO\n,"a text with ""quotes"", commas\nand two lines",\np3,,\n',
        encoding="utf-8",
    )
    dst = tmp_path / "items.jsonl"
    assert csv_to_jsonl(src, dst) == 3
    rows = [json.loads(l) for l in dst.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"id": "p1", "text": "editor for gettext PO files", "title": "PO"}
    assert rows[1] == {"id": "row-2", "text": 'a text with "quotes", commas\nand two lines'}
    assert rows[2] == {"id": "p3", "text": ""}
    items = list(read_items(dst))
    assert [i.key for i in items] == ["p1", "row-2", "p3"]
    assert items[0].title == "PO" and items[1].error is None
    assert items[2].error == "'text' is missing or empty"  # reported by the batch, not fatal

    no_text = tmp_path / "bad.csv"
    no_text.write_text("id,body\n1,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"no 'text' column \(its columns: 'id', 'body'\)"):
        csv_to_jsonl(no_text, tmp_path / "bad.jsonl")
    assert prepare_batch_input(src, tmp_path).name == "items.jsonl"
    assert prepare_batch_input(dst, tmp_path) == dst
    with pytest.raises(InputError, match="upload a .jsonl file"):
        prepare_batch_input(tmp_path / "items.xlsx", tmp_path)


# ---- knowledge base views and feedback ----------------------------------------------------------
def test_neighbourhood_picture_of_a_real_tag(small_kb):
    sub = neighbourhood(small_kb, "t:devel::i18n", limit=20)
    svg = render.neighbourhood_svg(sub, "t:devel::i18n")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert len(re.findall(r"<circle [^>]*><title>", svg)) == sub.number_of_nodes()
    assert len(re.findall(r"<(?:line|path) [^>]*><title>", svg)) == sub.number_of_edges()
    assert 'stroke="#111827" stroke-width="3"' in svg  # the chosen node is ringed
    # one row per node in its column: no two labels at the same place
    labels = re.findall(r'<text x="(-?\d+)" y="(-?\d+)" font-size="12"', svg)
    assert len(labels) == sub.number_of_nodes() == len(set(labels))
    listing = render.neighbourhood_list(sub, "t:devel::i18n")
    assert "| content | det |" in listing
    assert render.neighbourhood_svg(neighbourhood(small_kb, "t:nope"), "t:nope") == "<p>The node is not in the graph.</p>"


def test_stats_markdown(small_kb):
    md = render.stats_markdown(small_kb.stats())
    assert f"| annotated samples | {small_kb.stats()['samples']} |" in md and "deterministic" in md


def test_feedback_and_undo_write_the_knowledge_base(writable_kb, result):
    app = TaggingApp(str(writable_kb.directory))
    session = new_session()
    session["last"] = {"result": result}
    cid = result["content_id"]
    assert cid == content_id(require_text(TEXT))
    before = writable_kb.stats()["samples"]
    history: list = []
    first, second = result["candidates"][0]["tag"], result["candidates"][1]["tag"]

    app.run_command(parse_command(f"accept {first}"), history, session, 0.5)
    kb = KnowledgeBase(writable_kb.directory)
    assert kb.get_sample(cid).tags == (first,) and kb.stats()["samples"] == before + 1
    assert f"t:{first}" in kb.graph.to_networkx()[f"c:{cid}"]

    app.run_command(parse_command(f"reject {second}"), history, session, 0.5)
    assert kb.get_sample(cid).incorrect_tags == (second,)
    app.run_command(parse_command("add no-such::tag"), history, session, 0.5)
    assert "'no-such::tag' is not in the tag repository" in history[-1]["content"] and "Nothing was written" in history[-1]["content"]

    app.run_command(parse_command("undo"), history, session, 0.5)
    assert kb.get_sample(cid).incorrect_tags == () and session["verdict"] == {"correct": [first], "incorrect": []}
    app.run_command(parse_command("undo"), history, session, 0.5)
    assert kb.get_sample(cid) is None and kb.stats()["samples"] == before
    kb.graph.refresh()
    assert f"c:{cid}" not in kb.graph.to_networkx()
    app.run_command(parse_command("undo"), history, session, 0.5)
    assert history[-1]["content"].startswith("Nothing to undo")


def test_undo_restores_a_sample_that_existed(writable_kb, result):
    existing = result["examples"][0]["id"]
    old = writable_kb.get_sample(existing)
    app = TaggingApp(str(writable_kb.directory))
    session = new_session()
    session["last"] = {"result": {**result, "content_id": existing, "text": old.text}}
    history: list = []
    app.run_command(parse_command("accept"), history, session, 0.0)  # every generated tag
    assert set(writable_kb.get_sample(existing).tags) == {t["tag"] for t in rethreshold(result, 0.0)}
    app.run_command(parse_command("undo"), history, session, 0.0)
    assert writable_kb.get_sample(existing) == old
    assert history[-1]["content"].startswith("↶ Undid") and "back to what it was" in history[-1]["content"]


def test_commands_need_a_result_and_a_shown_tag(small_kb_dir, result):
    app = TaggingApp(str(small_kb_dir))
    history: list = []
    session = new_session()
    app.run_command(Command("accept"), history, session, 0.5)
    assert "There is no result yet" in history[-1]["content"]
    session["last"] = {"result": result}
    app.run_command(Command("accept"), history, session, 1.0)
    assert "No tag is shown at the threshold 1.00" in history[-1]["content"]
    app.run_command(Command("reject"), history, session, 0.5)
    assert "Name the tag: reject TAG" in history[-1]["content"]
    assert session["undo"] == []


def test_api_functions_learn_and_search(writable_kb):
    import gradio as gr

    app = TaggingApp(str(writable_kb.directory))
    hits = app.search_tags("i18n", 3)
    assert hits[0] == {"tag": "devel::i18n", "similarity": 1.0, "description": "Internationalization"}
    learned = app.learn("a tool to translate gettext catalogues", ["devel::i18n"], ["role::program"])
    cid = learned["id"]
    assert learned["correct"] == ["devel::i18n"] and learned["incorrect"] == ["role::program"]
    assert KnowledgeBase(writable_kb.directory).get_sample(cid).incorrect_tags == ("role::program",)
    with pytest.raises(gr.Error, match="unknown tags"):
        app.learn("some text", ["no-such::tag"])
    with pytest.raises(gr.Error, match="the content is empty"):
        app.search_tags("  ")


def test_api_tag_after_api_learn_returns_the_corrected_tags(writable_kb, monkeypatch):
    monkeypatch.setenv("LLM4TAG_USE_GENERATION", "false")  # fused recall only: the verdict must hold without the LLM too
    monkeypatch.setenv("LLM4TAG_USE_CALIBRATION", "false")
    app = TaggingApp(str(writable_kb.directory))
    text = "a tool to translate gettext catalogues"
    app.learn(text, ["devel::i18n"], ["role::program"])
    result = app.tag(text, threshold=0.5)
    tags = [t["tag"] for t in result["tags"]]
    assert tags[0] == "devel::i18n" and "role::program" not in tags
    assert result["tags"][0]["origin"] == "memory"


def test_learned_confidence_is_what_the_page_filters_and_shows():
    from ui.render import render_calibration

    judgments = [
        {"tag": "a", "p_yes": 0.41, "confidence": 0.9, "logit_yes": 0.1, "logit_no": 0.4},
        {"tag": "b", "p_yes": 0.62, "confidence": 0.2, "logit_yes": 0.5, "logit_no": 0.0},
    ]
    result = {"selection": {"tags": ["a", "b"]}, "candidates": [], "judgments": judgments}
    assert [(t["tag"], t["confidence"]) for t in scored_tags(result)] == [("a", 0.9), ("b", 0.2)]
    title, body = render_calibration({"judgments": judgments, "tags": [{"tag": "a"}]}, 0.5)
    assert title.startswith("Confidence · fused for 2 tags, 1 kept")
    assert "| llm | 0.410 | 0.900 |" in body
    # the judge off: the table says where each confidence came from
    no_judge = [{"tag": "a", "origin": "recall", "p_yes": None, "confidence": 0.8}]
    title, body = render_calibration({"judgments": no_judge, "tags": [{"tag": "a"}]}, 0.5)
    assert title.startswith("Confidence · fused for 1 tag,") and "recall's own P(right)" in body and "| recall |  | 0.800 |" in body


def test_the_page_answers_with_fused_recall_before_the_language_model_is_loaded(trained_kb_dir, tmp_path):
    """Issue 26: the page waited for the language model's warm-up even where auto never calls it."""
    import shutil
    import threading

    from ui.app import WarmUp

    kb_dir = shutil.copytree(trained_kb_dir, tmp_path / "kb", ignore=shutil.ignore_patterns(".write.lock"))
    warm = WarmUp()
    warm.recall_ready.set()  # the encoder is loaded; the language model is still loading (ready is not set)
    assert "Fused recall ready" in warm.status()
    app = TaggingApp(str(kb_dir), warm)
    outputs: list = []
    runner = threading.Thread(
        target=lambda: outputs.extend(app.respond(demo_examples()[0]["text"], [], None, 0.0, "multi", 0, 0, False, "llamacpp", "auto")),
        daemon=True,
    )
    runner.start()
    runner.join(120)
    assert not runner.is_alive(), "the page waited for the language model"
    session = outputs[-1][1]
    assert session["last"]["result"]["route"]["llm"] is False and session["last"]["result"]["tags"]
    panels = [o[2] for o in outputs if isinstance(o[2], str)]
    assert len(panels) >= 2 and all('id="l4t-panel"' in p for p in panels)  # recall's tags were shown before the final answer
    assert not warm.ready.is_set()


def test_the_pages_vocabulary_loader_checks_the_file_like_the_cli(writable_kb, tmp_path):
    """The knowledge-base tab reads a vocabulary with the same checks: a header without a tag
    column refuses the file and writes nothing; a parent already in the repository is accepted;
    an unread column is named."""
    app = TaggingApp(str(writable_kb.directory))
    before = writable_kb.stats()["tags"]
    bad = tmp_path / "bad.csv"
    bad.write_text("code,description\nx1,First\n", encoding="utf-8")
    message, _ = app.load_file(str(bad), "tags", "skip")
    assert "names no tag column" in message and KnowledgeBase(writable_kb.directory).stats()["tags"] == before
    parent = sorted(writable_kb.tag_names())[0]
    good = tmp_path / "more.tsv"
    good.write_text(f"tag\tdescription\tparent\towner\nbrand-new-child\tA child of an existing tag\t{parent}\tme\n", encoding="utf-8")
    message, _ = app.load_file(str(good), "tags", "skip")
    assert "1 added" in message and "'owner'" in message
    assert KnowledgeBase(writable_kb.directory).has_tag("brand-new-child")


def test_the_pages_tag_change_renames_and_says_what_moved(writable_kb):
    app = TaggingApp(str(writable_kb.directory))
    got = writable_kb.collection("samples").get(include=["metadatas"], limit=1)
    tag = json.loads(got["metadatas"][0]["tags"])[0]
    message, _ = app.change_tag(tag, "merge", "no-such-tag-here")
    assert "rename instead of merge" in message and KnowledgeBase(writable_kb.directory).has_tag(tag)
    message, _ = app.change_tag(tag, "rename", "page-renamed")
    assert message.startswith("✓ renamed") and "page-renamed" in message
    fresh = KnowledgeBase(writable_kb.directory)
    assert fresh.has_tag("page-renamed") and not fresh.has_tag(tag)


def test_a_long_conversation_keeps_its_newest_messages_and_says_how_many_went():
    """Every streamed step re-sends the whole conversation: past MAX_MESSAGES the oldest go, with a
    note that counts them across trims, so the hundredth text is answered as fast as the first."""
    from ui.app import MAX_MESSAGES, _trimmed

    history = [render.user_message(f"m{i}") for i in range(MAX_MESSAGES + 20)]
    assert _trimmed(history[:MAX_MESSAGES]) == history[:MAX_MESSAGES]
    once = _trimmed(history)
    assert len(once) == MAX_MESSAGES // 2 + 1 and once[-1]["content"] == history[-1]["content"]
    assert once[0]["content"].startswith(f"…{len(history) - MAX_MESSAGES // 2} earlier messages")
    twice = _trimmed(once + [render.user_message(f"n{i}") for i in range(MAX_MESSAGES)])
    # the first trim dropped len(history) - MAX/2; the second keeps MAX/2 of the MAX/2 kept + MAX new: MAX more dropped
    assert twice[0]["content"].startswith(f"…{len(history) - MAX_MESSAGES // 2 + MAX_MESSAGES} earlier messages")
    # the page sends messages back with their content as a list of parts
    as_sent = [
        {**m, "content": [{"type": "text", "text": m["content"]}]}
        for m in once + [render.user_message(f"p{i}") for i in range(MAX_MESSAGES)]
    ]
    assert _trimmed(as_sent)[0]["content"].startswith(f"…{len(history) - MAX_MESSAGES // 2 + MAX_MESSAGES} earlier messages")


def test_the_batch_preview_reads_records_of_this_and_of_an_older_llm4tag():
    from ui.app import _tags_of

    assert _tags_of({"tags": [{"tag": "a", "confidence": 0.9, "why": "..."}, {"tag": "b", "confidence": None}]}) == [
        ("a", 0.9),
        ("b", None),
    ]
    assert _tags_of({"tags": ["a", "b"], "confidence": [0.9, 0.4]}) == [("a", 0.9), ("b", 0.4)]  # parallel lists, as before
    assert _tags_of({"tags": []}) == []
