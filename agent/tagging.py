"""The façade every surface calls — the Gradio page, the CLI, REST, MCP and the LangChain tool.

::

    from agent import tagging

    result = tagging.tag("A command-line tool that converts PNG images to PDF", kb_dir="my-kb", max_tags=3)
    for t in result["tags"]:                  # best first
        print(t["tag"], t["confidence"], t["paths"])   # e.g. works-with::image 0.71 ['C2C2T', 'C2T']
    for node, changes, so_far in tagging.tag_stream("...", kb_dir="my-kb"):
        ...                                   # one step at a time: recall, examples, …, write_back
    tagging.recall("...", kb_dir="my-kb")     # Φ(c) with its evidence, no LLM call
    tagging.learn(result["text"], ["works-with::image"], ["use::editing"], kb_dir="my-kb")
    tagging.explain(result, "works-with::image")   # what each step knew about one tag
    tagging.supporting_spans(result["text"], ["works-with::image"], kb_dir="my-kb")  # the words behind it
    tagging.search_tags("image", kb_dir="my-kb")

Each function is one operation of the knowledge base's ``Tagger`` (``agent.tagger``), which
surfaces hold and call directly. A result is the tagging graph's output (``agent.state.OutputState``): ``text`` (the cleaned
content the pipeline worked on), ``content_id``, ``tags``, ``candidates``, ``similar_contents``,
``examples``, ``knowledge``, ``selection``, ``judgments``, ``notes``, ``timings``, ``metadata``.
Settings are a ``Context`` (``context=``) and/or keyword overrides of its fields; an empty text
raises ``knowledge_base.InputError``, an unknown tag in ``learn`` ``knowledge_base.UnknownTagsError``.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from knowledge_base.config import RecallConfig
from knowledge_base.recall import RecallResult

from .context import Context
from .explanation import explain
from .tagger import REVIEW_DURABILITY, TagChangeAction, Tagger, review_thread, tagger_for

__all__ = [
    "REVIEW_DURABILITY",
    "TagChangeAction",
    "change_tag",
    "explain",
    "learn",
    "pending_review",
    "recall",
    "review",
    "review_thread",
    "search_tags",
    "supporting_spans",
    "tag",
    "tag_stream",
    "tagger_of",
]


def tagger_of(context: Context | None, overrides: dict) -> Tagger:
    """The Tagger of the knowledge base a run names (in ``overrides``, else in ``context``, else the environment's)."""
    if "kb_dir" in overrides and overrides["kb_dir"] is not None:
        return tagger_for(overrides["kb_dir"])
    return tagger_for((context or Context.from_env()).kb_dir)


def tag(
    text: str,
    *,
    title: str | None = None,
    content_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    context: Context | None = None,
    **overrides,
) -> dict:
    """``Tagger.tag`` of the knowledge base the run names."""
    return tagger_of(context, overrides).tag(text, title=title, content_id=content_id, metadata=metadata, context=context, **overrides)


def tag_stream(
    text: str,
    *,
    title: str | None = None,
    content_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    context: Context | None = None,
    **overrides,
) -> Iterator[tuple[str, dict, dict]]:
    """``Tagger.tag_stream`` of the knowledge base the run names."""
    return tagger_of(context, overrides).tag_stream(
        text, title=title, content_id=content_id, metadata=metadata, context=context, **overrides
    )


def recall(text: str, *, context: Context | None = None, base: RecallConfig | None = None, **overrides) -> RecallResult:
    """``Tagger.recall_text``: Φ(c) with every candidate's evidence, exactly as tagging recalls it (no LLM)."""
    return tagger_of(context, overrides).recall_text(text, context=context, base=base, **overrides)


def supporting_spans(text: str, tags: Iterable[str], *, context: Context | None = None, **overrides) -> dict[str, list[dict]]:
    """``Tagger.supporting_spans``: the words behind each tag."""
    return tagger_of(context, overrides).supporting_spans(text, tags, context=context, **overrides)


def pending_review(text: str | None = None, *, content_id: str | None = None, kb_dir: str | None = None) -> dict | None:
    """``Tagger.pending_review``: what the review of a content waits with, or None."""
    return tagger_for(kb_dir).pending_review(text, content_id=content_id)


def review(
    content_id: str, *, accept: Iterable[str] = (), reject: Iterable[str] = (), add: Iterable[str] = (), kb_dir: str | None = None
) -> dict:
    """``Tagger.review``: resume a content's waiting review with a person's decision."""
    return tagger_for(kb_dir).review(content_id, accept=accept, reject=reject, add=add)


def learn(
    text: str,
    correct: Iterable[str],
    incorrect: Iterable[str] = (),
    *,
    sample_id: str | None = None,
    kb_dir: str | None = None,
    replace: bool = False,
) -> dict:
    """``Tagger.learn``: record a verdict on a text (the one path every surface's correction takes)."""
    return tagger_for(kb_dir).learn(text, correct, incorrect, sample_id=sample_id, replace=replace)


def search_tags(query: str, limit: int = 10, *, kb_dir: str | None = None) -> list[dict]:
    """``Tagger.search_tags``: ``[{"tag", "similarity", "description"}]``."""
    return tagger_for(kb_dir).search_tags(query, limit)


def change_tag(tag: str, action: TagChangeAction, into: str | None = None, *, kb_dir: str | None = None) -> dict:
    """``Tagger.change_tag``: rename, merge or retire a tag."""
    return tagger_for(kb_dir).change_tag(tag, action, into)
