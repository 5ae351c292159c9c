"""Web search snippets through ddgs (the maintained successor of duckduckgo-search).

Off by default. Any failure — no network, a timeout, a changed provider — returns no snippets
and a note; the tagging run goes on without them.
"""

from __future__ import annotations


def search_web(query: str, max_results: int, timeout_s: float) -> tuple[list[dict], str | None]:
    """Up to ``max_results`` snippets ``{"kind": "web", "source": url, "title", "text"}``, or a note."""
    try:
        from ddgs import DDGS

        results = DDGS(timeout=max(1, int(round(timeout_s)))).text(query[:300], max_results=max_results)
    except Exception as exc:  # ddgs raises its own and the transport's exception types
        return [], f"web search unavailable ({type(exc).__name__}: {str(exc)[:120]}); tagged without it"
    snippets = [
        {"kind": "web", "source": r.get("href", ""), "title": r.get("title", ""), "text": r.get("body", ""), "similarity": None}
        for r in results or []
        if r.get("body")
    ]
    return snippets[:max_results], None
