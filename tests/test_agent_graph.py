"""The tagging graph end to end: real MiniLM, Chroma, networkx and the embedded SmolLM2."""

from __future__ import annotations

import pytest

from agent import Context, graph, tag
from agent.graph import NODE_ORDER
from agent.confidence import rank_tags
from knowledge_base import InputError
from knowledge_base.demo import demo_examples

TEXT = demo_examples()[0]["text"]
SMALL = dict(budget=10, max_tags=3)


@pytest.fixture(scope="module")
def streamed(small_kb_dir):
    ctx = Context(kb_dir=str(small_kb_dir), threshold=0.0, **SMALL)
    updates = list(graph.stream({"content": TEXT}, context=ctx, stream_mode="updates"))
    result = graph.invoke({"content": TEXT}, context=ctx)
    return updates, result


def test_stream_yields_each_node_in_order(streamed):
    updates, _ = streamed
    names = [next(iter(u)) for u in updates]
    # examples and knowledge run as parallel branches of one step; review and write-back are off by default
    assert names[:2] == ["prepare", "recall"] and set(names[2:4]) == {"examples", "knowledge"} and names[4:] == ["generate", "calibrate"]
    assert set(names) == set(NODE_ORDER) - {"review", "record_review", "write_back"}


def test_output_explains_every_tag(streamed):
    _, result = streamed
    assert set(result) >= {
        "tags",
        "candidates",
        "similar_contents",
        "examples",
        "knowledge",
        "selection",
        "judgments",
        "notes",
        "timings",
        "content_id",
    }
    candidates = {c["tag"] for c in result["candidates"]}
    assert len(candidates) == 10
    assert all(c["evidence"] and c["paths"] for c in result["candidates"])
    assert 1 <= len(result["examples"]) <= 3 and all("incorrect_tags" in e for e in result["examples"])
    assert all(s["source"] == "guide.md" and s["id"] == f"guide.md#{s['index']}" for s in result["knowledge"])
    selected = result["selection"]["tags"]
    assert selected and set(selected) <= candidates
    # every likely candidate is scored: the generated tags first, then recall's top five, each once
    scored = [j["tag"] for j in result["judgments"]]
    top5 = [c["tag"] for c in result["candidates"][:5]]
    assert scored[: len(selected)] == selected and set(scored) == set(selected) | set(top5) and len(set(scored)) == len(scored)
    kept = set(result["selection"].get("from_history") or [])  # selected because close history items carry them
    assert all(j["origin"] == ("history" if j["tag"] in kept else "llm" if j["tag"] in selected else "recall") for j in result["judgments"])
    # the content's KV cache is shared: after the first judgment only the tag's own tokens are evaluated
    assert all(j["reused_tokens"] > j["prompt_tokens"] for j in result["judgments"][1:])
    # no recall ranker in this knowledge base: the confidence is the judge's P(Yes) (the paper's);
    # threshold 0 keeps the max_tags best-scored tags, generated or not
    by_tag = {j["tag"]: j["p_yes"] for j in result["judgments"]}
    assert result["recall_scores"] == "evidence"
    best = sorted(by_tag, key=lambda t: -by_tag[t])[: SMALL["max_tags"]]
    assert [t["tag"] for t in result["tags"]] == best
    confidences = [t["confidence"] for t in result["tags"]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(t["confidence"] == by_tag[t["tag"]] for t in result["tags"])
    assert [t["rank"] for t in result["tags"]] == list(range(1, len(result["tags"]) + 1))
    assert set(result["timings"]) == {"prepare", "recall", "examples", "knowledge", "generate", "calibrate"}


def test_threshold_filters_without_rerunning(streamed):
    _, result = streamed
    scored = [{"tag": j["tag"], "confidence": j["p_yes"]} for j in result["judgments"]]
    cut = sorted(s["confidence"] for s in scored)[len(scored) // 2]
    kept = rank_tags(scored, cut)
    assert [k["tag"] for k in kept] == [s["tag"] for s in sorted(scored, key=lambda s: -s["confidence"]) if s["confidence"] >= cut]
    assert rank_tags(scored, None) == rank_tags(scored, 0.0)
    assert all(k["confidence"] >= cut for k in kept)


def test_high_threshold_drops_everything_and_says_so(small_kb_dir):
    result = tag(TEXT, kb_dir=str(small_kb_dir), threshold=1.0, **SMALL)
    assert result["tags"] == []
    assert result["judgments"]
    assert any("below the confidence threshold" in n for n in result["notes"])


def test_ablation_switches(small_kb_dir):
    result = tag(
        TEXT, kb_dir=str(small_kb_dir), use_graph_recall=False, use_examples=False, use_knowledge=False, use_calibration=False, **SMALL
    )
    assert {p for c in result["candidates"] for p in c["paths"]} == {"match"}
    assert result["examples"] == [] and result["knowledge"] == []
    assert result["judgments"] and all(j["p_yes"] is None and j["prompt_tokens"] == 0 for j in result["judgments"])
    assert result["selection"]["template"] == "generate_basic"
    # no judge and no ranker: no confidence, the generator's tags in its order
    assert result["tags"] and all(t["confidence"] is None for t in result["tags"])
    assert [t["tag"] for t in result["tags"]] == result["selection"]["tags"]


def test_single_mode_returns_one_tag(small_kb_dir):
    result = tag(
        "I want a game where I build cities and fight wars in real time.", kb_dir=str(small_kb_dir), mode="single", threshold=0.0, **SMALL
    )
    assert len(result["selection"]["tags"]) == 1
    assert len(result["tags"]) == 1 and result["tags"][0]["tag"] in {c["tag"] for c in result["candidates"]}


def test_write_back_adds_the_content_to_the_history(writable_kb):
    kb_dir = str(writable_kb.directory)
    before = writable_kb.collection("contents").count()
    result = tag(TEXT, kb_dir=kb_dir, threshold=0.0, write_back=True, content_id="new-item-1", **SMALL)
    from knowledge_base import KnowledgeBase

    reopened = KnowledgeBase(kb_dir)
    assert reopened.collection("contents").count() == before + 1
    assert set(reopened.graph.tags_of("new-item-1")) == {t["tag"] for t in result["tags"]}
    assert any("wrote" in n for n in result["notes"])


def test_empty_content_is_refused(small_kb_dir):
    with pytest.raises(InputError, match="empty"):
        tag("   \n\t ", kb_dir=str(small_kb_dir))


def test_unreachable_web_search_is_reported_not_fatal(small_kb_dir):
    result = tag(TEXT, kb_dir=str(small_kb_dir), use_web_search=True, web_timeout_s=2, use_calibration=False, **SMALL)
    assert any(n.startswith("web search unavailable") for n in result["notes"])
    assert all(s["kind"] == "document" for s in result["knowledge"])
    assert result["tags"]


def test_context_from_env_and_validation(monkeypatch):
    monkeypatch.setenv("LLM4TAG_THRESHOLD", "0.7")
    monkeypatch.setenv("LLM4TAG_USE_EXAMPLES", "off")
    monkeypatch.setenv("LLM4TAG_HISTORY_KEEP", "none")
    ctx = Context.from_env(mode="single")
    assert ctx.threshold == 0.7 and ctx.use_examples is False and ctx.history_keep is None and ctx.tag_limit == 1
    monkeypatch.setenv("LLM4TAG_MAX_TAGS", "many")
    with pytest.raises(ValueError, match="LLM4TAG_MAX_TAGS"):
        Context.from_env()
    with pytest.raises(ValueError, match="threshold"):
        Context(threshold=1.5)
