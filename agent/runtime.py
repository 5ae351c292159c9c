"""The long-lived objects a tagging run needs, held once per knowledge base in each process.

``runtime_for(kb_dir)`` returns the ``Runtime`` of a knowledge base (the bundled demo one, built
on first use, when ``kb_dir`` is None): the ``KnowledgeBase`` itself, the content embeddings
already computed (so a text is encoded once, whether it is tagged, corrected or written back),
the fine-tuned model recorded in ``training.json``, the fitted calibration (``calibration.json``)
and the tuned threshold. Each file is re-read only when it changed (one ``stat`` per use, no
read). The LLM backends themselves are loaded once per spec by ``agent.llm.load_backend``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import closing
from pathlib import Path
from typing import Iterable

import numpy as np

from knowledge_base import KnowledgeBase, RecallConfig, RecallResult, recall_candidates
from knowledge_base.demo import open_demo_kb
from knowledge_base.errors import KnowledgeBaseError, KnowledgeBaseReadOnlyError, TooManyReviewsError
from knowledge_base.loaders import verdict

from .confidence import DEFAULT_THRESHOLD, FILE_NAME as CALIBRATION_FILE, LearnedCalibration
from .context import Context
from .demo_model import TRAINING_RECORD, install_demo_model
from .llm import LLMBackend, load_backend

NODE_CACHE = "node-cache.sqlite"  # the tagging graph's cached recall and knowledge results
REVIEWS = "reviews.sqlite"  # the tagging graph's checkpoints: runs waiting for a review
VECTOR_CACHE = 256  # content embeddings kept per knowledge base (most recently used)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


class FileCache:
    """A value derived from one file, recomputed only when the file's mtime or size changed."""

    def __init__(self, path: Path, load):
        self.path = path
        self._load = load
        self._stamp: object = object()  # never equal to a real stamp: the first get() loads
        self._value = None
        self._lock = threading.Lock()

    def get(self):
        stamp = _stamp(self.path)
        with self._lock:
            if stamp != self._stamp:
                self._value = None if stamp is None else self._load(self.path)
                self._stamp = stamp
            return self._value


def read_training_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise KnowledgeBaseError(f"{path} is damaged ({exc}); delete it to forget the fine-tuned model") from exc


def _recorded_file(value: str | None, kb_dir: Path | None) -> str | None:
    """A path a training record names (relative ones belong to the knowledge base), when on disk."""
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute() and kb_dir is not None:
        path = kb_dir / path
    return str(path) if path.is_file() else None


def recorded_model(record: dict, kb_dir: Path | None = None) -> str | None:
    """The fine-tuned GGUF a training record names, when it is still on disk."""
    return _recorded_file(record.get("model"), kb_dir)


def recorded_backend(record: dict, kb_dir: Path | None = None) -> str | None:
    """The embedded backend spec of a training record: its merged GGUF (``model``), else the base
    model with its LoRA adapter GGUF (``lora``, applied by llama.cpp at load time); None when the
    record names neither or its files are gone."""
    model = recorded_model(record, kb_dir)
    if model:
        return f"llamacpp:{model}"
    adapter = _recorded_file(record.get("lora"), kb_dir)
    if adapter:
        from .llm.llamacpp import default_model_path

        base = _recorded_file(record.get("lora_base"), kb_dir) if record.get("lora_base") else default_model_path()
        return f"llamacpp:{base};lora={adapter}" if base else None
    return None


WARM_UP_TEXT = "a short text of a few words that warms up recall"  # 4+ words: the language check loads its dictionaries too


