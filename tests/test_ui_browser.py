"""The Gradio app in a real browser: Debian's headless Chromium driven by Playwright.

The app runs as ``llm4tag --kb COPY app`` in a subprocess on a free local port, on a copy of
the small knowledge base (feedback writes stay in the copy), with the embedded SmolLM2 model.
Screenshots go to test-artifacts/ (git-ignored); look at them after a change to the page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from knowledge_base import KnowledgeBase
from knowledge_base.demo import demo_examples
from knowledge_base.loaders import content_id, require_text

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
STEP_S = 180  # one tagging run of the embedded model on a busy 2-core machine, with room to spare

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
expect = sync_api.expect

TEXTS = [ex["text"] for ex in demo_examples()[:3]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(small_kb_dir, tmp_path_factory):
    kb_dir = tmp_path_factory.mktemp("ui") / "kb"
    shutil.copytree(small_kb_dir, kb_dir, ignore=shutil.ignore_patterns(".write.lock"))
    ARTIFACTS.mkdir(exist_ok=True)
    # an evaluation of the knowledge base, for the knowledge-base tab to show (fused recall and kNN: no model call)
    from agent import Context
    from agent.evaluation import Item, evaluate

    evaluate(
        [Item(e["id"], e["text"], e["tags"]) for e in demo_examples()[:6]],
        Context(kb_dir=str(kb_dir)),
        tmp_path_factory.mktemp("ui-eval"),
        ["no-llm", "knn"],
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(ARTIFACTS / "ui-app.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "--kb", str(kb_dir), "app", "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"the app did not start; see {ARTIFACTS / 'ui-app.log'}:\n{(ARTIFACTS / 'ui-app.log').read_text()[-3000:]}")
        time.sleep(1)
    yield url, kb_dir
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def page(app_server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(app_server[0])
        page.locator("#chat-input textarea").wait_for()
        yield page
        browser.close()


def send(page, text: str) -> None:
    box = page.locator("#chat-input textarea")
    expect(box).to_be_editable(timeout=STEP_S * 1000)
    box.fill(text)
    box.press("Enter")


def set_threshold(page, value: float) -> None:
    number = page.locator("#threshold input[type=number]")
    number.fill(str(value))
    number.press("Enter")


def panel_tags(page, state: str = "kept") -> list[str]:
    return [t.get_attribute("data-tag") for t in page.locator(f"#l4t-panel .l4t-tag[data-state={state}]").all()]


def test_tag_review_learn_and_refilter(page, app_server):
    _, kb_dir = app_server
    chat = page.locator("#chat")

    # an empty text is refused with a readable message, not a traceback or a spinner
    page.locator("#chat-input [data-testid=submit-button]").click()
    expect(chat.get_by_text("the content is empty")).to_be_visible()
    expect(page.get_by_text("Traceback")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "ui-01-empty-text-error.png")

    # tag a demo text: the first step appears at once, then every step, then the tags; the page
    # records every "judged so far" message it shows (each judgment streams in as it is computed)
    page.evaluate("""() => {
        window.__judging = [];
        new MutationObserver(() => {
            const m = document.body.innerText.match(/Judging the likely tags \\(P\\(Yes\\)\\)… (\\d+) done/);
            if (m && !window.__judging.includes(+m[1])) window.__judging.push(+m[1]);
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")
    text = TEXTS[0]
    send(page, text)
    started = time.monotonic()
    # the pending step, or already the finished one when recall was quick, or what the app is still
    # loading when the text came before the warm-up was done
    expect(
        chat.get_by_text("Recalling candidate tags").or_(chat.get_by_text("Candidates ·")).or_(chat.get_by_text("Getting ready"))
    ).to_be_visible(timeout=5_000)
    first_step_s = time.monotonic() - started
    assert first_step_s < 5, f"the first step took {first_step_s:.1f}s to appear"
    expect(chat.get_by_text("Confidence · P(Yes)")).to_be_visible(timeout=STEP_S * 1000)
    expect(page.locator("#warm-up")).to_contain_text("Ready · llama.cpp")  # the status line says what tags
    judging = page.evaluate("window.__judging")
    assert len(judging) >= 2 and judging == sorted(judging), f"the judgments did not stream in one by one: {judging}"
    for title in ("Candidates ·", "Examples ·", "Knowledge ·", "Generator · selected"):
        expect(chat.get_by_text(title)).to_be_visible()
    expect(chat.locator(".l4t-tag").first).to_be_visible()
    chat.get_by_text("Candidates ·").click()  # open the collapsed step: the meta-paths
    expect(chat.get_by_text("C2C2T vote").first).to_be_visible()
    expect(chat.get_by_text("Similar items the C2C2T path walks through")).to_be_visible()
    chat.get_by_text("Knowledge ·").click()
    expect(chat.get_by_text("guide.md").first).to_be_visible()  # the file, and the passage within it
    expect(chat.get_by_text(re.compile(r"document, passage \d+")).first).to_be_visible()
    chat.get_by_text("Candidates ·").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "ui-02-tagged-steps.png")

    # the slider re-filters the last result without running the model again
    set_threshold(page, 1)
    expect(page.locator("#l4t-panel")).to_have_attribute("data-count", "0")
    expect(page.locator("#l4t-panel")).to_contain_text("No tag")
    expect(chat.get_by_text("No tag reaches the threshold 1.00")).to_be_visible(
        timeout=60_000
    )  # the answer in the chat follows the slider too
    set_threshold(page, 0)
    expect(page.locator("#l4t-panel")).not_to_have_attribute("data-count", "0")
    shown = panel_tags(page)
    # threshold 0 keeps the best-scored tags up to the tag limit; the other scored tags stay listed below
    expect(page.locator("#l4t-panel")).to_have_attribute("data-count", str(len(shown)))
    assert shown and len(shown) <= len(page.locator("#l4t-panel .l4t-tag").all())
    page.screenshot(path=ARTIFACTS / "ui-03-threshold-zero.png")

    # explain a tag: the words behind it are highlighted in the text
    send(page, f"explain {shown[0]}")
    expect(chat.get_by_text("Words behind it")).to_be_visible(timeout=60_000)
    marks = chat.locator("mark")
    expect(marks.first).to_be_visible()
    assert all(" ".join(m.inner_text().split()) in " ".join(text.split()) for m in marks.all())
    chat.get_by_text("Words behind it").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "ui-03b-explain-words.png")

    # one click: the part of the graph the tags came through — the text, the similar items, the tags
    page.locator("#graph-btn").click()
    picture = page.locator("#result-graph svg.l4t-result-graph")
    expect(picture).to_be_visible(timeout=60_000)
    labels = [t.text_content() for t in picture.locator("text").all()]
    assert "this text" in labels and all(tag in labels for tag in shown if len(tag) <= 26), labels
    expect(page.locator("#result-graph")).to_contain_text("similar history item")
    picture.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "ui-03c-graph-around-the-text.png")

    # accept: the knowledge base gets the sample with the shown tags at once
    cid = content_id(require_text(text))
    before = KnowledgeBase(kb_dir).stats()["samples"]
    send(page, "accept")
    expect(chat.get_by_text("Saved to the knowledge base")).to_be_visible()
    kb = KnowledgeBase(kb_dir)
    sample = kb.get_sample(cid)
    assert sample is not None and set(sample.tags) == set(shown)
    assert kb.stats()["samples"] == before + 1
    expect(page.locator("#l4t-panel")).to_contain_text("✓ accepted")

    # reject one of them, then an unknown tag is refused with a readable message
    send(page, f"reject {shown[0]}")
    expect(page.locator("#l4t-panel")).to_contain_text("✗ rejected")
    assert KnowledgeBase(kb_dir).get_sample(cid).incorrect_tags == (shown[0],)
    # the picture beside the panel is drawn again: the rejected tag is no longer a kept one (bold label)
    if len(shown[0]) <= 26:
        expect(picture.locator("text", has_text=shown[0]).first).to_have_attribute("font-weight", "normal", timeout=60_000)
    send(page, "add no-such::tag")
    expect(chat.get_by_text("'no-such::tag' is not in the tag repository")).to_be_visible()
    chat.get_by_text("'no-such::tag' is not in the tag repository").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "ui-04-feedback.png", full_page=True)

    # tag the same text again: the verdict decides it — the accepted tags are kept, the rejected one is gone
    set_threshold(page, 0.5)
    send(page, text)
    expect(chat.get_by_text(re.compile(r"^Confidence · "))).to_have_count(2, timeout=STEP_S * 1000)
    again = panel_tags(page)
    assert shown[0] not in again and shown[0] not in panel_tags(page, "dropped"), again
    assert set(shown[1:]) <= set(again), (shown, again)
    page.screenshot(path=ARTIFACTS / "ui-05-retag-after-correction.png", full_page=True)

    # undo twice: the knowledge base is back where it was
    send(page, "undo")
    expect(chat.get_by_text("↶ Undid “reject")).to_be_visible()
    page.locator("#undo-btn").click()
    expect(chat.get_by_text("the sample and its graph edges are removed")).to_be_visible()
    kb = KnowledgeBase(kb_dir)
    assert kb.get_sample(cid) is None and kb.stats()["samples"] == before


