"""The knowledge base: tag repository, annotated samples, contents, domain documents, the graph.

One directory holds everything: ``config.json``, ``chroma/`` (four collections: tags,
contents, samples, documents) and the content–tag graph (``graph.sqlite``, read where it lies:
``knowledge_base.graph``; ``rebuild_graph`` re-derives the graph from the collections).
Writers take a file lock, so several processes (the app, the CLI, a server) can grow the same
knowledge base without losing each other's writes; readers never block.

With a Chroma server (``chroma_host``; ``LLM4TAG_CHROMA_HOST``/``_PORT`` when the folder is
created) the collections live on the server, and several llm4tag processes on several machines,
each with its own folder, can share it: every write that changes graph edges also leaves them in
the server's edge store (a fifth collection, ``<prefix>-graph``), and each process's graph is a
cache that catches up on ``refresh`` (recall, the write lock, health). ``knowledge_base.shared_graph``
says how, and what holds without a lock shared between machines.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np
from filelock import FileLock, Timeout

from .classifier import TagClassifier, classifier_stamp
from .config import KnowledgeBaseConfig
from .encoder import Encoder
from .errors import (
    ConflictError,
    DiskFullError,
    InputError,
    KnowledgeBaseError,
    KnowledgeBaseReadOnlyError,
    Llm4tagError,
    UnknownTagsError,
    is_disk_full,
)
from .graph import ContentTagGraph, content_node, tag_node
from .loaders import Passage, Sample, Tag, content_id, humanize_tag, require_id, require_text, valid_unicode, verdict
from .settings import settings
from .shared_graph import COLLECTION as SHARED_COLLECTION
from .shared_graph import SharedGraph

UnknownTagPolicy = Literal["skip", "add", "error"]
Progress = Callable[[int, int], None]  # (done, total)
BATCH = 256
FAILED_WRITE_FREE = 16 * 2**20  # a write that fails with less free than this is put down to a full disk
LOCK_TIMEOUT_S = 120
MAX_QUERY_RESULTS = 2**31 - 1  # the most hits one Chroma query is asked for
REVISION_FILE = "revision"  # replaced at the end of every write: see KnowledgeBase.revision
VOCABULARY_FILE = "vocabulary-revision"  # replaced by every write to the tag repository: see KnowledgeBase.hierarchy
TAG_CHANGES_FILE = "tag-changes.jsonl"  # renamed, merged and retired tags: see KnowledgeBase.change_tag
TAG_CACHE = 200_000  # tags kept in memory by get_tags between writes, at most
_CONNECT_LOCK = threading.RLock()


@dataclass
class LoadReport:
    """What a load did; printed by the CLI and returned by the API."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0  # already stored as given (document passages)
    removed: int = 0  # stored passages the re-loaded file no longer has
    skipped: int = 0
    truncated: int = 0
    edges: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.updated} updated"]
        if self.unchanged:
            parts.append(f"{self.unchanged} unchanged")
        if self.removed:
            parts.append(f"{self.removed} removed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.truncated:
            parts.append(f"{self.truncated} truncated to the encoder's window")
        parts.append(f"{self.edges} graph edges written")
        return ", ".join(parts) + f" in {self.seconds:.1f}s"


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float
    text: str
    metadata: dict


def _sim(distance: float) -> float:
    return 1.0 - float(distance)  # Chroma's cosine distance is 1 − cos


def _check_records(records: list, fields: tuple[str, ...], what: str) -> None:
    """Refuse records (from the Python API; the file readers already check) that no encoder or
    store can take, before anything is written: ids, texts and tags must be valid Unicode."""
    for index, record in enumerate(records):
        for name in fields:
            value = getattr(record, name)
            for item in value if isinstance(value, tuple) else (value,):
                if item is None:
                    continue
                if not isinstance(item, str):
                    raise InputError(f"{what} {index + 1}: {name} must be text, not {type(item).__name__}; nothing was written")
                try:
                    valid_unicode(item, f"{what} {index + 1}'s {name}")
                except InputError as exc:
                    raise InputError(f"{exc}; nothing was written") from None
        if not getattr(record, fields[0]).strip():
            raise InputError(f"{what} {index + 1}: {fields[0]} is empty; nothing was written")


def passage_metadata(passage: Passage) -> dict:
    """What the documents collection keeps beside a passage's text: its source, and its page, row
    and index where known (Chroma takes no None)."""
    meta: dict = {"source": passage.source}
    for key in ("page", "row", "index"):
        value = getattr(passage, key)
        if value is not None:
            meta[key] = int(value)
    return meta


def _json_list(meta: dict, key: str) -> list[str]:
    try:
        return list(json.loads(meta.get(key) or "[]"))
    except ValueError:
        return []


class KnowledgeBase:
    """Everything the tagger knows, loaded from and persisted to one directory."""

    COLLECTIONS = ("tags", "contents", "samples", "documents")

    def __init__(
        self, directory: str | Path, config: KnowledgeBaseConfig | None = None, load_graph: bool = True, prepare_encoder: bool = False
    ):
        """``load_graph=False`` leaves the graph empty and unread: only for ``rebuild_graph``.
        ``prepare_encoder``: for a caller that will encode; the encoder loads while Chroma opens."""
        self.directory = Path(directory).expanduser().resolve()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
                raise KnowledgeBaseReadOnlyError(
                    f"the knowledge base at {self.directory} cannot be created: its parent folder is "
                    "read-only; choose a writable --kb folder"
                ) from exc
            raise KnowledgeBaseError(
                f"the knowledge base at {self.directory} cannot be created ({exc.strerror}: "
                f"{exc.filename or self.directory}); choose another --kb folder"
            ) from exc
        config_path = self.directory / "config.json"
        if config_path.exists():
            stored = KnowledgeBaseConfig.load(config_path)
            if config is not None and config.encoder != stored.encoder:
                raise KnowledgeBaseError(
                    f"{self.directory} was built with encoder {stored.encoder!r}, not {config.encoder!r}; "
                    "embeddings from different encoders cannot be mixed: use a new directory"
                )
            self.config = config or stored
        else:
            self.config = KnowledgeBaseConfig.from_env(config)
            self._refuse_read_only()
            self.config.save(config_path)
        if not self.config.chroma_host:
            self._refuse_read_only()
        self._thread_lock = threading.RLock()
        self._file_lock = FileLock(str(self.directory / ".write.lock"), timeout=LOCK_TIMEOUT_S)
        self._encoder: Encoder | None = None
        if prepare_encoder:
            self.encoder.load_in_background()
        self._client = self._connect()
        with _CONNECT_LOCK:
            self._collections = self._open_collections(self._client)
        self.graph = ContentTagGraph(self.directory, load=load_graph)
        self._classifier: tuple[object, TagClassifier | None] = (object(), None)
        self._classifier_lock = threading.Lock()
        self._tag_cache: tuple[str | None, dict[str, Tag]] = (None, {})  # (local revision, tags read since)
        self._hierarchy_cache: tuple[str | None, dict[str, str]] = (None, {})  # (revision, child → parent)
        self._shared: SharedGraph | None = None
        if self.config.chroma_host:  # the graph is a cache of the server's edge store
            self._shared = SharedGraph(
                self._client,
                self._collections[SHARED_COLLECTION],
                self.graph,
                self._thread_lock,
                stored=lambda: self.collection("tags").count() + self.collection("contents").count(),
            )
            self.graph.catch_up = self._shared.catch_up
            if load_graph:
                self.graph.refresh()
                if self._shared.built:
                    self._save_cache()
        if load_graph:
            self._drop_stored_similarity()

    # ---- plumbing ------------------------------------------------------------------------
    def _read_only_error(self, what: str) -> "KnowledgeBaseReadOnlyError":
        return KnowledgeBaseReadOnlyError(
            f"the knowledge base at {self.directory} is read-only ({what}); llm4tag's embedded Chroma store writes even to "
            "read, so give this user write access to the folder, copy it somewhere writable, or serve it with "
            "a Chroma server (LLM4TAG_CHROMA_HOST)"
        )

    def _refuse_read_only(self) -> None:
        """Chroma's embedded store cannot open read-only (its start-up writes to its SQLite file): say so
        instead of ending in its traceback."""
        chroma = self.directory / "chroma"
        for path in (self.directory, chroma, *chroma.glob("*.sqlite3")):
            if path.exists() and not os.access(path, os.W_OK):
                raise self._read_only_error(f"{path} is not writable")

    def refresh(self) -> None:
        """Pick up other processes' writes: the graph store says whether there were any; then a fresh Chroma view.

        An embedded Chroma client keeps the vector index it loaded; after another process wrote,
        its searches would miss the new items until it is re-opened.
        """
        if self.graph.refresh() and not self.config.chroma_host:
            client = self._connect()
            with _CONNECT_LOCK:
                self._client, self._collections = client, self._open_collections(client)

    def _open_collections(self, client) -> dict:
        collections = {
            name: client.get_or_create_collection(
                f"{self.config.collection_prefix}-{name}", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
            for name in self.COLLECTIONS
        }
        if self.config.chroma_host:  # the edge store: never searched, so its vectors are one dummy number
            collections[SHARED_COLLECTION] = client.get_or_create_collection(
                f"{self.config.collection_prefix}-{SHARED_COLLECTION}", embedding_function=None
            )
        return collections

    def _while_no_writer(self, action: Callable[[], object], tolerated: tuple[type[BaseException], ...] = (OSError,)) -> None:
        """Run a piece of upkeep under the folder's write lock when no writer holds it now, else
        leave it for later; a read-only folder, or one of ``tolerated`` (a full disk), skips it."""
        try:
            self._file_lock.acquire(timeout=0)
        except (Timeout, OSError):
            return
        try:
            action()
        except tolerated:
            pass
        finally:
            self._file_lock.release()

    def _save_cache(self) -> None:
        """Save how far a graph just built from the shared store caught up, if no writer of
        this folder holds the lock now (else the next compaction saves it); a read-only folder keeps it in memory."""
        self._while_no_writer(self.graph.compact)

    def _drop_stored_similarity(self) -> None:
        """Similarity edges an older llm4tag stored in the graph are queries now
        (``knowledge_base.neighbourhood``): the first process to open the folder while no writer
        holds it removes them, in one transaction (nothing else is read or changed; until then
        readers see them beside the queried ones); a read-only folder keeps them, and a full disk
        leaves them to the next open."""
        if self.graph.counts()["similarity_edges"]:
            self._while_no_writer(self.graph.drop_similarity, (OSError, sqlite3.DatabaseError))

    def _connect(self):
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if self.config.chroma_host:
            try:
                return chromadb.HttpClient(host=self.config.chroma_host, port=self.config.chroma_port, settings=settings)
            except Exception as exc:
                raise KnowledgeBaseError(
                    f"cannot reach the Chroma server at {self.config.chroma_host}:{self.config.chroma_port} ({exc}); "
                    "start it (chroma run --path DIR) or unset LLM4TAG_CHROMA_HOST to use the embedded store"
                ) from exc
        # Chroma shares one client system per path within a process, holding the vector index as
        # it was loaded; each KnowledgeBase (and each re-open after an outside write) takes a
        # fresh one so its searches see what is on disk now.
        from chromadb.api.client import SharedSystemClient

        path = str(self.directory / "chroma")
        with _CONNECT_LOCK:  # Chroma's client start-up is not safe to run in two threads at once
            SharedSystemClient._identifier_to_system.pop(path, None)
            try:
                return chromadb.PersistentClient(path=path, settings=settings)
            except Exception as exc:
                if isinstance(exc, PermissionError) or "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
                    raise self._read_only_error(str(exc)) from exc
                raise

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder.shared(self.config.encoder)
        return self._encoder

    def collection(self, name: str):
        return self._collections[name]

    @contextmanager
    def write_lock(self, refresh: bool = True):
        """Serialise writers across threads and processes; the graph is refreshed inside."""
        with self._thread_lock:
            try:
                self._file_lock.acquire()
            except Timeout as exc:
                raise KnowledgeBaseError(
                    f"another writer has held the knowledge base's write lock for {LOCK_TIMEOUT_S}s (a large load, or a "
                    "process that stopped without releasing it); retry when it has finished"
                ) from exc
            refused = self._disk_nearly_full()
            try:
                if refused:
                    raise DiskFullError(
                        f"the disk holding the knowledge base has less than {settings().disk_reserve:,} bytes free "
                        "(LLM4TAG_DISK_RESERVE), so this write was refused and nothing was written: free some "
                        "space and send it again"
                    )
                if refresh:
                    self.refresh()
                yield
            except DiskFullError:
                raise
            except Exception as exc:
                if is_disk_full(exc) or (not isinstance(exc, Llm4tagError) and self._disk_nearly_full(after_failure=True)):
                    raise DiskFullError(
                        "the disk holding the knowledge base is full, so this write stopped: free some space and "
                        "send it again (llm4tag kb stats lists anything it left half-written; kb rebuild-graph "
                        "repairs it)"
                    ) from exc
                raise
            finally:
                try:
                    if not refused:
                        self._bump_revision()
                except Exception as exc:
                    if is_disk_full(exc):
                        raise DiskFullError(
                            "the disk holding the knowledge base is full: the write may be stored, but other "
                            "processes and caches were not told; free some space and send it again"
                        ) from exc
                    raise
                finally:
                    self._file_lock.release()

    def update_config(self, config: KnowledgeBaseConfig) -> None:
        with self.write_lock():
            self.config = config
            config.save(self.directory / "config.json")

    # ---- the learned recall path ------------------------------------------------------------
    def classifier(self) -> TagClassifier | None:
        """The trained classifier (``knowledge_base.learned_recall``), re-loaded only when a new one was saved."""
        stamp = classifier_stamp(self.directory)
        with self._classifier_lock:  # not the write lock: a reader never waits behind a writer
            if stamp != self._classifier[0]:
                self._classifier = (stamp, TagClassifier.load(self.directory) if stamp else None)
            return self._classifier[1]

    # ---- reading -------------------------------------------------------------------------
    def tag_names(self) -> set[str]:
        self.refresh()
        return self.graph.tag_names()

    def has_tag(self, name: str) -> bool:
        self.refresh()  # another process may have added it
        return self.graph.has_node(tag_node(name))

    def get_tags(self, names: Iterable[str]) -> dict[str, Tag]:
        """The stored tags of these names (unknown names are left out). Tags read once are kept in
        memory until the folder's revision changes (every write changes it), so recall's lookup of
        its candidates' descriptions is mostly free; with a shared Chroma server, whose writers
        leave no trace here, every call reads the server."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        cache: dict[str, Tag] | None = None
        if self._shared is None:  # revision() is then one small file read
            token = self.revision()
            seen, cache = self._tag_cache
            if seen != token or len(cache) > TAG_CACHE:
                cache = {}
                self._tag_cache = (token, cache)
        out = {n: cache[n] for n in names if n in cache} if cache else {}
        missing = [n for n in names if n not in out]
        if missing:
            got = self.collection("tags").get(ids=missing, include=["metadatas"])
            for tid, meta in zip(got["ids"], got["metadatas"]):
                out[tid] = Tag.from_metadata(tid, meta)
                if cache is not None:
                    cache[tid] = out[tid]
        return {n: out[n] for n in names if n in out}

    def hierarchy(self) -> dict[str, str]:
        """Each tag that has a parent → its parent (empty for a flat repository), read again only
        after the tag repository changed (not after every correction: one query over every tag)."""
        try:
            token = (self.directory / VOCABULARY_FILE).read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            token = "0"
        if self._shared is not None:  # other machines' writes leave no trace in this folder
            token += ":" + self.revision()
        seen, parents = self._hierarchy_cache
        if seen != token:
            got = self.collection("tags").get(where={"parent": {"$ne": ""}}, include=["metadatas"])
            parents = {tid: meta["parent"] for tid, meta in zip(got["ids"], got["metadatas"]) if (meta or {}).get("parent")}
            self._hierarchy_cache = (token, parents)
        return parents

    def _query(self, name: str, vectors: np.ndarray, k: int, where: dict | None = None, details: bool = True) -> list[list[Neighbour]]:
        """Nearest neighbours in a collection, as the store is now in this process (no refresh);
        ``details=False``: ids and similarities only (no text, no metadata: about half the time)."""
        col = self.collection(name)
        if k <= 0:
            return [[] for _ in range(len(vectors))]
        # no count() first: it costs ~10 ms at 100k items, and Chroma returns fewer hits (none when empty);
        # but a k of 2**32 or more ends in its OverflowError, and no collection holds 2**31 items
        res = col.query(
            query_embeddings=np.asarray(vectors, dtype=np.float32),
            n_results=min(k, MAX_QUERY_RESULTS),
            where=where,
            include=["distances", "documents", "metadatas"] if details else ["distances"],
        )
        empty = [[None] * len(ids) for ids in res["ids"]]
        return [
            [Neighbour(i, _sim(d), doc or "", meta or {}) for i, d, doc, meta in zip(ids, dists, docs, metas)]
            for ids, dists, docs, metas in zip(res["ids"], res["distances"], res.get("documents") or empty, res.get("metadatas") or empty)
        ]

    def similar_tags(self, vector: np.ndarray, k: int, refresh: bool = True, details: bool = True) -> list[Neighbour]:
        """The ``k`` tags nearest ``vector``. ``refresh=False`` skips picking up other processes'
        writes first — for a caller that has just done so (recall does, once per content);
        ``details=False`` returns names and similarities only (``get_tags`` has the rest)."""
        if refresh:
            self.refresh()
        return self._query("tags", vector[None, :], k, details=details)[0]

    def similar_contents(self, vector: np.ndarray, k: int, exclude: Iterable[str] = (), refresh: bool = True) -> list[Neighbour]:
        """The ``k`` contents nearest ``vector`` but those in ``exclude`` (which may be many: the
        query asks for a few more first, and for all it may need only when they were excluded)."""
        if refresh:
            self.refresh()
        exclude = set(exclude)
        wanted = k + min(len(exclude), max(2 * k, 8))
        hits = self._query("contents", vector[None, :], wanted)[0]
        kept = [h for h in hits if h.id not in exclude]
        if len(kept) < k and len(hits) == wanted and wanted < k + len(exclude):
            kept = [h for h in self._query("contents", vector[None, :], k + len(exclude))[0] if h.id not in exclude]
        return kept[:k]

    def similar_samples(self, vector: np.ndarray, k: int, exclude: Iterable[str] = (), refresh: bool = True) -> list[Neighbour]:
        if refresh:
            self.refresh()
        exclude = set(exclude)
        hits = self._query("samples", vector[None, :], k + len(exclude))[0]
        return [h for h in hits if h.id not in exclude][:k]

    def search_documents(self, vector: np.ndarray, k: int, refresh: bool = True) -> list[Neighbour]:
        if refresh:
            self.refresh()
        return self._query("documents", vector[None, :], k)[0]

    def search_tags(self, query: str, k: int = 20) -> list[Neighbour]:
        """Tags whose name contains the query, then tags nearest in meaning."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number of at least 1, not {k!r}")
        query = require_text(query)
        needle = query.lower()
        exact = sorted(n for n in self.tag_names() if needle in n.lower() or needle in humanize_tag(n).lower())
        hits: dict[str, Neighbour] = {}
        if exact:
            for tid, t in self.get_tags(exact[:k]).items():
                hits[tid] = Neighbour(tid, 1.0, t.description, {"description": t.description})
        if len(hits) < k:
            vector, _ = self.encoder.encode_one(query)
            for h in self.similar_tags(vector, k, refresh=False):
                hits.setdefault(h.id, h)
        return list(hits.values())[:k]

    def revision(self) -> str:
        """A short token that changes whenever anything stored changes — in this process or another:
        every write (they all hold ``write_lock``) replaces the ``revision`` file when it ends. One
        small read; caches of results computed from the knowledge base key on it. (Chroma's own
        files are no guide: its embedded store touches them even to read.) With a shared Chroma
        server, writes from other machines leave no trace in this folder: the token then also holds
        the stamp of the latest shared record, after catching up (one small query)."""
        try:
            token = (self.directory / REVISION_FILE).read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            token = "0"
        if self._shared is not None:
            self.graph.refresh()
            token += ":" + self._shared.token()
        return token

    def _disk_nearly_full(self, after_failure: bool = False) -> bool:
        """Whether the knowledge base's disk has less than ``LLM4TAG_DISK_RESERVE`` free (a write
        started with too little room may stop halfway). ``after_failure``: whether a write that
        just failed did so for want of space — Chroma reports that as an internal error ("Failed to
        apply logs…") that does not say so, and frees what it had taken, so the bar is 16 MiB at least."""
        if self.config.chroma_host:
            return False  # the vectors live on the server's disk
        bar = max(settings().disk_reserve, FAILED_WRITE_FREE) if after_failure else settings().disk_reserve
        try:
            return shutil.disk_usage(self.directory).free < bar
        except OSError:
            return False

    def low_on_disk(self) -> bool:
        """Whether the disk holding the knowledge base is nearly full (less than the reserve, and at
        least 16 MiB): caches that would write there are better left alone than failing a read."""
        return self._disk_nearly_full(after_failure=True)

    def _bump_revision(self, name: str = REVISION_FILE) -> None:
        target = self.directory / name
        temporary = target.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(uuid.uuid4().hex, encoding="ascii")
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def stats(self, check: bool = False) -> dict:
        """Counts and settings; ``check`` also looks for what a write that stopped halfway left
        (every sample and content id is read: seconds on a million contents; ``kb stats`` does)."""
        problems = list(self.graph.problems)
        shared = None
        if self._shared is not None:
            self.graph.refresh()
            shared = self._shared.stats()
            problems += self._shared.problems
            if not shared["records"] and self.collection("contents").count():
                problems.append(
                    "the Chroma server holds contents but no graph edges (written by an older llm4tag): "
                    f"publish them once with: llm4tag --kb {self.directory} kb rebuild-graph"
                )
        missing_content, missing_node = self._half_written() if check else (set(), set())
        repair = "repair with: llm4tag --kb DIR kb rebuild-graph"
        if missing_content:
            problems.append(f"{len(missing_content)} samples have no content entry (a write stopped halfway, e.g. a full disk); {repair}")
        if missing_node:
            problems.append(f"{len(missing_node)} contents have no graph node (a write stopped halfway); {repair}")
        tags = self.collection("tags")
        described = 0
        total_tags = tags.count()
        if total_tags:
            metas = tags.get(include=["metadatas"])["metadatas"]
            described = sum(1 for m in metas if (m or {}).get("description"))
        return {
            "directory": str(self.directory),
            "encoder": self.config.encoder,
            "store": f"chroma server {self.config.chroma_host}:{self.config.chroma_port}" if self.config.chroma_host else "embedded chroma",
            "tags": total_tags,
            "tags_with_description": described,
            "contents": self.collection("contents").count(),
            "samples": self.collection("samples").count(),
            "document_passages": self.collection("documents").count(),
            "graph": self.graph_counts(),
            **({"shared_graph": shared} if shared else {}),
            "recall": self.config.recall.__dict__,
            "classifier": self._classifier_summary(),
            **({"problems": problems} if problems else {}),
        }

    def graph_counts(self) -> dict[str, int]:
        """The stored graph's tag and content nodes and deterministic edges (similarity edges are
        queries, not stored; ``stored_similarity_edges`` counts those an older llm4tag left, until
        the next open removes them)."""
        counts = self.graph.counts()
        stored = counts.pop("similarity_edges")
        return {**counts, **({"stored_similarity_edges": stored} if stored else {})}

    def _ids(self, name: str) -> set[str]:
        collection, ids, offset = self.collection(name), set(), 0
        while True:
            got = collection.get(include=[], limit=10 * BATCH, offset=offset)["ids"]
            ids.update(got)
            offset += len(got)
            if len(got) < 10 * BATCH:
                return ids

    def _half_written(self) -> tuple[set[str], set[str]]:
        """(sample ids with no content entry, content ids with no graph node): what a write that
        stopped halfway (a kill, a full disk) leaves; ``rebuild_graph`` repairs both."""
        contents = self._ids("contents")
        self.graph.refresh()
        present = self.graph.present(content_node(c) for c in contents)
        missing_node = {c for c in contents if content_node(c) not in present}
        return self._ids("samples") - contents, missing_node

    def _restore_contents(self) -> int:
        """Give every sample without a content entry one (copied from the sample); inside the write lock."""
        missing = sorted(self._ids("samples") - self._ids("contents"))
        for start in range(0, len(missing), BATCH):
            got = self.collection("samples").get(ids=missing[start : start + BATCH], include=["embeddings", "documents", "metadatas"])
            self.collection("contents").upsert(
                ids=list(got["ids"]),
                embeddings=np.asarray(got["embeddings"], dtype=np.float32),
                documents=got["documents"],
                metadatas=got["metadatas"],
            )
        return len(missing)

    def _classifier_summary(self) -> dict | str:
        info = TagClassifier.read_info(self.directory)  # not the model itself: stats answer without loading it
        if info is None:
            return "none (llm4tag kb train-classifier trains the learned recall path)"
        return {
            "trained_at": info.trained_at,
            "samples": info.samples,
            "tags": len(info.labels),
            "samples_now": self.collection("samples").count(),
        }

    # ---- writing -------------------------------------------------------------------------
    def _put_contents(
        self, ids: list[str], texts: list[str], vectors: np.ndarray, metas: list[dict], tags: list[Iterable[str]], as_samples: bool
    ) -> int:
        """One write of contents, the same in every writer (the caller holds the write lock): into
        Chroma (the samples collection too when they are annotated samples), their nodes and
        annotations into the graph (replacing the ones they had), and their records to a shared
        edge store. Returns how many annotations were written."""
        if as_samples:
            self.collection("samples").upsert(ids=ids, embeddings=vectors, documents=texts, metadatas=metas)
        self.collection("contents").upsert(ids=ids, embeddings=vectors, documents=texts, metadatas=metas)
        ops: list[dict] = []
        for cid, given in zip(ids, tags):
            ops += [
                {"op": "node", "id": content_node(cid), "kind": "content"},
                {"op": "drop_det", "id": content_node(cid)},
                *self._det_edge_ops(cid, given),
            ]
        self.graph.write(ops)
        if self._shared is not None:
            self._shared.publish_contents(ids)
        return sum(1 for op in ops if op["op"] == "edge")

    def _drop_contents(self, ids: list[str]) -> None:
        """One removal of contents (the caller holds the write lock): out of both Chroma
        collections, their nodes and edges out of the graph, and tombstones to a shared edge
        store, so other processes drop them too."""
        self.collection("samples").delete(ids=ids)
        self.collection("contents").delete(ids=ids)
        present = self.graph.present(content_node(cid) for cid in ids)
        self.graph.write({"op": "remove_node", "id": node} for node in sorted(present))
        if self._shared is not None:
            self._shared.publish_contents(ids)

    def _refuse_other_text(self, cid: str, stored: str, what: str) -> ConflictError:
        """The conflict of writing another text under an id that holds ``stored``."""
        shown = stored if len(stored) <= 80 else stored[:77] + "..."
        return ConflictError(
            f"the id {json.dumps(cid, ensure_ascii=False)} already holds a different text "
            f"({json.dumps(shown, ensure_ascii=False)}); {what}; nothing was written",
            cid,
        )

    def _det_edge_ops(self, cid: str, tags: Iterable[str]) -> list[dict]:
        """Deterministic edges of a content: its annotations, in the order they were given."""
        return [{"op": "edge", "u": content_node(cid), "v": tag_node(t), "kind": "det", "w": 1.0, "n": i} for i, t in enumerate(tags)]

    def add_tags(self, tags: list[Tag], progress: Progress | None = None) -> LoadReport:
        """Add or update tags (by name). Re-loading the same repository changes nothing."""
        started = time.perf_counter()
        report = LoadReport()
        _check_records(tags, ("name", "description", "synonyms", "parent"), "tag")
        for start in range(0, len(tags), BATCH):
            chunk = tags[start : start + BATCH]
            enc = self.encoder.encode([t.embedding_text() for t in chunk])  # outside the lock, as for samples
            with self.write_lock():
                existing = self.tag_names()
                self.collection("tags").upsert(
                    ids=[t.name for t in chunk],
                    embeddings=enc.vectors,
                    documents=[t.embedding_text() for t in chunk],
                    metadatas=[t.metadata() for t in chunk],
                )
                self._bump_revision(VOCABULARY_FILE)
                self.graph.write([{"op": "node", "id": tag_node(t.name), "kind": "tag"} for t in chunk])
                if self._shared is not None:
                    fresh = [t.name for t in chunk if t.name not in existing]
                    if fresh:
                        self._shared.publish_tags(fresh)
                    if len(fresh) < len(chunk):  # descriptions changed: no edge moved, but other processes' caches must know
                        self._shared.touch("tags")
                report.truncated += sum(enc.truncated)
                for t in chunk:
                    if t.name in existing:
                        report.updated += 1
                    else:
                        report.added += 1
                if progress:
                    progress(min(start + BATCH, len(tags)), len(tags))
        with self.write_lock():
            self.graph.compact()
        report.seconds = time.perf_counter() - started
        return report

    def _check_tags(self, samples: list[Sample], policy: UnknownTagPolicy, report: LoadReport) -> list[Sample]:
        known = self.tag_names()
        if not known and policy != "add":
            raise InputError("the tag repository is empty: load it first (llm4tag kb load-vocab FILE), or use --unknown-tags add")
        if self.tag_changes():  # names that were renamed or merged since: their replacement
            moved: dict[str, str] = {}
            for s in samples:
                for t in (*s.tags, *s.incorrect_tags):
                    if t not in known and t not in moved and (r := self.replacement(t)) is not None:
                        moved[t] = r
            if moved:

                def swap(names):
                    return tuple(dict.fromkeys(moved.get(n, n) for n in names))

                samples = [
                    Sample(s.id, s.text, swap(s.tags), tuple(n for n in swap(s.incorrect_tags) if n not in swap(s.tags))) for s in samples
                ]
                report.warnings.append(
                    "renamed or merged tags read as their replacement: " + ", ".join(f"{a} → {b}" for a, b in sorted(moved.items())[:10])
                )
        unknown: dict[str, int] = {}
        for s in samples:
            for t in (*s.tags, *s.incorrect_tags):
                if t not in known:
                    unknown[t] = unknown.get(t, 0) + 1
        if not unknown:
            return samples
        listing = ", ".join(repr(t) for t in sorted(unknown)[:10]) + (" …" if len(unknown) > 10 else "")
        if policy == "error":
            raise InputError(
                f"{len(unknown)} tags are not in the tag repository: {listing}; nothing was loaded. Add them to the vocabulary or use --unknown-tags skip|add"
            )
        if policy == "add":
            self.add_tags([Tag(t) for t in sorted(unknown)])
            report.warnings.append(f"added {len(unknown)} tags that were not in the repository (no description): {listing}")
            return samples
        report.warnings.append(f"ignored {sum(unknown.values())} uses of {len(unknown)} tags not in the repository: {listing}")
        kept = []
        for s in samples:
            tags = tuple(t for t in s.tags if t in known)
            incorrect = tuple(t for t in s.incorrect_tags if t in known)
            if tags or incorrect:
                kept.append(Sample(s.id, s.text, tags, incorrect))
            else:
                report.skipped += 1
        return kept

    def add_samples(
        self,
        samples: list[Sample],
        unknown_tags: UnknownTagPolicy = "skip",
        origin: str = "history",
        progress: Progress | None = None,
    ) -> LoadReport:
        """Add annotated samples: to the sample store (for examples), as contents, and as graph edges."""
        started = time.perf_counter()
        report = LoadReport()
        _check_records(samples, ("id", "text", "tags", "incorrect_tags"), "sample")
        samples = self._check_tags(samples, unknown_tags, report)
        for start in range(0, len(samples), BATCH):
            chunk = samples[start : start + BATCH]
            enc = self.encoder.encode([s.text for s in chunk])  # outside the lock: readers and short writes go on meanwhile
            report.truncated += sum(enc.truncated)
            with self.write_lock():
                self._write_samples(chunk, origin, report, vectors=enc.vectors)
            if progress:
                progress(min(start + BATCH, len(samples)), len(samples))
        with self.write_lock():
            self.graph.compact()
        report.seconds = time.perf_counter() - started
        return report

    def _write_samples(self, samples: list[Sample], origin: str, report: LoadReport, vectors: np.ndarray | None = None) -> None:
        """Write checked samples (inside the write lock); ``vectors`` when the caller has them."""
        for start in range(0, len(samples), BATCH):
            chunk = samples[start : start + BATCH]
            ids = [s.id for s in chunk]
            already = set(self.collection("samples").get(ids=ids, include=[])["ids"])
            if vectors is not None:
                chunk_vectors = np.asarray(vectors[start : start + BATCH], dtype=np.float32)
            else:
                enc = self.encoder.encode([s.text for s in chunk])
                chunk_vectors = enc.vectors
                report.truncated += sum(enc.truncated)
            now = time.time()  # ``added_at`` lets ``llm4tag train --since-last`` find new samples
            metas = [
                {"tags": json.dumps(list(s.tags)), "incorrect_tags": json.dumps(list(s.incorrect_tags)), "origin": origin, "added_at": now}
                for s in chunk
            ]
            report.edges += self._put_contents(ids, [s.text for s in chunk], chunk_vectors, metas, [s.tags for s in chunk], as_samples=True)
            report.updated += len(already)
            report.added += len(chunk) - len(already)

    def add_documents(self, passages: list[Passage], progress: Progress | None = None) -> LoadReport:
        """Add domain-document passages with their source, page, row and index as metadata.

        The passages given for a source replace all its earlier ones: a passage whose text and
        place are already stored is left as it is (``unchanged``: re-loading a file writes
        nothing), a changed one is re-encoded, one the file no longer has is removed. Encoding —
        the slow part — happens before the write lock is taken, so a large file never holds up
        other writers (and, through them, readers); the plan is checked again under the lock."""
        started = time.perf_counter()
        report = LoadReport()
        _check_records(passages, ("id", "source", "text"), "passage")
        wanted = {p.id: (p, passage_metadata(p)) for p in passages}  # a repeated id: the later passage wins
        encoded = self._encode_passages(self._document_plan(wanted)[1], report, progress)
        with self.write_lock():
            stale, changed, counts = self._document_plan(wanted)  # another writer may have changed a source meanwhile
            encoded.update(self._encode_passages([p for p in changed if p.text not in encoded], report))
            report.unchanged, report.updated, report.added = counts
            col = self.collection("documents")
            for start in range(0, len(stale), BATCH):
                col.delete(ids=stale[start : start + BATCH])
            report.removed = len(stale)
            for start in range(0, len(changed), BATCH):
                chunk = changed[start : start + BATCH]
                col.upsert(
                    ids=[p.id for p in chunk],
                    embeddings=np.stack([encoded[p.text] for p in chunk]),
                    documents=[p.text for p in chunk],
                    metadatas=[wanted[p.id][1] for p in chunk],
                )
            if changed or stale:
                self.graph.write([{"op": "touch", "what": "documents"}])  # tells other processes to re-read
                if self._shared is not None:
                    self._shared.touch("documents")
        report.seconds = time.perf_counter() - started
        return report

    def _document_plan(self, wanted: dict[str, tuple[Passage, dict]]) -> tuple[list[str], list[Passage], tuple[int, int, int]]:
        """What loading ``wanted`` changes: (stored passage ids to remove, passages to write,
        (unchanged, updated, added) counts). Reads only."""
        col = self.collection("documents")
        stale: list[str] = []
        known: set[str] = set()
        for source in dict.fromkeys(p.source for p, _ in wanted.values()):
            old = col.get(where={"source": source}, include=["documents", "metadatas"])
            for pid, text, meta in zip(old["ids"], old["documents"], old["metadatas"]):
                if pid not in wanted:
                    stale.append(pid)
                elif wanted[pid][0].text == text and wanted[pid][1] == (meta or {}):
                    known.add(pid)
        ids = list(wanted)
        present: set[str] = set()
        for start in range(0, len(ids), BATCH):
            present.update(col.get(ids=ids[start : start + BATCH], include=[])["ids"])
        changed = [wanted[pid][0] for pid in ids if pid not in known]
        updated = sum(1 for p in changed if p.id in present)
        return stale, changed, (len(known), updated, len(changed) - updated)

    def _encode_passages(self, passages: list[Passage], report: LoadReport, progress: Progress | None = None) -> dict[str, np.ndarray]:
        """Each distinct passage text's vector."""
        texts = list(dict.fromkeys(p.text for p in passages))
        vectors: dict[str, np.ndarray] = {}
        for start in range(0, len(texts), BATCH):
            chunk = texts[start : start + BATCH]
            enc = self.encoder.encode(chunk)
            vectors.update(zip(chunk, enc.vectors))
            report.truncated += sum(enc.truncated)
            if progress:
                progress(min(start + BATCH, len(texts)), len(texts))
        return vectors

    def insert_content(
        self,
        text: str,
        tags: Iterable[str] = (),
        cid: str | None = None,
        origin: str = "writeback",
        vector: np.ndarray | None = None,
        replace: bool = False,
    ) -> str:
        """Insert a content into the graph and the vector index with (optionally) its final tags.

        This is the paper's dynamic insertion plus write-back: the system's final tags become
        deterministic edges, so later contents can reach them through C2C2T. Inserting the same
        text again under its id replaces its deterministic edges with the new tags. What is stored
        is read first, inside the write lock: an id that already holds a different text raises
        ``ConflictError`` and writes nothing, unless ``replace`` is true (the old content, any
        sample under that id and all its graph edges are then replaced); an id that holds the same
        text as an annotated sample keeps that sample's verdict (a person's tags outrank the
        system's) and nothing is written.
        """
        text = require_text(text)
        tags = list(verdict(tags, ())[0])
        cid = require_id(cid, "the content id") if cid not in (None, "") else content_id(text)
        self.refresh()  # once, not once a tag: another process may have added them
        unknown = [t for t in tags if not self.graph.has_node(tag_node(t))]
        if unknown:
            raise InputError(f"unknown tags {unknown}: they are not in the tag repository")
        if vector is None:
            vector, _ = self.encoder.encode_one(text)
        with self.write_lock():
            stored = self.stored_text(cid)
            is_sample = stored is not None and bool(self.collection("samples").get(ids=[cid], include=[])["ids"])
            if stored is not None and (stored != text or is_sample):
                if not replace:
                    if stored == text:
                        return cid  # the same text, annotated by a person: its sample and edges stay as they are
                    raise self._refuse_other_text(
                        cid, stored, "leave the id out (it is then derived from the text) or ask to replace that content (replace=true)"
                    )
                if is_sample:  # a write-back is no sample: the person's sample under this id goes
                    self.collection("samples").delete(ids=[cid])
                self.graph.write(
                    [{"op": "remove_node", "id": content_node(cid)}]
                )  # the old text's edges go; its entry is overwritten below
            meta = {"tags": json.dumps(tags), "incorrect_tags": "[]", "origin": origin}
            self._put_contents([cid], [text], vector[None, :], [meta], [tags], as_samples=False)
        return cid

    def stored_text(self, cid: str) -> str | None:
        """The text stored under an id (as a sample, else as a content), or None."""
        for name in ("samples", "contents"):
            got = self.collection(name).get(ids=[cid], include=["documents"])
            if got["ids"]:
                return got["documents"][0] or ""
        return None

    def record_feedback(
        self,
        text: str,
        correct: Iterable[str],
        incorrect: Iterable[str] = (),
        cid: str | None = None,
        vector: np.ndarray | None = None,
        replace: bool = False,
    ) -> str:
        """A person's verdict on a content's tags: becomes a sample (for examples) and graph edges.

        The tags are checked once, inside the write lock; ``vector`` is the text's embedding when
        the caller has it (the text is then not encoded again). The change is one small
        transaction in the graph store, which other processes read at once (and, with a Chroma
        server, processes on other machines pick it up from its edge store).
        A verdict sets the tags of the text stored under ``cid``; when that id already holds a
        different text it raises ``ConflictError`` and writes nothing, unless ``replace`` is true
        (the old content, its sample and all its graph edges are then replaced).
        """
        text = require_text(text)
        correct, incorrect = verdict(correct, incorrect)
        if not correct and not incorrect:
            raise InputError("feedback needs at least one correct or incorrect tag")
        cid = require_id(cid, "the sample id") if cid not in (None, "") else content_id(text)
        with self.write_lock():  # the graph is fresh inside: a tag another process added counts
            unknown = sorted({t for t in (*correct, *incorrect) if not self.graph.has_node(tag_node(t))})
            if unknown:
                listed = ", ".join(json.dumps(t, ensure_ascii=False) for t in unknown[:20]) + (" …" if len(unknown) > 20 else "")
                raise UnknownTagsError(f"unknown tags (not in the tag repository): {listed}; nothing was written", unknown)
            stored = self.stored_text(cid)
            if stored is not None and stored != text:
                if not replace:
                    raise self._refuse_other_text(
                        cid,
                        stored,
                        "a correction amends the tags of that same text. Send the stored text, "
                        "leave the id out (it is then derived from the text), or ask to replace "
                        "that sample (replace=true)",
                    )
                self.graph.write(
                    [{"op": "remove_node", "id": content_node(cid)}]
                )  # the old text's edges go; its entries are overwritten below
            self._write_samples(
                [Sample(cid, text, correct, incorrect)],
                "feedback",
                LoadReport(),
                vectors=None if vector is None else np.asarray(vector, dtype=np.float32)[None, :],
            )
        return cid

    def rebuild_graph(self, progress: Progress | None = None) -> dict:
        """Rebuild the content–tag graph from the Chroma stores alone, never reading the old graph.

        Tag nodes come from the tag collection; content nodes and their deterministic edges from
        the contents' stored tags (similarity edges are not stored: ``similarity_edges`` asks the
        vector index for them, with the current δ_ct / δ_cc). They are written into a fresh store that then replaces
        ``graph.sqlite`` (a damaged one, or an older folder's ``graph.json`` and journal, are never
        read); an old ``graph.pickle`` is renamed ``graph.pickle.unread`` (kept, never opened). With
        a Chroma server, every tag and content is re-published to its edge store, so every other
        process's graph converges to the rebuilt one.
        """
        started = time.perf_counter()
        with self.write_lock(refresh=False):
            asked = self._shared.now() if self._shared is not None else None  # what other machines write from now on is caught up later
            restored = self._restore_contents()
            scratch = ContentTagGraph.scratch(self.directory)
            tag_ids = set(self.collection("tags").get(include=[])["ids"])
            scratch.write({"op": "node", "id": tag_node(tid), "kind": "tag"} for tid in sorted(tag_ids))
            content_ids = self.collection("contents").get(include=[])["ids"]
            for start in range(0, len(content_ids), BATCH):
                got = self.collection("contents").get(ids=content_ids[start : start + BATCH], include=["metadatas"])
                ids = list(got["ids"])
                det = {cid: [t for t in _json_list(meta or {}, "tags") if t in tag_ids] for cid, meta in zip(ids, got["metadatas"])}
                ops: list[dict] = []
                for cid in ids:
                    ops.append({"op": "node", "id": content_node(cid), "kind": "content"})
                    ops += self._det_edge_ops(cid, det[cid])
                scratch.write(ops)
                if progress:
                    progress(min(start + BATCH, len(content_ids)), len(content_ids))
            self.graph.adopt(scratch)
            if self._shared is not None:  # every other process's cache converges to the rebuilt graph
                self._shared.publish_all()
                self.graph.synced_to = asked
                self.graph.compact()  # again, with how far it is synced
            legacy = self.graph.legacy_path
            if legacy.exists():
                legacy.rename(legacy.with_name(legacy.name + ".unread"))
        return {**self.graph_counts(), "restored_contents": restored, "seconds": round(time.perf_counter() - started, 1)}

    def get_sample(self, cid: str) -> Sample | None:
        got = self.collection("samples").get(ids=[cid], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        meta = got["metadatas"][0]
        return Sample(cid, got["documents"][0], tuple(_json_list(meta, "tags")), tuple(_json_list(meta, "incorrect_tags")))

    def remove_sample(self, cid: str) -> None:
        """Forget a sample (its examples entry, its content node and its edges): used by undo."""
        with self.write_lock():
            self._drop_contents([cid])

    def forget_tags(self, tags: Iterable[str]) -> dict:
        """Take ``tags`` out of every sample's annotations (right and wrong), as if no content had
        ever been annotated with them; the tags stay in the repository with their descriptions.
        Samples left with no annotation are removed. Returns ``{"updated", "removed"}``."""
        gone = set(tags)
        updated: list[Sample] = []
        removed: list[str] = []
        with self.write_lock():
            got = self.collection("samples").get(include=["documents", "metadatas", "embeddings"])
            vectors: list[np.ndarray] = []
            for sid, text, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"] if len(got["ids"]) else []):
                right, wrong = _json_list(meta or {}, "tags"), _json_list(meta or {}, "incorrect_tags")
                if not gone & (set(right) | set(wrong)):
                    continue
                right, wrong = [t for t in right if t not in gone], [t for t in wrong if t not in gone]
                if right or wrong:
                    updated.append(Sample(sid, text or "", tuple(right), tuple(wrong)))
                    vectors.append(np.asarray(vec, dtype=np.float32))
                else:
                    removed.append(sid)
            for start in range(0, len(removed), BATCH):
                self._drop_contents(removed[start : start + BATCH])
            origins = {sid: (meta or {}).get("origin", "history") for sid, meta in zip(got["ids"], got["metadatas"])}
            for origin in sorted({origins[s.id] for s in updated}):
                batch = [(s, v) for s, v in zip(updated, vectors) if origins[s.id] == origin]
                self._write_samples([s for s, _ in batch], origin, LoadReport(), vectors=np.stack([v for _, v in batch]))
            self.graph.compact()
        return {"updated": len(updated), "removed": len(removed)}

    def change_tag(self, tag: str, into: str | None) -> dict:
        """Rename, merge or retire a tag. With ``into`` a name not in the repository: a rename (the
        new tag takes the old one's description, synonyms and parent); with ``into`` a tag there:
        a merge. Either way every annotation with ``tag`` (right or wrong) moves to ``into`` in the
        samples and the graph — so the next training of the classifier learns it there — the old
        name becomes one of ``into``'s synonyms (recall still finds it by that name), children of
        ``tag`` get ``into`` as their parent, and ``tag`` leaves the repository. With ``into``
        None: retired — it leaves the repository and every sample's annotations, and is never
        suggested again. Nothing is lost: the old entry and each sample's verdict on it are kept
        in ``tag-changes.jsonl``, which also maps the old name to its replacement (``replacement``)
        for the classifier until it is retrained and for samples loaded later.
        Returns ``{"change", "tag", "into", "samples", "conflicts"}``."""
        if self._shared is not None:
            raise InputError(
                "renaming, merging and retiring tags is not built for a knowledge base on a Chroma server yet; "
                "change the vocabulary in a local knowledge base"
            )
        tag = require_id(tag, "the tag")
        into = require_id(into, "the new tag") if into is not None else None
        if into == tag:
            raise InputError(f"'{tag}' would be replaced by itself; give another name")
        entry = self.get_tags([tag]).get(tag)
        if entry is None:
            raise InputError(f"'{tag}' is not in the tag repository; search for its exact name with llm4tag kb search")
        target = self.get_tags([into]).get(into) if into is not None else None
        change = "retire" if into is None else ("merge" if target is not None else "rename")
        children = [t for t in self.get_tags(sorted(self.tag_names())).values() if t.parent == tag and t.name != into]
        if change == "rename":
            replacement = Tag(into, entry.description, tuple(dict.fromkeys([*entry.synonyms, tag])), entry.parent, entry.labels)
        elif change == "merge":
            synonyms = [s for s in dict.fromkeys([*target.synonyms, tag, *entry.synonyms]) if s != into]
            # merged into one of its own descendants: that one takes its place in the tree (no cycle, no parent that left)
            parent = entry.parent if tag in self._ancestors(into) else target.parent
            replacement = Tag(into, target.description or entry.description, tuple(synonyms), parent, target.labels or entry.labels)
        rewrites = [Tag(t.name, t.description, t.synonyms, into, t.labels) for t in children]
        to_encode = ([replacement] if into is not None else []) + rewrites
        enc = self.encoder.encode([t.embedding_text() for t in to_encode]) if to_encode else None
        verdicts: dict[str, str] = {}
        conflicts = 0
        with self.write_lock():
            got = self.collection("samples").get(include=["documents", "metadatas", "embeddings"])
            updated: list[Sample] = []
            vectors: list[np.ndarray] = []
            removed: list[str] = []
            texts: dict[str, str] = {}
            origins: dict[str, str] = {}
            for sid, text, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"] if len(got["ids"]) else []):
                right, wrong = _json_list(meta or {}, "tags"), _json_list(meta or {}, "incorrect_tags")
                if tag not in right and tag not in wrong:
                    continue
                verdicts[sid] = "right" if tag in right else "wrong"
                swap = (
                    (lambda names: list(dict.fromkeys(into if n == tag else n for n in names)))
                    if into
                    else (lambda names: [n for n in names if n != tag])
                )
                right, wrong = swap(right), swap(wrong)
                if into is not None and into in right and into in wrong:  # right and wrong at once: the right verdict stands
                    wrong = [n for n in wrong if n != into]
                    conflicts += 1
                origins[sid] = (meta or {}).get("origin", "history")
                if right or wrong:
                    updated.append(Sample(sid, text or "", tuple(right), tuple(wrong)))
                    vectors.append(np.asarray(vec, dtype=np.float32))
                else:
                    removed.append(sid)
                    texts[sid] = text or ""
            # the samples whose only verdict was on the retired tag leave the store: their texts are kept here
            record = {
                "change": change,
                "tag": tag,
                "into": into,
                "entry": asdict(entry),
                "verdicts": verdicts,
                "removed_samples": [{"id": sid, "text": texts[sid]} for sid in removed],
                "at": time.time(),
            }
            with open(self.directory / TAG_CHANGES_FILE, "a", encoding="utf-8") as fh:  # first: the record of what is moved
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            if to_encode:
                self.collection("tags").upsert(
                    ids=[t.name for t in to_encode],
                    embeddings=enc.vectors,
                    documents=[t.embedding_text() for t in to_encode],
                    metadatas=[t.metadata() for t in to_encode],
                )
                if into is not None:
                    self.graph.write([{"op": "node", "id": tag_node(into), "kind": "tag"}])
            for origin in sorted({origins[s.id] for s in updated}):
                batch = [(s, v) for s, v in zip(updated, vectors) if origins[s.id] == origin]
                self._write_samples([s for s, _ in batch], origin, LoadReport(), vectors=np.stack([v for _, v in batch]))
            for start in range(0, len(removed), BATCH):  # samples whose only verdict was on a retired tag
                self._drop_contents(removed[start : start + BATCH])  # with a shared store, tombstones too (they were missing)
            self.collection("tags").delete(ids=[tag])
            self._bump_revision(VOCABULARY_FILE)
            if self.graph.has_node(tag_node(tag)):
                self.graph.write([{"op": "remove_node", "id": tag_node(tag)}])
            self.graph.compact()
        self._tag_changes = None
        done = {
            "change": change,
            "tag": tag,
            "into": into,
            "samples": len(verdicts),
            "removed_samples": len(removed),
            "conflicts": conflicts,
            "children": len(children),
        }
        return done | {"summary": _tag_change_summary(done)}

    def apply_tag_changes(self, changes: Iterable[tuple[str, str | None]]) -> list[dict]:
        """A vocabulary file's gone tags (``Parsed.changes``): each one still in the repository is
        renamed or merged into its replacement, or retired (``change_tag``); the others are
        already gone and left alone. Returns what ``change_tag`` returned for each change made."""
        done = []
        for tag, into in changes:
            if self.has_tag(tag):
                done.append(self.change_tag(tag, into))
        return done

    def _ancestors(self, tag: str) -> list[str]:
        """A tag's parent, its parent's parent, … (as stored; a loop, which the loaders refuse, ends the walk)."""
        out: list[str] = []
        node = self.get_tags([tag]).get(tag)
        while node is not None and node.parent and node.parent not in out and node.parent != tag:
            out.append(node.parent)
            node = self.get_tags([node.parent]).get(node.parent)
        return out

    def tag_changes(self) -> list[dict]:
        """The renames, merges and retirements made so far, oldest first (``change_tag``)."""
        path = self.directory / TAG_CHANGES_FILE
        token = self.revision()
        cached = getattr(self, "_tag_changes", None)
        if cached is not None and cached[0] == token:
            return cached[1]
        changes = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    changes.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash: its change never finished
        self._tag_changes = (token, changes)
        return changes

    def replacement(self, tag: str) -> str | None:
        """What a tag that is gone from the repository became: its replacement's current name
        (following later renames), or None when it was retired or never existed."""
        latest = {c["tag"]: c["into"] for c in self.tag_changes()}
        seen = set()
        while tag in latest and tag not in seen:
            seen.add(tag)
            tag = latest[tag]
            if tag is None:
                return None
        return tag if seen else None

    def former_names(self) -> dict[str, list[str]]:
        """Each current tag → the names renamed or merged into it (following chains)."""
        out: dict[str, list[str]] = {}
        for change in self.tag_changes():
            if change["into"] is not None:
                current = self.replacement(change["tag"])
                if current is not None:
                    out.setdefault(current, []).append(change["tag"])
        return out


def _tag_change_summary(change: dict) -> str:
    moved = f"{change['samples']} samples' verdicts"
    if change["change"] == "retire":
        return f"retired {change['tag']}: {moved} kept in {TAG_CHANGES_FILE}" + (
            f"; {change['removed_samples']} samples with no other verdict left the history (their texts are kept there too)"
            if change["removed_samples"]
            else ""
        )
    verb = "renamed" if change["change"] == "rename" else "merged"
    return (
        f"{verb} {change['tag']} → {change['into']}: {moved} moved"
        + (f", {change['children']} child tags re-parented" if change["children"] else "")
        + (f", {change['conflicts']} samples had both as right and wrong (kept as right)" if change["conflicts"] else "")
    )


def sample_from_neighbour(h: Neighbour) -> Sample:
    return Sample(h.id, h.text, tuple(_json_list(h.metadata, "tags")), tuple(_json_list(h.metadata, "incorrect_tags")))