class Runtime:
    """One knowledge base's shared state in this process; thread-safe."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self._vectors: "OrderedDict[str, tuple[np.ndarray, bool]]" = OrderedDict()
        self._lock = threading.Lock()
        self._training = FileCache(kb.directory / TRAINING_RECORD, read_training_record)
        self._calibration = FileCache(kb.directory / CALIBRATION_FILE, lambda p: LearnedCalibration.load(p.parent))
        self._retraining: threading.Thread | None = None
        self._node_cache = None
        self._cache_revision: str | None = None
        self._checkpointer = None

    # ---- embeddings ----------------------------------------------------------------------
    def embed(self, text: str) -> tuple[np.ndarray, bool]:
        """The text's embedding (and whether it was truncated), computed once per text."""
        key = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            if key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        value = self.kb.encoder.encode_one(text)
        with self._lock:
            self._vectors[key] = value
            while len(self._vectors) > VECTOR_CACHE:
                self._vectors.popitem(last=False)
        return value

    def recall(self, text: str, config: RecallConfig, own_id: str | None = None) -> RecallResult:
        """Φ(c) for a cleaned text with its cached embedding — the recall node and the façade's
        ``recall`` both come here; a text longer than the encoder's window is noted. ``own_id``:
        the content's id (its write-back is no evidence; a person's verdict under it is)."""
        vector, truncated = self.embed(text)
        result = recall_candidates(self.kb, text, config, vector=vector, own_id=own_id)
        if truncated:
            result.truncated = True
            result.notes.append(f"the text is longer than the encoder's {self.kb.encoder.max_tokens}-token window; recall used its start")
        return result

    def warm_up(self) -> None:
        """Load what the first content would otherwise wait for (the encoder's session, the vector
        indexes, the classifier and its ranker, the language dictionaries) by recalling a short text;
        nothing is written."""
        self.recall(WARM_UP_TEXT, self.kb.config.recall)

    # ---- corrections ----------------------------------------------------------------------------
    def record(
        self, text: str, correct: Iterable[str], incorrect: Iterable[str] = (), cid: str | None = None, replace: bool = False
    ) -> dict:
        """Record a verdict on a cleaned text — the one write every correction ends in (``Tagger.learn``
        and the graph's review node). Returns ``{"id", "correct", "incorrect", "samples",
        "retraining"}``."""
        correct, incorrect = verdict(correct, incorrect)
        vector, _ = self.embed(text)
        cid = self.kb.record_feedback(text, correct, incorrect, cid=cid or None, vector=vector, replace=replace)
        samples = self.kb.collection("samples").count()
        return {
            "id": cid,
            "correct": list(correct),
            "incorrect": list(incorrect),
            "samples": samples,
            "retraining": self.retrain_if_due(samples) is not None,
        }

    # ---- what the tagging graph keeps in the knowledge base ------------------------------------
    def node_cache(self):
        """The graph's node cache (``NODE_CACHE`` in the knowledge base, a LangGraph ``SqliteCache``),
        emptied when the knowledge base changed since the revision recorded beside it (its keys hold
        the revision too, so an entry of another revision is never served); None when the folder
        cannot be written, or while its disk is nearly full (a read must not fail for want of
        room to cache it)."""
        revision = self.kb.revision()
        if self.kb.low_on_disk():
            return None
        with self._lock:
            if self._node_cache is False:
                return None
            if self._node_cache is None:
                from langgraph.cache.sqlite import SqliteCache

                try:
                    self._node_cache = SqliteCache(path=str(self.kb.directory / NODE_CACHE))
                except sqlite3.Error as exc:
                    logging.getLogger("llm4tag").warning("no node cache for %s (%s): results are not cached", self.kb.directory, exc)
                    self._node_cache = False
                    return None
            if revision != self._cache_revision:
                marker = self.kb.directory / f"{NODE_CACHE}.revision"
                try:
                    recorded = marker.read_text(encoding="ascii").strip()
                except (OSError, UnicodeDecodeError):
                    recorded = None
                if recorded != revision:  # entries of an older revision can never be hit again
                    try:
                        self._node_cache.clear()
                    except sqlite3.Error as exc:  # a full disk, a damaged file: tag uncached, try again next time
                        logging.getLogger("llm4tag").warning(
                            "could not empty the node cache of %s (%s): this result is not cached", self.kb.directory, exc
                        )
                        return None
                    try:
                        marker.write_text(revision, encoding="ascii")
                    except OSError:
                        pass
                self._cache_revision = revision
            return self._node_cache

    def checkpointer(self):
        """Where the graph keeps runs that wait for a review (``REVIEWS`` in the knowledge base, a
        LangGraph ``SqliteSaver``): a waiting review survives a restart of the process."""
        with self._lock:
            if self._checkpointer is None:
                from langgraph.checkpoint.sqlite import SqliteSaver

                path = self.kb.directory / REVIEWS
                try:
                    connection = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
                    self._checkpointer = SqliteSaver(connection)
                    self._checkpointer.setup()
                except sqlite3.Error as exc:
                    raise KnowledgeBaseReadOnlyError(
                        f"reviews cannot be kept in {path} ({exc}): the knowledge base's folder must be writable for review "
                        "(tag without review, or give this user write access)"
                    ) from exc
            return self._checkpointer

    # the reviews waiting, with when each started: a table of our own beside LangGraph's in REVIEWS
    def _review_ledger(self) -> sqlite3.Connection:
        connection = sqlite3.connect(str(self.kb.directory / REVIEWS), timeout=30)
        connection.execute("CREATE TABLE IF NOT EXISTS llm4tag_reviews (thread_id TEXT PRIMARY KEY, started REAL NOT NULL)")
        return connection

    def admit_review(self, thread_id: str) -> None:
        """Before a review of ``thread_id`` starts: drop the reviews left waiting longer than the
        knowledge base's ``review_days`` (nothing was written for them; the file shrinks), refuse
        when ``max_reviews`` others still wait, and note when this one started. A review of the
        same content replaces the one that waited."""
        config = self.kb.config
        checkpointer = self.checkpointer()
        now = time.time()
        # short transactions of the ledger's own, never open while the checkpointer writes (one file, two connections)
        with closing(self._review_ledger()) as ledger:
            with ledger:
                expired = [
                    r[0]
                    for r in ledger.execute(
                        "SELECT thread_id FROM llm4tag_reviews WHERE started < ? AND thread_id != ?",
                        (now - config.review_days * 86400, thread_id),
                    )
                ]
            for tid in expired:
                checkpointer.delete_thread(tid)
                with ledger:
                    ledger.execute("DELETE FROM llm4tag_reviews WHERE thread_id = ?", (tid,))
            with ledger:
                waiting = ledger.execute("SELECT COUNT(*) FROM llm4tag_reviews WHERE thread_id != ?", (thread_id,)).fetchone()[0]
            if waiting >= config.max_reviews:
                raise TooManyReviewsError(
                    f"{waiting} reviews are waiting for a decision, the most this knowledge base keeps (max_reviews in "
                    f"{self.kb.directory.name}/config.json); decide some first (a learn of the same text decides one), "
                    "or tag without review"
                )
            checkpointer.delete_thread(thread_id)
            with ledger:
                ledger.execute("INSERT OR REPLACE INTO llm4tag_reviews VALUES (?, ?)", (thread_id, now))
        if expired:
            logging.getLogger("llm4tag").info(
                "dropped %d reviews left waiting over %s days in %s", len(expired), config.review_days, self.kb.directory
            )
            try:
                with closing(sqlite3.connect(str(self.kb.directory / REVIEWS), timeout=30)) as connection:
                    connection.execute("VACUUM")  # give the space of the dropped reviews back
                    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # LangGraph's saver writes ahead: empty that log too
            except sqlite3.OperationalError as exc:  # another process is reading it: the space is reused, the file shrinks next time
                logging.getLogger("llm4tag").info("reviews.sqlite not compacted now: %s", exc)

    def drop_review(self, thread_id: str) -> None:
        """A review decided, or replaced by a direct write: nothing waits for it any more."""
        self.checkpointer().delete_thread(thread_id)
        with closing(self._review_ledger()) as ledger:
            with ledger:
                ledger.execute("DELETE FROM llm4tag_reviews WHERE thread_id = ?", (thread_id,))

    def has_reviews(self) -> bool:
        """Whether any run of this knowledge base ever waited for a review (cheap: one stat)."""
        return self._checkpointer is not None or (self.kb.directory / REVIEWS).exists()

    # ---- the learned recall path -------------------------------------------------------------
    def retrain_if_due(self, samples: int | None = None) -> threading.Thread | None:
        """Retrain the classifier and its ranker in a background thread once enough new samples
        arrived (``KnowledgeBaseConfig.retrain_after``); None when not due or already running.
        Readers switch to the new model when it is moved into place (``KnowledgeBase.classifier``)."""
        from knowledge_base.learned_recall import retrain_due, train_learned_recall

        with self._lock:
            if self._retraining is not None and self._retraining.is_alive():
                return None
            if not retrain_due(self.kb, samples):
                return None

            def run():
                try:
                    train_learned_recall(self.kb)
                except Exception as exc:  # a background job: report, never take the process down
                    logging.getLogger("llm4tag").warning("retraining the learned recall path of %s failed: %s", self.kb.directory, exc)

            self._retraining = threading.Thread(target=run, name="llm4tag-retrain", daemon=True)
            self._retraining.start()
            return self._retraining

    def retraining(self) -> threading.Thread | None:
        """The background retraining started by ``retrain_if_due`` while it runs, else None."""
        with self._lock:
            return self._retraining if self._retraining is not None and self._retraining.is_alive() else None

    # ---- model and confidence --------------------------------------------------------------
    def training_record(self) -> dict:
        """What ``training.json`` says (empty when the knowledge base was never trained)."""
        return self._training.get() or {}

    def trained_model(self) -> str | None:
        """The knowledge base's fine-tuned backend spec (merged GGUF, or base + LoRA adapter), when
        one is recorded and its files are still on disk."""
        return recorded_backend(self.training_record(), self.kb.directory)

    def backend_spec(self, ctx: Context) -> str:
        """The backend a run uses: the fine-tuned model when the default embedded backend is asked
        for, fine-tuning is on and one is recorded, else ``ctx.backend`` as given."""
        if (ctx.backend or "llamacpp").strip() == "llamacpp" and ctx.use_fine_tuning:
            return self.trained_model() or ctx.backend
        return ctx.backend

    def backend(self, ctx: Context) -> LLMBackend:
        return load_backend(self.backend_spec(ctx))

    def calibration(self, ctx: Context) -> LearnedCalibration | None:
        """The fitted calibration (``llm4tag calibrate``) when the run uses one."""
        return self._calibration.get() if ctx.use_learned_calibration else None

    def threshold(self, ctx: Context) -> float:
        """The run's confidence threshold: explicit, else the knowledge base's tuned one
        (``optimize --apply``), else the recall ranker's (the cut with the best micro-F1 on its
        held-out slice) when the confidence is a fused probability, else the paper's 0.5."""
        if ctx.threshold is not None:
            return ctx.threshold
        if self.kb.config.threshold is not None:
            return self.kb.config.threshold
        classifier = self.kb.classifier() if ctx.use_learned_calibration and ctx.use_learned_recall else None
        if classifier is not None and classifier.ranker is not None and classifier.ranker.threshold is not None:
            return classifier.ranker.threshold
        return DEFAULT_THRESHOLD


