"""Web search snippets through ddgs (the maintained successor of duckduckgo-search).

Off by default. A failed search is tried again once after a short back-off (tenacity); when it
still fails — no network, a timeout, a changed provider — there are no snippets and a note that
names the failure, and the tagging run goes on without them. In the tagging graph a search is a
LangGraph task cached by its query, successes only.
"""

from __future__ import annotations

import hashlib
import json

from langgraph.func import task
from langgraph.types import CachePolicy

ATTEMPTS = 2
CACHE_TTL_S = 24 * 3600  # a web answer is reused for a day


class WebSearchUnavailable(Exception):
    """Every attempt failed; the message names the last failure."""


def fetch_snippets(query: str, max_results: int, timeout_s: float) -> list[dict]:
    """Up to ``max_results`` snippets ``{"kind": "web", "source": url, "title", "text"}``; raises
    ``WebSearchUnavailable`` when every attempt failed."""
    from tenacity import Retrying, stop_after_attempt, wait_exponential

    try:
        from ddgs import DDGS

        for attempt in Retrying(stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=0.5, max=4), reraise=True):
            with attempt:
                results = DDGS(timeout=max(1, int(round(timeout_s)))).text(query[:300], max_results=max_results)
    except Exception as exc:  # ddgs raises its own and the transport's exception types
        raise WebSearchUnavailable(
            f"web search unavailable after {ATTEMPTS} attempts ({type(exc).__name__}: {str(exc)[:120]}); tagged without it"
        ) from exc
    snippets = [
        {"kind": "web", "source": r.get("href", ""), "title": r.get("title", ""), "text": r.get("body", ""), "similarity": None}
        for r in results or []
        if r.get("body")
    ]
    return snippets[:max_results]


def _query_key(query: str, max_results: int, timeout_s: float) -> str:
    return hashlib.sha256(json.dumps(["web", query[:300], max_results], ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


# A LangGraph task: inside the graph its answer is cached by query (in the knowledge base's node
# cache, for a day); a failure raises, so it is never cached and the next call searches again.
web_snippets = task(fetch_snippets, name="web_search", cache_policy=CachePolicy(key_func=_query_key, ttl=CACHE_TTL_S))


def search_web(query: str, max_results: int, timeout_s: float) -> tuple[list[dict], str | None]:
    """The snippets, or none and a note that names the failure — inside the tagging graph through
    the cached ``web_snippets`` task, elsewhere directly."""
    from langgraph.config import get_config

    try:
        get_config()
    except RuntimeError:  # not inside a graph run: no task, no cache
        search = fetch_snippets
    else:

        def search(*args):
            return web_snippets(*args).result()

    try:
        return search(query, max_results, timeout_s), None
    except WebSearchUnavailable as exc:
        return [], str(exc)
