"""A pool of model workers: tag calls spread over processes, each holding its own model.

One embedded llama.cpp model evaluates one prompt at a time (``agent.llm.llamacpp``), so threads
in one process queue behind it. ``TaggerPool(workers, context)`` starts ``workers`` processes
(``spawn``); each opens the knowledge base and loads the model once, when it starts, and then
tags whatever it is given through the façade (``agent.tagging.tag``) — the same graph, the same
results as in-process tagging. Each worker runs llama.cpp, the encoder and torch on one thread
(``LLM4TAG_LLM_THREADS``, ``LLM4TAG_ENCODER_THREADS``, unless set), so N workers use N cores.
With a remote backend (``ollama:…``) the server does the work: the pool is threads, as many as
the server serves at once (``LLM4TAG_OLLAMA_PARALLEL``, default 4), and no process is started.

Each result comes back with the worker's process id and its peak resident memory, so
``memory()`` says what every worker costs. Writes (``write_back``, ``learn``) from workers go
through the knowledge base's file lock like any other process's.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from knowledge_base.errors import Llm4tagError
from knowledge_base.settings import settings

from .context import Context

ONE_THREAD = ("LLM4TAG_LLM_THREADS", "LLM4TAG_ENCODER_THREADS", "OMP_NUM_THREADS")


class WorkerError(Llm4tagError):
    """A worker process died (killed, out of memory) or could not start; the message says which."""


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB. On Linux ``VmHWM`` of ``/proc/self/status``:
    ``ru_maxrss`` survives ``exec``, so a spawned worker would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _start_worker(context: Context) -> None:
    """Runs once in each new worker: one thread per library, then the knowledge base and model."""
    for name in ONE_THREAD:
        os.environ.setdefault(name, "1")
    import torch

    torch.set_num_threads(settings().encoder_threads)
    from .runtime import runtime_for

    runtime = runtime_for(context.kb_dir)
    runtime.embed("llm4tag worker warm-up")  # the encoder's first call loads its session
    if context.use_generation or context.use_calibration:
        runtime.backend(context)


def _tag_in_worker(text: str, title: str | None, context: Context) -> tuple[dict, int, float]:
    from .tagging import tag

    return tag(text, title=title, context=context), os.getpid(), peak_rss_mb()


def _worker_ready() -> int:
    import time

    time.sleep(0.2)  # long enough that the other workers take their share of the warm-up calls
    return os.getpid()


def remote_backend(context: Context) -> bool:
    return (context.backend or "").strip().startswith("ollama")


class TaggerPool:
    """``workers`` taggers for ``context``'s knowledge base and backend; ``submit`` returns a
    ``Future`` of ``agent.tagging.tag``'s result. Use as a context manager, or ``close()``."""

    def __init__(self, workers: int, context: Context):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.context = context
        self.kind = "threads" if remote_backend(context) else "processes"
        self._memory: dict[int, float] = {}
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> Executor:
        if self.kind == "threads":
            return ThreadPoolExecutor(self.workers, thread_name_prefix="llm4tag-tagger")
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(self.context,)
        )

    def _submit(self, fn, *args, **kwargs) -> Future:
        """Submit to the executor; one whose worker died is replaced (later calls run on fresh workers)."""
        with self._lock:
            try:
                return self._executor.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
                return self._executor.submit(fn, *args, **kwargs)

    def submit(self, text: str, title: str | None = None, context: Context | None = None) -> "Future[dict]":
        """Tag ``text`` in a worker with ``context`` (the pool's own when None; it must use the
        pool's knowledge base and backend, which the workers hold)."""
        ctx = context or self.context
        if ctx.kb_dir != self.context.kb_dir or ctx.backend != self.context.backend:
            raise ValueError("a pool tags with the knowledge base and backend it was started for")
        outer: Future = Future()
        self._run(outer, text, title, ctx, retries=1)
        return outer

    def _run(self, outer: Future, text: str, title: str | None, ctx: Context, retries: int) -> None:
        """Tag in a worker and settle ``outer`` with the result. When the worker process dies, every
        call queued on the pool fails with it (``BrokenProcessPool``): each is run again once on
        fresh workers, so only a call that kills a worker twice fails (``WorkerError``)."""
        if self.kind == "threads":
            from .tagging import tag

            inner = self._submit(tag, text, title=title, context=ctx)
        else:
            inner = self._submit(_tag_in_worker, text, title, ctx)

        def done(f: Future) -> None:
            try:
                value = f.result()
            except BrokenProcessPool as broken:
                reason: BaseException = broken
                if retries > 0:
                    try:
                        self._run(outer, text, title, ctx, retries - 1)
                        return
                    except BaseException as again:  # noqa: BLE001 - the pool is closing, or cannot start workers
                        reason = again
                outer.set_exception(
                    WorkerError(
                        f"a tagging worker process died twice on this item ({reason}); it may run out of memory — "
                        "the pool starts fresh workers for what comes next; use fewer workers if it recurs"
                    )
                )
            except BaseException as exc:  # the tagger's own errors reach the caller as they are
                outer.set_exception(exc)
            else:
                if self.kind == "threads":
                    outer.set_result(value)
                else:
                    result, pid, rss = value
                    with self._lock:
                        self._memory[pid] = rss
                    outer.set_result(result)

        inner.add_done_callback(done)

    def start(self) -> None:
        """Start every worker and wait until each has loaded the knowledge base and the model
        (otherwise they start with the first calls)."""
        if self.kind == "threads":
            return
        ready: set[int] = set()
        for _ in range(10):
            try:
                ready.update(f.result() for f in [self._submit(_worker_ready) for _ in range(self.workers)])
            except BrokenProcessPool as exc:
                raise WorkerError(f"a tagging worker process could not start ({exc}); see the errors above") from exc
            if len(ready) >= self.workers:
                return

    def memory(self) -> dict[int, float]:
        """Peak resident memory (MiB) of each worker process that has answered, by process id."""
        with self._lock:
            return dict(self._memory)

    def close(self, cancel: bool = False) -> None:
        with self._lock:
            executor = self._executor
        executor.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> "TaggerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close(cancel=exc[0] is not None)
