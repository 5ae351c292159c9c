"""Issue 15: bad or hostile input through the façade and REST gets a clear 4xx/error, never a
traceback or a 500, and never changes what is already stored. Real knowledge base, real Chroma."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent import Context, tagging
from knowledge_base import InputError, KnowledgeBase
from ui.rest import create_app

CHEAP = dict(budget=5, max_tags=2, use_knowledge=False, max_examples=1, threshold=0.0)


@pytest.fixture(scope="module")
def client(kb_dir):
    with TestClient(create_app(str(kb_dir), Context(**CHEAP)), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def known(kb_dir) -> list[str]:
    return sorted(KnowledgeBase(kb_dir).tag_names())[:3]


def stored(kb_dir: Path, cid: str):
    kb = KnowledgeBase(kb_dir)
    return (
        kb.get_sample(cid),
        kb.graph.tags_of(cid),
        sorted(kb.graph.to_networkx()[f"c:{cid}"]) if f"c:{cid}" in kb.graph.to_networkx() else None,
    )


# ---- item 3: a known id with another text is a conflict ------------------------------------------
def test_rest_learn_with_a_known_id_and_another_text_is_409_and_changes_nothing(client, kb_dir, known):
    first = client.post("/v1/learn", json={"text": "A chess engine with a text interface", "correct": [known[0]], "id": "conflict-1"})
    assert first.status_code == 200, first.text
    before = stored(kb_dir, "conflict-1")

    clash = client.post("/v1/learn", json={"text": "A photo editor for raw camera files", "correct": [known[1]], "id": "conflict-1"})
    assert clash.status_code == 409, clash.text
    detail = clash.json()["detail"]
    assert "conflict-1" in detail and "replace" in detail and "chess engine" in detail
    assert stored(kb_dir, "conflict-1") == before

    # the same text under the same id amends the verdict
    amend = client.post("/v1/learn", json={"text": "A chess engine with a text interface", "correct": [known[2]], "id": "conflict-1"})
    assert amend.status_code == 200, amend.text
    assert KnowledgeBase(kb_dir).get_sample("conflict-1").tags == (known[2],)

    # the caller may say replace
    replaced = client.post(
        "/v1/learn", json={"text": "A photo editor for raw camera files", "correct": [known[1]], "id": "conflict-1", "replace": True}
    )
    assert replaced.status_code == 200, replaced.text
    sample, tags, _ = stored(kb_dir, "conflict-1")
    assert sample.text == "A photo editor for raw camera files" and tags == {known[1]: 1.0}


def test_facade_learn_refuses_to_replace_a_history_sample(kb_dir, known):
    kb = KnowledgeBase(kb_dir)
    victim = sorted(kb.collection("samples").get(include=[])["ids"])[0]
    before = stored(kb_dir, victim)
    with pytest.raises(InputError, match="already holds a different text"):
        tagging.learn("something else entirely", [known[0]], sample_id=victim, kb_dir=str(kb_dir))
    assert stored(kb_dir, victim) == before


def test_insert_content_refuses_another_text_under_a_stored_id(writable_kb):
    """The write-back path (``insert_content``) follows learn's rule: what is stored is read first."""
    from knowledge_base import ConflictError

    kb = writable_kb
    tag = sorted(kb.tag_names())[0]
    victim = sorted(kb.collection("samples").get(include=[])["ids"])[0]

    def snapshot(cid: str, base: KnowledgeBase = kb):
        node = f"c:{cid}"
        return (
            base.get_sample(cid),
            base.collection("contents").get(ids=[cid], include=["documents", "metadatas"]),
            dict(base.graph.to_networkx()[node]) if node in base.graph.to_networkx() else None,
        )

    before = snapshot(victim)
    with pytest.raises(ConflictError, match="already holds a different text"):
        kb.insert_content("a written-back text that is not the sample", [tag], cid=victim)
    assert snapshot(victim) == before
    assert snapshot(victim, KnowledgeBase(kb.directory)) == before  # on disk too

    # the same text as a person's sample: the sample's verdict stays, nothing is written
    assert kb.insert_content(before[0].text, [tag], cid=victim) == victim
    assert snapshot(victim) == before

    # a written-back content is no different
    kb.insert_content("first written-back text", [tag], cid="wb-1")
    kept = snapshot("wb-1")
    with pytest.raises(ConflictError):
        kb.insert_content("second written-back text", [tag], cid="wb-1")
    assert snapshot("wb-1") == kept
    kb.insert_content("first written-back text", [], cid="wb-1")  # the same text again: its tags are replaced
    assert kb.graph.tags_of("wb-1") == {}

    # unless the caller says replace: the old content, its sample and its edges go
    kb.insert_content("a replacement text about chess", [tag], cid=victim, replace=True)
    assert kb.get_sample(victim) is None
    assert kb.collection("contents").get(ids=[victim], include=["documents"])["documents"] == ["a replacement text about chess"]
    assert kb.graph.tags_of(victim) == {tag: 1.0}


