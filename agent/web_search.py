"""Web search snippets through ddgs (the maintained successor of duckduckgo-search).

Off by default. A failed search is tried again once after a short back-off (tenacity); when it
still fails — no network, a timeout, a changed provider — there are no snippets and a note that
names the failure, and the tagging run goes on without them.
"""

from __future__ import annotations

ATTEMPTS = 2


def search_web(query: str, max_results: int, timeout_s: float) -> tuple[list[dict], str | None]:
    """Up to ``max_results`` snippets ``{"kind": "web", "source": url, "title", "text"}``, or a note."""
    from tenacity import Retrying, stop_after_attempt, wait_exponential

    try:
        from ddgs import DDGS

        for attempt in Retrying(stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=0.5, max=4), reraise=True):
            with attempt:
                results = DDGS(timeout=max(1, int(round(timeout_s)))).text(query[:300], max_results=max_results)
    except Exception as exc:  # ddgs raises its own and the transport's exception types
        return [], f"web search unavailable after {ATTEMPTS} attempts ({type(exc).__name__}: {str(exc)[:120]}); tagged without it"
    snippets = [
        {"kind": "web", "source": r.get("href", ""), "title": r.get("title", ""), "text": r.get("body", ""), "similarity": None}
        for r in results or []
        if r.get("body")
    ]
    return snippets[:max_results], None