def test_batch_and_knowledge_base_tabs(page, app_server, tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        json.dumps({"id": "good-1", "text": TEXTS[1]}) + "\n{broken json\n" + json.dumps({"id": "good-2", "text": TEXTS[2]}) + "\n",
        encoding="utf-8",
    )
    page.get_by_role("tab", name="Batch").click()
    summary = page.locator("#batch-summary")
    page.locator("#batch-run").click()  # no file yet: a warning, which must not stand once a run starts
    expect(summary).to_contain_text("Upload a .jsonl or .csv file first", timeout=60_000)
    page.locator("#batch-input input[type=file]").set_input_files(str(batch))
    expect(page.locator("#batch-input")).to_contain_text("batch.jsonl")
    page.locator("#batch-run").click()
    expect(summary).to_contain_text("Tagging batch.jsonl", timeout=60_000)  # before the model loads (generous: CI may be busy)
    expect(summary).not_to_contain_text("Upload a .jsonl")
    expect(summary).to_contain_text("2 tagged", timeout=2 * STEP_S * 1000)
    expect(summary).to_contain_text("1 bad row,")
    expect(summary).to_contain_text("malformed JSON")
    header = page.locator("#batch-preview th").nth(1)  # the tags column keeps its width when no tag passed (it shrank to a letter)
    expect(header).to_contain_text("tags (confidence)")
    assert header.bounding_box()["width"] > 120, header.bounding_box()
    with page.expect_download() as download:
        page.locator("#batch-output a").first.click()
    lines = [json.loads(l) for l in Path(download.value.path()).read_text(encoding="utf-8").splitlines()]
    assert [l["id"] for l in lines] == ["good-1", "line-2", "good-2"]
    assert "error" in lines[1] and all("tags" in l and "candidates" in l for l in (lines[0], lines[2]))
    page.screenshot(path=ARTIFACTS / "ui-05-batch.png", full_page=True)

    page.get_by_role("tab", name="Knowledge base").click()
    expect(page.locator("#kb-stats")).to_contain_text("annotated samples")
    query = page.get_by_label("Name or meaning")
    query.fill("i18n")
    query.press("Enter")
    expect(page.locator("#kb-hits")).to_contain_text("devel::i18n")
    names = [page.locator("#kb-hits th").nth(i).locator("span").first for i in (0, 1)]
    assert names[1].bounding_box()["height"] < 1.5 * names[0].bounding_box()["height"]  # "similarity" on one line, as "tag" is
    page.get_by_label("Tag or content id").fill("devel::i18n")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("svg circle title").first).to_be_attached()
    expect(page.get_by_text("t:devel::i18n — ")).to_be_visible()
    # the latest evaluation: its figures, the worst tags and the reliability diagram
    expect(page.locator("#kb-eval")).to_contain_text("6 items", timeout=60_000)
    expect(page.locator("#kb-eval")).to_contain_text("worst tags for")
    # this knowledge base has no learned recall path, so its systems give no confidences: the tab says so
    expect(page.locator("#kb-eval")).to_contain_text("No reliability diagram")
    page.screenshot(path=ARTIFACTS / "ui-06-knowledge-base.png", full_page=True)
    # a tag renamed from the tab, then back: each change says what moved
    page.locator("#change-tag textarea, #change-tag input").first.fill("devel::i18n")
    page.locator("#change-into textarea, #change-into input").first.fill("devel::internationalisation")
    page.locator("#change-apply").click()
    expect(page.locator("#change-report")).to_contain_text("renamed devel::i18n → devel::internationalisation", timeout=60_000)
    page.screenshot(path=ARTIFACTS / "ui-07-tag-renamed.png", full_page=True)
    page.locator("#change-tag textarea, #change-tag input").first.fill("devel::internationalisation")
    page.locator("#change-into textarea, #change-into input").first.fill("devel::i18n")
    page.locator("#change-apply").click()
    expect(page.locator("#change-report")).to_contain_text("renamed devel::internationalisation → devel::i18n", timeout=60_000)


