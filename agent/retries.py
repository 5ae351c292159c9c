"""Retry policies for the graph's calls to services that can fail for a moment, and the notes that name those failures.

The nodes that call the language model (generate, calibrate) carry ``MODEL_RETRY``, a LangGraph
``RetryPolicy``: a
``TransientBackendError`` — the model server refused the connection or answered 5xx — runs the
node again after a short back-off, at most ``MODEL_RETRY.max_attempts`` times in all. Errors
that another try cannot fix (a missing model, a server too old, a timeout that already waited
the configured time) are not retried. Each failure that a later try got past is named in the
result's notes (``failures_noted``), so a person sees that the server faltered.

Web search is optional evidence, so it is retried inside ``agent.web_search`` and, when it still
fails, the run goes on without it (with a note) instead of failing the node.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from langgraph.types import RetryPolicy

from agent.llm.base import TransientBackendError

FORGET_AFTER_S = 600.0  # a failure older than this belongs to an earlier run


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientBackendError)


MODEL_RETRY = RetryPolicy(initial_interval=0.5, backoff_factor=2.0, max_interval=8.0, max_attempts=3, retry_on=is_transient)

_lock = threading.Lock()
_failures: dict[tuple[str, str], list[tuple[float, str]]] = {}


def forget_failures() -> None:
    """Forget the failures noted for retried runs (tests)."""
    with _lock:
        _failures.clear()


def attempt_key(runtime, content_id: str) -> str:
    """What stays the same across the retries of one node run and differs between runs: LangGraph's
    task id (``content_id`` when run outside a graph)."""
    info = getattr(runtime, "execution_info", None)
    return getattr(info, "task_id", None) or content_id


@contextmanager
def failures_noted(node: str, key: str, notes: list[str]):
    """Around one attempt of ``node`` (``key``: ``attempt_key``): a transient failure is remembered
    (and re-raised for the retry policy); when an attempt succeeds, the failures before it are
    added to ``notes``."""
    key = (node, key)
    try:
        yield
    except TransientBackendError as exc:
        with _lock:
            _failures.setdefault(key, []).append((time.monotonic(), str(exc)))
        raise
    with _lock:
        earlier = [message for at, message in _failures.pop(key, []) if time.monotonic() - at < FORGET_AFTER_S]
    for attempt, message in enumerate(earlier, 1):
        notes.append(f"{node}: attempt {attempt} failed ({message}); retried")