# ---- item 2: text Python accepts but an encoder or JSON rejects ------------------------------------
LONE = "lone \udc80 surrogate"


def test_a_lone_surrogate_at_line_280_stops_the_load_before_anything_is_written(writable_kb, tmp_path):
    from click.testing import CliRunner

    from ui.cli import main

    tags = sorted(writable_kb.tag_names())
    lines = [
        json.dumps({"id": f"bulk-{i}", "text": f"bulk sample {i}: a program for {tags[i % len(tags)]}", "tags": [tags[i % len(tags)]]})
        for i in range(279)
    ]
    lines.append('{"id":"s","text":"lone \\udc80 surrogate","tags":["%s"]}' % tags[0])  # the JSON escape, as a file would hold it
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = writable_kb.collection("samples").count(), writable_kb.graph.counts()

    result = CliRunner().invoke(main, ["--kb", str(writable_kb.directory), "kb", "load-samples", str(path)])
    assert result.exit_code == 1, result.output
    assert f"{path}:280" in result.output and "surrogate" in result.output and "nothing was loaded" in result.output
    assert "Traceback" not in result.output
    fresh = KnowledgeBase(writable_kb.directory)
    assert (fresh.collection("samples").count(), fresh.graph.counts()) == before
    assert fresh.get_sample("bulk-0") is None

    # the Python API checks every record before writing too
    from knowledge_base import Sample

    with pytest.raises(InputError, match="surrogate.*nothing was written"):
        writable_kb.add_samples([Sample("ok", "fine text", (tags[0],)), Sample("bad", LONE, (tags[0],))])
    assert KnowledgeBase(writable_kb.directory).get_sample("ok") is None


