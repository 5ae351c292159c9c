"""One ``Tagger`` per knowledge base and process: every operation on it, in one object.

``tagger_for(kb_dir)`` returns it (the bundled demo knowledge base when ``kb_dir`` is None; only
loaders create a knowledge base). A ``Tagger`` holds the knowledge base's ``Runtime`` — the
``KnowledgeBase``, the embeddings already computed, the backend, the fitted fusion and threshold,
the node cache and the review checkpointer — and offers the operations every surface offers: ``tag``
(and ``tag_stream``), ``recall``, ``supporting_spans``, ``learn``, ``review`` and
``pending_review``, ``restore`` (an undo), ``search_tags``, ``change_tag``, ``stats`` and
``explain``. It also holds its compiled tagging graphs and the lock reviews and corrections take.
Surfaces receive a ``Tagger`` and only parse and serialise: REST's ``create_app``, the MCP
server, the Gradio page, the CLI and the LangChain tool. The graph's nodes find the same
``Runtime`` by the run's ``Context.kb_dir`` (``agent.runtime.runtime_for``); only LangGraph's server
(``agent.served``) resolves a folder a caller named, and refuses one it does not serve.

::

    from agent.tagger import tagger_for

    tagger = tagger_for("my-kb")
    result = tagger.tag("A command-line tool that converts PNG images to PDF", max_tags=3)
    tagger.learn(result["text"], ["works-with::image"], ["use::editing"])

A result is the tagging graph's output (``agent.state.OutputState``); ``agent.results.tag_result``
gives the shape every surface returns. Settings are a ``Context`` (``context=``) and/or keyword
overrides of its fields; an empty text raises ``knowledge_base.InputError``, an unknown tag in
``learn`` ``knowledge_base.UnknownTagsError``.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

from knowledge_base import KnowledgeBase, Sample
from knowledge_base.config import RecallConfig
from knowledge_base.errors import InputError, NoReviewWaitingError
from knowledge_base.loaders import content_id as _content_id
from knowledge_base.loaders import require_text, verdict
from knowledge_base.recall import RecallResult

from .context import Context
from .explanation import explain as _explain
from .runtime import Runtime, reset_runtimes, runtime_for

if TYPE_CHECKING:
    from filelock import FileLock

# The tagging graph (LangGraph, LangChain: about a second to import) is imported by the calls that
# run it, so ``recall``, ``learn`` and ``search_tags`` answer without it.

# A run that waits for a review is checkpointed when it stops to wait or ends, not after every
# step: one copy of its state instead of one per node (a 900 KB text had grown the file 13 MB)
REVIEW_DURABILITY = "exit"

TagChangeAction = Literal["rename", "merge", "retire"]


def _payload(text: str, title: str | None, content_id: str | None, metadata: dict | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"content": text}
    if title:
        payload["title"] = title
    if content_id:
        payload["content_id"] = content_id
    if metadata:
        payload["metadata"] = metadata
    return payload


def review_thread(content_id: str) -> dict:
    """The run configuration of the review thread of one content (one waiting review per content)."""
    return {"configurable": {"thread_id": f"review-{content_id}"}}


def _with_review(result: dict, config: dict) -> dict:
    """A run that stopped for a review carries ``review``: pending, with what it waits for."""
    interrupts = result.pop("__interrupt__", None)
    if interrupts:
        request = interrupts[0].value
        result["review"] = {
            "status": "pending",
            "thread_id": config["configurable"]["thread_id"],
            "proposed": [t["tag"] for t in request.get("proposed") or []],
            "other_candidates": request.get("other_candidates") or [],
        }
    return result


def _waiting(snapshot) -> dict | None:
    """What a review thread's state waits with, or None when it waits for nothing."""
    from .nodes.review import review_request

    if "review" in (snapshot.next or ()) and snapshot.interrupts:
        return snapshot.interrupts[0].value
    if "record_review" in (snapshot.next or ()):  # a decision was taken but could not be written: the review still waits
        failure = next((t.error for t in snapshot.tasks if t.name == "record_review" and t.error), None)
        return {**review_request(snapshot.values), "error": f"the last decision could not be recorded ({failure or 'the run stopped'})"}
    return None