def test_api_and_mcp_server_are_on(app_server):
    from gradio_client import Client

    url, _ = app_server
    with urllib.request.urlopen(url + "gradio_api/mcp/schema", timeout=30) as response:
        tools = {t["name"]: t for t in json.loads(response.read())}
    assert {"tag", "learn", "search_tags"} <= set(tools)
    assert "calibrated confidence" in tools["tag"]["description"]
    assert tools["tag"]["inputSchema"]["required"] == ["text"]
    client = Client(url, verbose=False)
    hits = client.predict(query="i18n", limit=2, api_name="/search_tags")
    assert hits[0]["tag"] == "devel::i18n"
    assert "explain" in tools["tag"]["inputSchema"]["properties"]
    tagged = client.predict(text=TEXTS[1], llm="fast", explain=True, api_name="/tag")
    assert tagged["tags"] and all(w in TEXTS[1] for t in tagged["tags"] for w in t["words"]) and any(t["words"] for t in tagged["tags"])


def test_queue_tab_keys_counts_and_a_reload(page, app_server, tmp_path):
    """An annotator's queue: a file loaded, decisions by keys only (1 toggles the first tag, Enter
    accepts, S skips, X rejects), counts that follow, and all of it still there after a reload."""
    _, kb_dir = app_server
    records = [{"id": f"queue-{i}", "text": ex["text"]} for i, ex in enumerate(demo_examples()[3:7])]
    source = tmp_path / "to-review.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    page.get_by_role("tab", name="Queue").click()
    record, progress, report = page.locator("#queue-record"), page.locator("#queue-progress"), page.locator("#queue-report")
    expect(record).to_contain_text("No record to review", timeout=60_000)
    page.locator("#queue-input input[type=file]").set_input_files(str(source))
    page.locator("#queue-load").click()
    expect(report).to_contain_text("4 records queued", timeout=STEP_S * 1000)
    expect(progress).to_contain_text("0 of 4 decided")
    boxes = page.locator("#queue-tags input[type=checkbox]")
    expect(boxes.first).to_be_attached()
    first = record.locator("code").first.inner_text()
    shown = next(r["text"] for r in records if r["id"] == first)
    kept = [
        page.locator("#queue-tags label").nth(i).inner_text().split(" · ")[1] for i in range(boxes.count()) if boxes.nth(i).is_checked()
    ]
    assert kept, "the tags the Tag page keeps are pre-selected"
    page.screenshot(path=ARTIFACTS / "ui-08-queue.png", full_page=True)

    page.locator("#queue-progress").click()  # the focus on the page, not in a text box
    was_checked = boxes.first.is_checked()
    page.keyboard.press("1")
    expect(boxes.first).to_be_checked(checked=not was_checked)
    page.keyboard.press("Enter")
    expect(progress).to_contain_text("1 of 4 decided", timeout=STEP_S * 1000)
    expect(report).to_contain_text(f"{first}: changed")
    expect(record.locator("code").first).not_to_have_text(first)
    second = record.locator("code").first.inner_text()
    page.keyboard.press("s")
    expect(report).to_contain_text(f"Skipped {second}", timeout=60_000)
    third = record.locator("code").first.inner_text()
    assert third != second
    page.keyboard.press("x")
    expect(progress).to_contain_text("2 of 4 decided", timeout=STEP_S * 1000)
    expect(progress).to_contain_text("1 with no suggestion right")
    expect(progress).to_contain_text("1 skipped")
    page.screenshot(path=ARTIFACTS / "ui-09-queue-decided.png", full_page=True)

    # the decisions are in the knowledge base (the one learn path) and the queue survives a reload
    sample = KnowledgeBase(kb_dir).get_sample(content_id(require_text(shown)))
    assert sample is not None and list(sample.tags) == (kept[1:] if was_checked else kept)
    page.reload()
    page.get_by_role("tab", name="Queue").click()
    expect(page.locator("#queue-progress")).to_contain_text("2 of 4 decided", timeout=60_000)
    expect(page.locator("#queue-progress")).to_contain_text("1 skipped")

    # the record list follows the order; a click on a row shows that record; the filter narrows both
    from knowledge_base.annotation_queue import QueueStore

    undecided = QueueStore(kb_dir).undecided()
    assert len(undecided) == 2
    rows = page.locator("#queue-list [role=row][data-index]")  # Gradio's table draws its body rows as a virtual list
    expect(rows).to_have_count(2, timeout=60_000)
    expect(page.locator("#queue-list")).to_contain_text("skipped")
    last = rows.nth(1)
    position = int(last.locator("[role=gridcell]").first.inner_text())
    wanted = next(r for r in undecided if r.position == position)
    last.locator("[role=gridcell]").nth(5).click()
    expect(record.locator("code").first).to_have_text(wanted.id, timeout=60_000)
    other = next(r for r in undecided if r.id != wanted.id)
    word = next(w for w in re.findall(r"[A-Za-z]{6,}", other.text) if w.lower() not in wanted.text.lower())
    page.locator("#queue-filter textarea, #queue-filter input").first.fill(word)
    page.locator("#queue-filter textarea, #queue-filter input").first.press("Enter")
    expect(rows).to_have_count(1, timeout=60_000)
    expect(record.locator("code").first).to_have_text(other.id)
    page.screenshot(path=ARTIFACTS / "ui-10-queue-list-filter.png", full_page=True)
