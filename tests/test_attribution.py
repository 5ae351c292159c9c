"""The words behind a tag (knowledge_base.attribution, tagging.supporting_spans): occlusion over
real recall — the encoder, Chroma, the graph, the trained classifier and ranker."""

from __future__ import annotations

import re

from agent import tagging
from agent.runtime import runtime_for
from knowledge_base.attribution import tag_scores, without, word_windows

TEXT = (
    "A small command-line utility that converts scanned PNG and JPEG images into searchable PDF documents, "
    "with optical character recognition in several languages. Written in Python; runs in a terminal."
)


def test_windows_cover_every_word_in_at_most_the_limit_of_runs():
    text = " ".join(f"w{i}" for i in range(40))
    windows = word_windows(text, max_windows=16)
    assert len(windows) <= 16 and windows[0][0] == 0 and windows[-1][1] == len(text)
    assert " ".join(text[a:b] for a, b in windows) == text
    assert word_windows("one two", 16) == [(0, 3), (4, 7)]
    assert word_windows("   ") == []
    assert without("a b c d", [(2, 3)]) == "a c d"


def test_removing_the_spans_lowers_the_tags_score_more_than_removing_as_many_other_words(trained_kb_copy):
    kb_dir = str(trained_kb_copy)
    likely = [c.tag for c in tagging.recall(TEXT, kb_dir=kb_dir).candidates[:5]]
    spans = tagging.supporting_spans(TEXT, [*likely, "no-such-tag"], kb_dir=kb_dir)
    assert spans["no-such-tag"] == []
    assert spans[likely[0]], "the top tag of a text that recall is sure of has words behind it"
    # the likely tag whose words weigh most (a broad tag such as role::program, which the trained
    # classifier sometimes ranks first, rests on no words in particular: occlusion has little to find)
    top = max(likely, key=lambda t: sum(s["drop"] for s in spans[t]))
    for s in spans[top]:
        assert TEXT[s["start"] : s["end"]] == s["text"] and s["drop"] > 0
    kb = runtime_for(kb_dir).kb
    words = [m.span() for m in re.finditer(r"\S+", TEXT)]
    inside = [w for w in words if any(s["start"] <= w[0] and w[1] <= s["end"] for s in spans[top])]
    outside = [w for w in words if w not in inside]
    # as many other words, from the start and from the end of the rest
    others = [outside[: len(inside)], outside[-len(inside) :]]
    base, no_spans, *no_others = tag_scores(
        kb, [TEXT, without(TEXT, [(s["start"], s["end"]) for s in spans[top]]), *(without(TEXT, o) for o in others)], kb.config.recall
    )
    fall = base[top] - no_spans.get(top, 0.0)
    # more than as many other words do on average (one block may hold words the tag also leans on)
    assert fall > sum(base[top] - o.get(top, 0.0) for o in no_others) / len(no_others)