class Tagger:
    """Every operation on one knowledge base, over its ``Runtime``, in this process; thread-safe."""

    def __init__(self, runtime: Runtime, kb_dir: str | None = None):
        self.runtime = runtime
        self.kb: KnowledgeBase = runtime.kb
        self.kb_dir = kb_dir  # what runs name in their Context (None: the demo knowledge base)
        self._graphs: dict[tuple[bool, bool], Any] = {}
        self._graphs_lock = threading.Lock()
        self._review_lock: "FileLock | None" = None

    # ---- what the runtime holds --------------------------------------------------------------
    def threshold(self, ctx: Context) -> float:
        """The confidence threshold a run uses (``Runtime.threshold``)."""
        return self.runtime.threshold(ctx)

    def backend_spec(self, ctx: Context) -> str:
        return self.runtime.backend_spec(ctx)

    def backend(self, ctx: Context):
        return self.runtime.backend(ctx)

    def warm_up(self) -> None:
        self.runtime.warm_up()

    # ---- settings --------------------------------------------------------------------------
    def context(self, context: Context | None = None, **overrides) -> Context:
        """A run's settings on this knowledge base: ``context`` (else the defaults and
        ``LLM4TAG_*`` variables) with ``overrides``, whatever folder it named."""
        return replace((context or Context.from_env()).with_overrides(**overrides), kb_dir=self.kb_dir)

    # ---- the tagging graph -----------------------------------------------------------------
    def graph(self, review: bool = False, cache: bool = True):
        """The tagging graph compiled for this knowledge base (one per kind): with its node cache
        unless ``cache`` is off, and — only for runs that wait for a review — its review
        checkpointer. The module-level ``agent.graph.graph`` has neither."""
        from .graph import build_graph

        node_cache = self.runtime.node_cache() if cache else None  # emptied here when the knowledge base changed
        checkpointer = self.runtime.checkpointer() if review else None
        key = (review, node_cache is not None)
        with self._graphs_lock:
            compiled = self._graphs.get(key)
            if compiled is None or compiled.cache is not node_cache or compiled.checkpointer is not checkpointer:
                compiled = self._graphs[key] = build_graph(cache=node_cache, checkpointer=checkpointer)
            return compiled

    def _start(self, text: str, title, content_id, metadata, context: Context | None, overrides: dict) -> tuple[Context, dict, Any, dict]:
        """What a run of ``tag`` or ``tag_stream`` starts from: its settings, its graph input, the
        graph compiled for it and (with review) its thread."""
        ctx = self.context(context, **overrides)
        payload = _payload(text, title, content_id, metadata)
        return (ctx, payload, *self._run(payload, ctx))

    def _run(self, payload: dict, ctx: Context) -> tuple[Any, dict]:
        from .nodes.prepare import prepared_input

        compiled = self.graph(review=ctx.review, cache=ctx.use_cache)
        if not ctx.review:
            return compiled, {}
        config = review_thread(prepared_input(payload)[1])
        self.runtime.admit_review(config["configurable"]["thread_id"])  # replaces one of this content that still waited
        return compiled, config

    # ---- tagging ---------------------------------------------------------------------------
    def tag(
        self,
        text: str,
        *,
        title: str | None = None,
        content_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        context: Context | None = None,
        **overrides,
    ) -> dict:
        """Tag one content with the full pipeline; returns the graph's output (tags, candidates, why).

        ``overrides`` are Context fields, e.g. ``tag(text, mode="single", threshold=0.6)``. With
        ``review=True`` the run waits after calibrate: the result's ``review`` is pending until a
        correction of the same text (``learn``) or ``review`` resumes it, in this process or a later one.
        """
        ctx, payload, compiled, config = self._start(text, title, content_id, metadata, context, overrides)
        return _with_review(compiled.invoke(payload, config=config, context=ctx, durability=REVIEW_DURABILITY if config else None), config)

    def tag_stream(
        self,
        text: str,
        *,
        title: str | None = None,
        content_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        context: Context | None = None,
        **overrides,
    ) -> Iterator[tuple[str, dict, dict]]:
        """Tag one content step by step: yields ``(node, its changes, the result so far)`` as each node
        finishes, and ``("judgment", one judgment, the result so far)`` as the calibrate node computes
        each, and ``("review", {"review": …}, the result so far)`` when a run with review on stops to
        wait; the last "result so far" equals what ``tag`` returns. The graph's own reducers merge the
        steps (LangGraph's ``values`` stream), so no surface re-implements them. ``prepare`` (the
        cleaning of the input) is not reported."""
        from .graph import NODE_ORDER

        ctx, payload, compiled, config = self._start(text, title, content_id, metadata, context, overrides)
        pending: list[tuple[str, dict]] = []
        state: dict = {}
        for mode, data in compiled.stream(
            payload,
            config=config,
            context=ctx,
            stream_mode=["updates", "values", "custom"],
            durability=REVIEW_DURABILITY if config else None,
        ):
            if mode == "custom" and isinstance(data, dict) and "judgment" in data:
                yield "judgment", data["judgment"], state
            elif mode == "updates":
                if "__interrupt__" in data:
                    state = _with_review({**state, "__interrupt__": data["__interrupt__"]}, config)
                    yield "review", {"review": state["review"]}, state
                    continue
                pending.extend((node, changes or {}) for node, changes in data.items() if node != "__metadata__")
            else:  # the state after a step: report the nodes of that step (in pipeline order), each with the merged state
                state = dict(data)
                for node, changes in sorted(
                    pending, key=lambda item: NODE_ORDER.index(item[0]) if item[0] in NODE_ORDER else len(NODE_ORDER)
                ):
                    if node != "prepare":
                        yield node, changes, state
                pending = []

    def recall_text(self, text: str, *, context: Context | None = None, base: RecallConfig | None = None, **overrides) -> RecallResult:
        """The candidate set Φ(c) with every candidate's evidence, exactly as tagging recalls it (no LLM).

        ``base`` replaces the knowledge base's recall settings (e.g. ``RecallConfig.paper()``); the
        run's ``Context`` overrides are applied on top of it."""
        ctx = self.context(context, **overrides)
        cleaned = require_text(text)
        return self.runtime.recall(cleaned, ctx.recall_config(base or self.kb.config.recall), own_id=_content_id(cleaned))

    def supporting_spans(self, text: str, tags: Iterable[str], *, context: Context | None = None, **overrides) -> dict[str, list[dict]]:
        """The words behind each tag: the runs of the (cleaned) text whose removal lowers recall's score
        for it the most (occlusion, ``knowledge_base.attribution``), as ``{tag: [{"start", "end",
        "text", "drop"}]}`` with character offsets in the cleaned text (a result's ``text``)."""
        from knowledge_base.attribution import supporting_spans as spans_of

        ctx = self.context(context, **overrides)
        cleaned = require_text(text)
        spans = spans_of(self.kb, cleaned, tags, ctx.recall_config(self.kb.config.recall), own_id=_content_id(cleaned))
        return {tag: [s.to_dict() for s in found] for tag, found in spans.items()}

    @staticmethod
    def explain(result: dict, tag: str) -> dict:
        """What the pipeline knew about ``tag`` for this result, step by step (``agent.explanation.explain``)."""
        return _explain(result, tag)

    # ---- reviews and corrections -------------------------------------------------------------
    def pending_review(self, text: str | None = None, *, content_id: str | None = None) -> dict | None:
        """What the review of a content (by its text or its id) waits with, or None when none waits."""
        if not self.runtime.has_reviews():
            return None
        cid = content_id or _content_id(require_text(text))
        return _waiting(self.graph(review=True).get_state(review_thread(cid)))

    def reviews_locked(self) -> "FileLock":
        """The lock a review decision and a learn take to check what waits and write: shared by the
        threads and processes of this knowledge base, re-entrant in a thread (a learn that resumes a
        review takes it twice), so an acknowledged learn and a decision of the same text never interleave."""
        from filelock import FileLock

        with self._graphs_lock:
            if self._review_lock is None:
                self._review_lock = FileLock(str(self.kb.directory / ".review.lock"), timeout=120)
            return self._review_lock

    def review(self, content_id: str, *, accept: Iterable[str] = (), reject: Iterable[str] = (), add: Iterable[str] = ()) -> dict:
        """Resume a content's waiting review with a person's decision; returns the reviewed result.

        The decision is validated before the run resumes; no review waiting is an ``InputError``
        (also for the second of two decisions sent at once: one review takes one decision, under a
        lock shared by threads and processes)."""
        from langgraph.types import Command

        from .nodes.review import check_decision

        try:
            decision = check_decision({"accept": list(accept), "reject": list(reject), "add": list(add)}, self.kb)
        except InputError as exc:
            exc.args = (f"{exc}; the review still waits",)
            raise
        with self.reviews_locked():
            compiled = self.graph(review=True)
            config = review_thread(content_id)
            snapshot = compiled.get_state(config) if self.runtime.has_reviews() else None
            if snapshot is None or _waiting(snapshot) is None:
                raise NoReviewWaitingError(
                    f"no review is waiting for content {content_id!r} (none was started, or it was decided "
                    "already); tag it with review on first"
                )
            ctx = self.context()  # the review nodes need only the knowledge base
            if "record_review" in snapshot.next:
                # the last decision could not be written: this one replaces it, and the write runs again
                compiled.update_state(config, {"review_decision": decision.model_dump()}, as_node="review")
                resumed = compiled.invoke(None, config=config, context=ctx, durability=REVIEW_DURABILITY)
            else:
                resumed = compiled.invoke(Command(resume=decision.model_dump()), config=config, context=ctx, durability=REVIEW_DURABILITY)
            result = _with_review(resumed, config)
            if result.get("review", {}).get("status") == "pending":
                waiting = _waiting(compiled.get_state(config)) or {}
                raise InputError(f"{waiting.get('error') or 'the decision could not be recorded'}; the review still waits")
            self.runtime.drop_review(config["configurable"]["thread_id"])  # decided: nothing waits any more
        return result

    def learn(
        self, text: str, correct: Iterable[str], incorrect: Iterable[str] = (), *, sample_id: str | None = None, replace: bool = False
    ) -> dict:
        """Record a verdict on a text: its correct and incorrect tags become a sample (an in-context
        example for similar texts) and deterministic graph edges (C2C2T recall).

        A ``sample_id`` that already holds a different text is a conflict
        (``knowledge_base.ConflictError``, nothing written) unless ``replace`` is true.

        The one path every surface's correction takes. When a review waits for this text (a run
        tagged with ``review=True``, found by ``sample_id`` or by the text's own id), the verdict is
        that review's decision and resumes it (accept: the proposed tags among ``correct``; add: the
        others; reject: ``incorrect``); either way the write is ``Runtime.record``. With ``replace``
        the verdict is written directly and a waiting review of that id is dropped. The text's
        embedding comes from the runtime (a text just tagged is not encoded again); the tags are
        validated once, by the knowledge base, inside its write lock. Once enough new samples arrived
        since the learned recall path was trained, it is retrained in the background (``retraining``:
        whether this call started it).
        Returns ``{"id", "correct", "incorrect", "samples", "retraining"}`` (and ``review`` when a
        review was resumed).
        """
        cleaned = require_text(text)
        correct, incorrect = verdict(correct, incorrect)
        if not self.runtime.has_reviews():
            return self.runtime.record(cleaned, correct, incorrect, cid=sample_id or None, replace=replace)
        with self.reviews_locked():  # no review decision of this text in between: either resumes it or comes after it
            return self._learn_or_resume(cleaned, correct, incorrect, sample_id, replace)

    def _learn_or_resume(
        self, cleaned: str, correct: tuple[str, ...], incorrect: tuple[str, ...], sample_id: str | None, replace: bool
    ) -> dict:
        for cid in dict.fromkeys(i for i in (sample_id, _content_id(cleaned)) if i):
            waiting = self.pending_review(content_id=cid)
            if waiting is None or waiting.get("text") != cleaned:
                continue
            if replace:
                self.runtime.drop_review(review_thread(cid)["configurable"]["thread_id"])
                continue
            proposed = {t["tag"] for t in waiting.get("proposed") or []}
            reviewed = self.review(
                cid, accept=[t for t in correct if t in proposed], add=[t for t in correct if t not in proposed], reject=list(incorrect)
            )
            done = reviewed.get("review") or {}
            return {
                "id": done.get("sample", cid),
                "correct": list(correct),
                "incorrect": list(incorrect),
                "samples": done.get("samples", self.kb.collection("samples").count()),
                "retraining": bool(done.get("retraining")),
                "review": done,
            }
        return self.runtime.record(cleaned, correct, incorrect, cid=sample_id or None, replace=replace)

    def sample(self, sample_id: str) -> dict | None:
        """The sample stored under an id, with where it came from (``origin``), or None: what
        ``restore`` needs to put it back."""
        got = self.kb.collection("samples").get(ids=[sample_id], include=["metadatas"])
        stored = self.kb.get_sample(sample_id)
        if not got["ids"] or stored is None:
            return None
        origin = (got["metadatas"][0] or {}).get("origin") or "feedback"
        return {
            "id": stored.id,
            "text": stored.text,
            "tags": list(stored.tags),
            "incorrect_tags": list(stored.incorrect_tags),
            "origin": origin,
        }

    def restore(self, sample_id: str, previous: dict | None) -> str:
        """Undo a correction: put back the sample that was stored under ``sample_id`` before it
        (``previous``, as ``sample`` returned it), or remove the sample when there was none.
        Returns what was done, in words."""
        if previous:
            restored = Sample(previous["id"], previous["text"], tuple(previous["tags"]), tuple(previous["incorrect_tags"]))
            self.kb.add_samples([restored], unknown_tags="skip", origin=previous.get("origin") or "feedback")
            return "the sample is back to what it was before"
        self.kb.remove_sample(sample_id)
        return "the sample and its graph edges are removed"

    # ---- the tag repository ----------------------------------------------------------------
    def search_tags(self, query: str, limit: int = 10) -> list[dict]:
        """Tags of the repository whose name contains the query, then the nearest in meaning:
        ``[{"tag", "similarity", "description"}]``."""
        hits = self.kb.search_tags(query, limit)
        return [{"tag": h.id, "similarity": round(h.similarity, 4), "description": h.metadata.get("description", "") or ""} for h in hits]

    def change_tag(self, tag: str, action: TagChangeAction, into: str | None = None) -> dict:
        """Rename a tag (``into``: a name not in the repository), merge it into another (``into``: a
        tag there) or retire it (``into`` left out) — ``KnowledgeBase.change_tag``: its history moves
        to the replacement, a retired tag is never suggested again, and what was there is kept in the
        knowledge base's ``tag-changes.jsonl``. The one path every surface's change takes; a wrong
        action for the names given is an ``InputError`` that says which action fits.
        Returns ``{"change", "tag", "into", "samples", "removed_samples", "conflicts", "children", "summary"}``."""
        kb = self.kb
        if action not in ("rename", "merge", "retire"):
            raise InputError(f"unknown action {action!r}; use rename, merge or retire")
        if not kb.has_tag(tag):
            gone = kb.replacement(tag)
            raise InputError(
                f"'{tag}' is not in the tag repository"
                + (f" (it became '{gone}')" if gone else "")
                + "; search for its exact name with llm4tag kb search or GET /v1/tags?q=…"
            )
        if action == "retire":
            if into:
                raise InputError(f"retiring {tag} takes no replacement; to move its history into {into!r} merge it instead")
            return kb.change_tag(tag, None)
        if not into:
            raise InputError(f"{action} needs the name of the tag {tag} becomes ('into')")
        if action == "rename" and kb.has_tag(into):
            raise InputError(f"'{into}' is already a tag; to move {tag}'s history into it, merge instead of rename")
        if action == "merge" and not kb.has_tag(into):
            raise InputError(f"'{into}' is not in the tag repository; to give {tag} a new name, rename instead of merge")
        return kb.change_tag(tag, into)

    def stats(self, check: bool = False) -> dict:
        """The knowledge base's counts and settings (``KnowledgeBase.stats``)."""
        return self.kb.stats(check=check)


_taggers: dict[int, Tagger] = {}
_taggers_lock = threading.Lock()


def tagger_for(kb_dir: str | Path | None, create: bool = False) -> Tagger:
    """The ``Tagger`` of the knowledge base at ``kb_dir`` (the demo one when None), one per process.

    Only loaders create a knowledge base (``create``); any other caller naming a folder that is
    not one gets a ``KnowledgeBaseError`` and nothing is made on disk."""
    runtime = runtime_for(kb_dir, create=create)
    with _taggers_lock:
        tagger = _taggers.get(id(runtime))
        if tagger is None or tagger.runtime is not runtime:
            tagger = _taggers[id(runtime)] = Tagger(runtime, str(runtime.kb.directory) if kb_dir else None)
        return tagger


def reset() -> None:
    """Forget what this process holds between calls — every Tagger and Runtime, the loaded LLM
    backends, the failures noted for retries — so the next call opens and loads afresh (tests;
    the encoders stay loaded: they hold no state of a knowledge base)."""
    from .llm import forget_backends
    from .retries import forget_failures

    with _taggers_lock:
        _taggers.clear()
    reset_runtimes()
    forget_backends()
    forget_failures()