DEMO = "<demo>"
_runtimes: dict[str, Runtime] = {}
_runtimes_lock = threading.Lock()


def runtime_for(kb_dir: str | Path | None, create: bool = False) -> Runtime:
    """The ``Runtime`` of the knowledge base at ``kb_dir``, one per process (the demo one when None);
    its ``Tagger`` (``agent.tagger.tagger_for``) holds it and offers every operation on it.

    Only loaders create a knowledge base (``create``); any other caller naming a folder that is
    not one — a typo, or a remote caller's guess — gets a ``KnowledgeBaseError`` and nothing is
    made on disk. The message repeats ``kb_dir`` as given, never the resolved server path."""
    key = str(Path(kb_dir).expanduser().resolve()) if kb_dir else DEMO
    with _runtimes_lock:
        if key not in _runtimes and kb_dir is not None and not create and not (Path(key) / "config.json").is_file():
            raise KnowledgeBaseError(
                f"there is no knowledge base at {str(kb_dir)[:200]!r}: check the folder, or create one "
                "with: llm4tag --kb DIR kb load-vocab TAGS"
            )
        if key not in _runtimes:
            if kb_dir is None:
                kb = open_demo_kb(prepare_encoder=True)  # every runtime encodes: its encoder loads while Chroma opens
                install_demo_model(kb)  # the shipped fine-tuned adapter, fusion and threshold
                runtime = Runtime(kb)
                _runtimes[str(runtime.kb.directory)] = runtime  # the same holder by its path
            else:
                runtime = Runtime(KnowledgeBase(key, prepare_encoder=True))
            _runtimes[key] = runtime
        return _runtimes[key]


def reset_runtimes() -> None:
    """Forget every knowledge base's runtime of this process (tests)."""
    with _runtimes_lock:
        _runtimes.clear()


def get_knowledge_base(kb_dir: str | Path | None, create: bool = False) -> KnowledgeBase:
    return runtime_for(kb_dir, create=create).kb
