"""Node 0: prepare — the content as every later node sees it, and the keys its cached steps are stored under.

The title and the content are joined and cleaned here, once; every later node (and a correction
of the result) works on this ``text``. ``cache_keys`` names, per cached node, what its result
depends on: the text, the content's id (its own history entry is never evidence), the settings
of this run that change that node's result, and the knowledge base's revision, so a write to
the knowledge base — here or in another process — misses every earlier entry.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict

from langgraph.runtime import Runtime

from knowledge_base.loaders import content_id, require_text

from ..context import Context, context_of
from ..runtime import runtime_for
from ..state import State

# the shape of the cached results: a change to it (candidates got ``probability`` and ``evidence_score``)
# misses every entry an earlier llm4tag cached
RESULT_FORMAT = 2
KNOWLEDGE_SETTINGS = ("use_knowledge", "max_snippets", "min_snippet_similarity", "use_generation", "use_web_search", "web_timeout_s")


def _digest(*parts) -> str:
    return hashlib.sha256(
        json.dumps((RESULT_FORMAT, *parts), sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    ).hexdigest()


def prepared_input(state: dict) -> tuple[str, str]:
    """(text, content_id) of a graph input: the title and the content joined and cleaned."""
    title = (state.get("title") or "").strip()
    text = require_text(f"{title}\n\n{state['content']}" if title else state["content"])
    return text, state.get("content_id") or content_id(text)


def prepare_content(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = context_of(runtime)
    text, cid = prepared_input(state)
    keys: dict[str, str] = {}
    if ctx.use_cache:
        rt = runtime_for(ctx.kb_dir)
        revision = rt.kb.revision()
        encoding = rt.kb.encoder.runtime  # another runtime's query vectors find other neighbours (LLM4TAG_ENCODER_RUNTIME)
        keys["recall"] = _digest("recall", revision, encoding, text, cid, asdict(ctx.recall_config(rt.kb.config.recall)))
        if not ctx.use_web_search:  # with the web, the search itself is cached by query, and only when it answered
            keys["knowledge"] = _digest("knowledge", revision, encoding, text, {name: getattr(ctx, name) for name in KNOWLEDGE_SETTINGS})
    return {"text": text, "content_id": cid, "cache_keys": keys, "timings": {"prepare": round(time.perf_counter() - started, 4)}}


def cache_key(node: str):
    """The ``CachePolicy.key_func`` of ``node``: the key ``prepare`` computed, or a fresh one (never
    found again) when there is none: the knowledge node with web search on, whose search is cached
    by query instead (``agent.web_search``)."""

    def key(state: dict) -> str:
        return (state.get("cache_keys") or {}).get(node) or f"uncached-{uuid.uuid4().hex}"

    return key