def test_cli_arguments_that_are_not_utf8_are_refused_clearly(small_kb_dir):
    from click.testing import CliRunner

    from ui.cli import main

    argv_text = b"lone \x80 byte".decode("utf-8", "surrogateescape")  # what Python makes of such an argv
    for args in (["recall", argv_text], ["kb", "search", argv_text], ["tag", argv_text]):
        result = CliRunner().invoke(main, ["--kb", str(small_kb_dir), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "not valid UTF-8" in result.output and "0x80" in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "body",
    [
        '{"text": "lone \\udc80 surrogate", "correct": ["%s"]}',
        '{"text": "\\ud800", "correct": ["%s"]}',
        '{"text": "fine text", "correct": ["\\udc80%s"]}',
        '{"text": "fine text", "correct": ["%s"], "id": "   "}',
        '{"text": "fine text", "correct": ["%s"], "id": "a\\u0000b"}',
        '{"text": "fine text", "correct": ["%s"], "id": "\\udc80"}',
    ],
)
def test_rest_learn_with_unencodable_or_blank_values_is_a_clear_4xx(client, kb_dir, known, body):
    before = KnowledgeBase(kb_dir).collection("samples").count()
    response = client.post("/v1/learn", content=(body % known[0]).encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert KnowledgeBase(kb_dir).collection("samples").count() == before


@pytest.mark.parametrize(
    "body",
    [
        '{"text": "a text", "threshold": NaN}',
        '{"text": "a text", "threshold": Infinity}',
        '{"text": "a text", "threshold": -Infinity}',
        '{"text": "lone \\udc80 surrogate"}',
        '{"text": "a text", "title": "\\ud800"}',
    ],
)
def test_rest_tag_with_non_finite_numbers_or_surrogates_is_422(client, body):
    response = client.post("/v1/tag", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    json.loads(response.text)  # the answer itself is valid JSON


def test_rest_batch_and_search_report_surrogates_per_document(client):
    response = client.post(
        "/v1/tag-batch",
        content=b'{"documents": [{"id": "d1", "text": "lone \\udc80 surrogate"}]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    item = response.json()["results"][0]
    assert item["ok"] is False and "surrogate" in item["error"]
    assert client.get("/v1/tags?q=%ED%A0%80x%80").status_code in (200, 400)  # bytes that are not UTF-8


def _rpc(proc, message: dict) -> None:
    proc.stdin.write((json.dumps(message) + "\n").encode())  # ensure_ascii: the surrogate travels as \\udc80
    proc.stdin.flush()


def test_mcp_answers_every_request_even_with_lone_surrogates(kb_dir, known):
    import os
    import subprocess
    import sys
    import threading

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "--kb", str(kb_dir), "mcp"],
        cwd=root,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    replies: dict = {}
    reader = threading.Thread(
        target=lambda: [replies.setdefault(m.get("id"), m) for m in map(json.loads, proc.stdout) if "id" in m], daemon=True
    )
    reader.start()
    try:
        _rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            },
        )
        _wait(replies, 0, proc)
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        calls = {
            1: ("learn", {"text": LONE, "correct": [known[0]]}),
            2: ("learn", {"text": "fine text", "correct": ["\udc80" + known[0]]}),
            3: ("search_tags", {"query": LONE}),
            4: ("search_tags", {"query": "game", "limit": "\udc80"}),  # the validation error quotes the argument
            5: ("recall", {"text": LONE}),
            6: ("learn", {"text": "fine text", "correct": [known[0]], "id": "a\u0000b"}),
        }
        for i, (name, args) in calls.items():
            _rpc(proc, {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}})
        for i in calls:
            reply = _wait(replies, i, proc)
            result = reply.get("result") or {}
            assert result.get("isError") or "error" in reply, (i, reply)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert KnowledgeBase(kb_dir).get_sample("a\u0000b") is None


def _wait(replies: dict, key, proc, timeout: float = 120.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while key not in replies:
        assert proc.poll() is None, "the MCP server died"
        assert time.monotonic() < deadline, f"no reply to request {key}"
        time.sleep(0.05)
    return replies[key]


def test_a_tag_on_a_nearly_full_disk_answers_without_the_node_cache(writable_kb, monkeypatch):
    """Issue 31 (3): on a disk filled by learns a tag answered 500 — emptying the node cache hit
    "database or disk is full". Below the reserve the cache is left alone and the tag answers."""
    from agent.runtime import runtime_for

    ctx = Context(kb_dir=str(writable_kb.directory), use_generation=False, use_calibration=False, threshold=0.0)
    runtime = runtime_for(ctx.kb_dir)
    assert runtime.node_cache() is not None  # room enough: results are cached
    monkeypatch.setenv("LLM4TAG_DISK_RESERVE", str(2**60))  # every disk is "nearly full" now
    assert runtime.kb.low_on_disk() and runtime.node_cache() is None
    result = tagging.tag("A command-line tool that converts PNG images to PDF", context=ctx)
    assert result["tags"]
