"""The annotation queue: a file's texts reviewed one record at a time, each decision learned at once.

An annotator with hundreds of texts loads them into the queue (the page's Queue tab); each record
comes with its suggested tags and their confidence — fused recall's answer (``llm=fast``), the
same numbers the Tag page shows first — those at or above the threshold pre-selected. A decision
(accept, change, reject) goes through the one ``tagging.learn`` path at once, and the undecided
records it can change — the nearest to the decided text, whose neighbours and memory now hold
it — are re-scored in the background, so what was learned reorders what is left. When the
learned recall path is retrained (after ``retrain_after`` new samples), every undecided record is
re-scored. A record is re-scored again before it is shown if anything was learned since.

Order: most uncertain first (the record a person is expected to correct most: the expected number
of wrong pre-selections, ``knowledge_base.annotation_queue.uncertainty``), by score (surest first,
for bulk acceptance) or file order. The records and decisions live in the knowledge base
(``knowledge_base.annotation_queue``), so they survive a page reload and a restart.

::

    queue = AnnotationQueue("my-kb")
    queue.load("texts.jsonl")                 # {"added", "already_queued", "problems"}
    record = queue.next("uncertain")          # QueueRecord: text, suggestions [(tag, confidence)]
    queue.decide(record.id, ["tag-a"])        # learned at once; "accepted", "changed" or "rejected"
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from knowledge_base.annotation_queue import DECIDED, Order, QueueCounts, QueueRecord, QueueStore, uncertainty
from knowledge_base.errors import InputError
from knowledge_base.loaders import require_text

from . import tagging
from .batch import read_items
from .confidence import confidence_of
from .context import Context
from .runtime import runtime_for

SUGGESTIONS = 9  # suggested tags per record: the number keys 1–9 toggle them
NEIGHBOURS = 30  # undecided records re-scored after a decision: those nearest to the decided text
MAX_RECORDS = 20000  # records one load may add

log = logging.getLogger("llm4tag.annotation")
_exiting = threading.Event()  # set at interpreter exit: the background re-scoring stops instead of failing on closed executors
# threading's exit hook runs before concurrent.futures refuses new work (it is the hook concurrent.futures uses); atexit runs later
getattr(threading, "_register_atexit", atexit.register)(_exiting.set)


class AnnotationQueue:
    """The queue of one knowledge base, in this process: loading, suggestions, decisions and the
    background re-scoring they start. Thread-safe; several people may work on one queue (a record
    decided by one is passed over for the others)."""

    def __init__(self, kb_dir: str | Path | None, context: Context | None = None):
        self.kb_dir = kb_dir
        self.runtime = runtime_for(kb_dir)
        self.store = QueueStore(self.runtime.kb.directory)
        base = context or Context.from_env(kb_dir=None if kb_dir is None else str(kb_dir))
        self.context = base.with_overrides(llm="fast", review=False)
        self._learned_at = 0.0  # when this process last learned something the suggestions do not know yet
        self._classifier = self.runtime.kb.classifier()
        self._due: dict[str, None] = {}  # records waiting to be re-scored, in order
        self._vectors: dict[str, np.ndarray] | None = None  # the records' embeddings, read once (a decision finds its neighbours here)
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None

    # ---- suggestions ------------------------------------------------------------------------
    def threshold(self) -> float:
        return self.runtime.threshold(self.context)

    def suggest(self, text: str) -> tuple[list[tuple[str, float | None]], list[str]]:
        """The tags suggested for a text with their confidence (None without a trained ranker) —
        first those fused recall's answer keeps at the threshold, then the others, surest first —
        and the kept ones: what the Tag page answers first for the same text."""
        result = tagging.tag(text, context=self.context)
        kept = [t["tag"] for t in result.get("tags") or []]
        confidence = {c["tag"]: c["probability"] for c in result.get("candidates") or [] if c.get("probability") is not None}
        confidence.update({j["tag"]: confidence_of(j) for j in result.get("judgments") or []})  # the scored ones: their final confidence
        others = [c["tag"] for c in result.get("candidates") or [] if c["tag"] not in kept]
        others.sort(key=lambda t: -(confidence.get(t) if confidence.get(t) is not None else -1.0))  # stable: recall's order without one
        suggestions = [(t, None if confidence.get(t) is None else float(confidence[t])) for t in [*kept, *others]][:SUGGESTIONS]
        return suggestions, [t for t, _ in suggestions if t in kept]

    def score(self, ids_and_texts: Iterable[tuple[str, str]], progress: Callable[[int, int], None] | None = None) -> int:
        """Suggest tags for these records and store them; returns how many were scored."""
        pairs = list(ids_and_texts)
        threshold = self.threshold()
        scored = []
        for n, (rid, text) in enumerate(pairs, 1):
            suggestions, preselected = self.suggest(text)
            scored.append((rid, suggestions, preselected, uncertainty(suggestions, threshold)))
            if len(scored) >= 50:
                self.store.set_suggestions(scored)
                scored = []
            if progress:
                progress(n, len(pairs))
        self.store.set_suggestions(scored)
        return len(pairs)

    # ---- loading ------------------------------------------------------------------------------
    def load(self, path: str | Path, progress: Callable[[int, int], None] | None = None) -> dict:
        """Queue the texts of a JSONL file (one ``{"id", "text", "title"?}`` per line, or one plain
        text per line), encode them and suggest their tags. A bad line is reported and skipped; a
        record whose id is queued already is kept as it is. Returns ``{"added", "already_queued", "problems"}``."""
        path = Path(path)
        items, problems = [], []
        for item in read_items(path):
            if item.error or item.text is None:
                problems.append(f"line {item.line}: {item.error or 'no text'}")
                continue
            try:
                items.append((item.key, require_text(item.text), item.title))
            except InputError as exc:
                problems.append(f"line {item.line}: {exc}")
        if not items and problems:
            raise InputError(
                f'{path.name} has no text to queue ({problems[0]}); give one JSON object with a "text" per line, or one text per line'
            )
        if not items:
            raise InputError(f'{path.name} is empty; give one JSON object with a "text" per line, or one text per line')
        if len(items) > MAX_RECORDS:
            raise InputError(f"{path.name} holds {len(items)} texts; one load takes at most {MAX_RECORDS} (split the file)")
        vectors = self.runtime.kb.encoder.encode([text for _, text, _ in items]).vectors
        added, already = self.store.add(items, vectors)
        self._vectors = None  # read again with the new records
        queued = set(self.store.undecided_ids())
        self.score([(rid, text) for rid, text, _ in items if rid in queued], progress)
        return {"added": added, "already_queued": already, "problems": problems}

    # ---- the record on screen ---------------------------------------------------------------
    def next(self, order: Order = "uncertain", after: Iterable[str] = (), match: str | None = None) -> QueueRecord | None:
        """The next undecided record in ``order`` (``after``: ids to pass over; ``match``: only records
        whose text or suggested tags contain it), its suggestions brought up to date when something
        was learned since they were made."""
        self._notice_retraining()
        record = self.store.next(order, after, match)
        return self.fresh(record)

    def fresh(self, record: QueueRecord | None) -> QueueRecord | None:
        """``record`` with its suggestions re-scored when something was learned since they were made."""
        if record is not None and record.scored_at < self._learned_at:
            self.score([(record.id, record.text)])
            record = self.store.get(record.id) or record
        return record

    def decide(self, rid: str, correct: Iterable[str], incorrect: Iterable[str] | None = None) -> dict:
        """A person's decision on a record: ``correct`` the tags that fit it (none: no suggestion
        fits). Unless ``incorrect`` is given, the pre-selected suggestions left out are the wrong
        ones. Learned at once (``tagging.learn``); the status says how it compares with the
        suggestion: ``accepted`` (as pre-selected), ``changed`` or ``rejected`` (nothing fits).
        Returns ``{"status", "learned"}``; an unknown or decided record is an ``InputError``."""
        record = self.store.get(rid)
        if record is None:
            raise InputError(f"no record {rid!r} in the queue; load the file again or pick the next record")
        if record.decided:
            raise InputError(f"record {rid!r} was decided already ({record.status}); the next record is shown")
        correct = list(dict.fromkeys(correct))
        suggested = record.preselected
        if incorrect is None:  # a pre-selected tag left out is wrong; with nothing pre-selected, a rejection rejects the first suggestion
            incorrect = [t for t in suggested if t not in correct] or ([] if correct else [t for t, _ in record.suggestions[:1]])
        incorrect = [t for t in dict.fromkeys(incorrect) if t not in correct]
        if not correct and not incorrect:
            raise InputError("this record has no suggestion to reject; add the tags that fit it, or skip it")
        status = "rejected" if not correct else "accepted" if set(correct) == set(suggested) else "changed"
        learned = tagging.learn(record.text, correct, incorrect, kb_dir=self.kb_dir)
        if not self.store.decide(rid, status, correct, incorrect):
            raise InputError(f"record {rid!r} was decided by someone else meanwhile; your verdict was learned too")
        self._learned_at = time.time()
        self._rescore_near(record)
        return {"status": status, "learned": learned}

    def skip(self, rid: str) -> None:
        """Put a record behind the open ones."""
        self.store.skip(rid)

    def accept_above(self, cut: float, limit: int | None = None, match: str | None = None) -> int:
        """Accept, on every undecided record (``match``: those whose text or suggested tags contain
        it), its suggested tags at or above ``cut`` (records with none are left); surest first, at
        most ``limit`` records. Returns how many were decided."""
        sure = [(r, [t for t, p in r.suggestions if p is not None and p >= cut]) for r in self.store.undecided(match)]  # skipped ones too
        sure = sorted([(r, tags) for r, tags in sure if tags], key=lambda rt: -max(p for _, p in rt[0].suggestions if p is not None))
        for record, tags in sure[:limit]:
            self.decide(record.id, tags)
        return len(sure[:limit])

    def counts(self) -> QueueCounts:
        return self.store.counts()

    # ---- re-scoring in the background ---------------------------------------------------------
    def _rescore_near(self, record: QueueRecord) -> None:
        """Queue the undecided records nearest to a decided one for re-scoring (its verdict is now
        one of their neighbours and their memory)."""
        if self._vectors is None:
            self._vectors = self.store.vectors()
        undecided = [rid for rid in self.store.undecided_ids() if rid in self._vectors]
        if not undecided:
            return
        vector, _ = self.runtime.embed(record.text)
        matrix = np.stack([self._vectors[rid] for rid in undecided])
        nearest = np.argsort(-(matrix @ np.asarray(vector, dtype=np.float32)))[:NEIGHBOURS]
        self._schedule(undecided[i] for i in nearest)

    def _notice_retraining(self) -> None:
        """After the learned recall path was retrained, every undecided record is re-scored."""
        classifier = self.runtime.kb.classifier()
        if classifier is not self._classifier:
            self._classifier = classifier
            self._learned_at = time.time()
            self._schedule(self.store.undecided_ids())

    def _schedule(self, ids: Iterable[str]) -> None:
        with self._wake:
            for rid in ids:
                self._due[rid] = None
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._rescore_due, name="llm4tag-queue-rescore", daemon=True)
                self._worker.start()
            self._wake.notify()

    def _rescore_due(self) -> None:
        while True:
            with self._wake:
                if not self._due or _exiting.is_set():  # the process is ending: what is left is re-scored when next shown
                    return
                rid = next(iter(self._due))
                del self._due[rid]
            record = self.store.get(rid)
            if record is None or record.status in DECIDED:
                continue
            try:
                self.score([(rid, record.text)])
            except Exception as exc:  # a background job: report, never take the page down
                if _exiting.is_set():
                    return
                log.warning("re-scoring queue record %s failed: %s", rid, exc)

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until the background re-scoring is done (tests, benchmarks); False on timeout."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True
