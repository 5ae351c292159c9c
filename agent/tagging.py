"""The one-call Python API: ``tag(text, ...) -> dict``."""

from __future__ import annotations

from typing import Any

from .context import Context
from .graph import graph


def tag(text: str, *, title: str | None = None, content_id: str | None = None, metadata: dict[str, Any] | None = None,
        context: Context | None = None, **overrides) -> dict:
    """Tag one content with the full pipeline; returns the graph's output (tags, candidates, why).

    ``overrides`` are Context fields, e.g. ``tag(text, kb_dir="kb", mode="single", threshold=0.6)``.
    """
    ctx = (context or Context.from_env()).with_overrides(**overrides)
    payload: dict[str, Any] = {"content": text}
    if title:
        payload["title"] = title
    if content_id:
        payload["content_id"] = content_id
    if metadata:
        payload["metadata"] = metadata
    return graph.invoke(payload, context=ctx)
