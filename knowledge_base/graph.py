"""The content–tag graph (paper §3.1), kept in SQLite: read where it lies, never loaded whole.

Vertices are ``t:<tag>`` and ``c:<content id>``. The edges stored are deterministic (``kind``
``det``: the content was annotated with the tag, or its tags were written back). Similarity edges
(cosine above δ_ct / δ_cc) are not stored: they are queries of the vector index
(``knowledge_base.neighbourhood``); a store written by an older llm4tag may still hold some
(``kind`` ``sim``), which ``drop_similarity`` removes.

**The store** is ``graph.sqlite`` in the knowledge base's folder (WAL mode): a table of nodes
(id, kind), a table of undirected edges (each stored once, its two ends in sorted order, indexed
from both ends), and counts kept by triggers. Opening it reads nothing but its header, so a
process's memory and start-up do not grow with the history; recall asks for one content's
deterministic tags at a time (one indexed lookup), and networkx — still the graph model for
what needs a graph — is built on demand around some nodes (``subgraph``: the page's picture of a
neighbourhood) or, for analysis and export, whole (``to_networkx``).

**Writes** (``write``) apply a batch of operations — ``node``, ``edge`` (an annotation may
carry its place among the content's tags, ``n``), ``drop_det``, ``remove_node``, ``touch`` — in one
transaction, committed durably (``synchronous=FULL``) before ``write`` returns: a crash leaves
the batch whole or absent. Every operation is idempotent. Callers serialise writers across
processes with the knowledge base's file lock; within a process, ``lock`` guards the connection.
Other processes' writes are visible to the next read; ``refresh`` says whether there were any
(SQLite's ``data_version``), which the knowledge base uses to re-open its Chroma view.

**Older knowledge bases** kept the graph as a JSON snapshot (``graph.json``) plus a journal
(``graph.journal``): the first open migrates them into ``graph.sqlite`` (every node and edge,
checked entry by entry; a damaged snapshot is refused with the command that rebuilds the graph)
and removes them. An even older ``graph.pickle``, which can run code when read, is never opened:
such a knowledge base is refused until ``llm4tag kb rebuild-graph`` rebuilds the graph from the
Chroma stores (``KnowledgeBase.rebuild_graph``, which writes a fresh store and swaps it in: also
the way out of a damaged ``graph.sqlite``).

With a Chroma server configured, the graph is a cache of the edges kept in the Chroma store
(``knowledge_base.shared_graph``): ``catch_up`` is then set, ``refresh`` calls it, and the store
also keeps how far the cache had caught up (``synced_to``, the server's time of its last
catch-up, and ``latest``, the stamp of the latest record it applied; saved by ``compact``), so
that a restart catches up from there instead of rebuilding.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import networkx as nx

from .errors import KnowledgeBaseError, is_disk_full

TAG, CONTENT = "t:", "c:"
STORE = "graph.sqlite"
SNAPSHOT_FORMAT = "llm4tag-graph"  # the JSON snapshot of older knowledge bases, migrated on open
SNAPSHOT_VERSION = 1
STORE_VERSION = 1  # of graph.sqlite's tables
LEGACY_SNAPSHOT = "graph.pickle"
_NODE_PREFIX = "CASE WHEN substr({0}.id, 1, 2) IN ('t:', 'c:') THEN substr({0}.id, 1, 2) ELSE '-' END"  # tally key of a node
_EDGE_KIND = "CASE WHEN {0}.kind = 'det' THEN 'det' ELSE 'other' END"  # tally key of an edge
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS nodes(id TEXT PRIMARY KEY, kind TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nodes_by_kind ON nodes(kind);
CREATE TABLE IF NOT EXISTS edges(u TEXT NOT NULL, v TEXT NOT NULL, kind TEXT, weight REAL NOT NULL, pos INTEGER, PRIMARY KEY(u, v)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_by_v ON edges(v);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tally(what TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO tally(what, n) VALUES ('node:t:', 0), ('node:c:', 0), ('node:-', 0), ('edge:det', 0), ('edge:other', 0);
INSERT OR IGNORE INTO meta(key, value) VALUES ('version', {STORE_VERSION});
CREATE TRIGGER IF NOT EXISTS nodes_added AFTER INSERT ON nodes BEGIN
  UPDATE tally SET n = n + 1 WHERE what = 'node:' || {_NODE_PREFIX.format("NEW")}; END;
CREATE TRIGGER IF NOT EXISTS nodes_removed AFTER DELETE ON nodes BEGIN
  UPDATE tally SET n = n - 1 WHERE what = 'node:' || {_NODE_PREFIX.format("OLD")}; END;
CREATE TRIGGER IF NOT EXISTS edges_added AFTER INSERT ON edges BEGIN
  UPDATE tally SET n = n + 1 WHERE what = 'edge:' || {_EDGE_KIND.format("NEW")}; END;
CREATE TRIGGER IF NOT EXISTS edges_removed AFTER DELETE ON edges BEGIN
  UPDATE tally SET n = n - 1 WHERE what = 'edge:' || {_EDGE_KIND.format("OLD")}; END;
CREATE TRIGGER IF NOT EXISTS edges_changed AFTER UPDATE OF kind ON edges BEGIN
  UPDATE tally SET n = n - 1 WHERE what = 'edge:' || {_EDGE_KIND.format("OLD")};
  UPDATE tally SET n = n + 1 WHERE what = 'edge:' || {_EDGE_KIND.format("NEW")}; END;
"""
WAL_LIMIT = 32 * 2**20  # bytes of write-ahead log kept on disk after a checkpoint
_IN_CHUNK = 500  # ids per ``IN (...)`` query (SQLite allows 32,766 parameters)


class GraphSnapshotError(KnowledgeBaseError):
    """The graph cannot be used (an old pickle, or a damaged store or snapshot); rebuild it from the stores."""


def rebuild_hint(directory: Path) -> str:
    return f"rebuild the graph from the knowledge base's stores with: llm4tag --kb {directory} kb rebuild-graph"


def tag_node(name: str) -> str:
    return TAG + name


def content_node(cid: str) -> str:
    return CONTENT + cid


# ---- the JSON snapshot of older knowledge bases (read once, when they are migrated) ---------------
def _parse_snapshot(raw: bytes) -> tuple[nx.Graph, int | None, int | None]:
    with _collector_paused():
        return _build_snapshot(json.loads(raw))


@contextmanager
def _collector_paused():
    """Millions of small objects made at once, none of them garbage: the cyclic collector waits
    until they are made (at 2.5M edges it made ``json.loads`` of a snapshot 5× slower)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _build_snapshot(data) -> tuple[nx.Graph, int | None, int | None]:
    """Check a parsed snapshot entry by entry while building its graph."""
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError("not an llm4tag graph snapshot")
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {data.get('version')!r}, this llm4tag reads version {SNAPSHOT_VERSION}")
    nodes, edges = data.get("nodes"), data.get("edges")
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise ValueError("'nodes' and 'edges' must be lists")

    def checked_nodes():
        for item in nodes:
            if not (type(item) is list and len(item) == 2 and type(item[0]) is str and (item[1] is None or type(item[1]) is str)):
                raise ValueError(f"bad node entry {str(item)[:80]}")
            yield item[0], {} if item[1] is None else {"kind": item[1]}

    def checked_edges():
        for item in edges:
            if not (
                type(item) is list
                and len(item) == 4
                and type(item[0]) is str
                and type(item[1]) is str
                and (item[2] is None or type(item[2]) is str)
                and type(item[3]) in (float, int)
            ):
                raise ValueError(f"bad edge entry {str(item)[:80]}")
            u, v, kind, weight = item
            yield u, v, {"kind": kind, "weight": float(weight)}

    g = nx.Graph()
    g.add_nodes_from(checked_nodes())
    g.add_edges_from(checked_edges())
    marks = (data.get("synced_to"), data.get("latest"))
    for name, value in zip(("synced_to", "latest"), marks):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name!r} must be a whole number, not {value!r}")
    return g, *marks


def _replay_legacy_journal(g: nx.Graph, path: Path, problems: list[str], directory: Path) -> None:
    """Apply an older knowledge base's journal lines to its snapshot's graph: a torn last line
    (a crash mid-append) and lines no llm4tag wrote are skipped, the latter reported."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for raw in data.split(b"\n")[:-1]:  # the part after the last newline is torn or unwritten
        try:
            op = json.loads(raw)
        except ValueError:
            continue
        try:
            kind = op["op"]
            if kind == "node":
                g.add_node(op["id"], kind=op["kind"])
            elif kind == "edge":
                g.add_edge(op["u"], op["v"], kind=op["kind"], weight=float(op.get("w", 1.0)))
            elif kind == "drop_det":
                if op["id"] in g:
                    g.remove_edges_from([(op["id"], n) for n, d in g[op["id"]].items() if d.get("kind") == "det"])
            elif kind == "remove_node":
                if op["id"] in g:
                    g.remove_node(op["id"])
        except (KeyError, TypeError, AttributeError, ValueError):
            problems.append(
                f"{path}: skipped a malformed operation {raw[:80].decode('utf-8', 'backslashreplace')!r}; "
                f"{rebuild_hint(directory)} if the graph looks wrong"
            )


def _is_annotation(u: str, v: str, d: dict) -> bool:
    """A deterministic edge between a content and a tag: an annotation."""
    return d.get("kind") == "det" and {u[:2], v[:2]} == {CONTENT, TAG}


def _ops_of(g: nx.Graph) -> Iterator[dict]:
    """A networkx graph as operations; each content's annotations keep the order they had in it;
    similarity edges are left out (they are queries now)."""
    for n, d in g.nodes(data=True):
        yield {"op": "node", "id": n, "kind": d.get("kind")}
    for u, v, d in g.edges(data=True):
        if d.get("kind") == "det" and not _is_annotation(u, v, d):  # annotations below, with their place among the content's tags
            yield {"op": "edge", "u": u, "v": v, "kind": "det", "w": d.get("weight", 1.0)}
    for n in g:
        if n.startswith(CONTENT):
            for pos, m in enumerate(m for m, d in g[n].items() if _is_annotation(n, m, d)):
                yield {"op": "edge", "u": n, "v": m, "kind": "det", "w": g[n][m].get("weight", 1.0), "n": pos}


# ---- the store --------------------------------------------------------------------------------
class ContentTagGraph:
    def __init__(self, directory: Path, load: bool = True, path: Path | None = None):
        """``load=False`` opens nothing (``KnowledgeBase.rebuild_graph`` then swaps a rebuilt store
        in with ``adopt``); ``path``: another file than the folder's ``graph.sqlite`` (a rebuild's scratch store)."""
        self.directory = Path(directory)
        self.path = Path(path) if path else self.directory / STORE
        self.snapshot_path = self.directory / "graph.json"
        self.journal_path = self.directory / "graph.journal"
        self.legacy_path = self.directory / LEGACY_SNAPSHOT
        self.lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file the connection has open
        self._data_version: int | None = None
        self.loaded = load
        self.problems: list[str] = []  # what the migration skipped, for ``stats``
        # a cache of a shared Chroma store (knowledge_base.shared_graph): the hook ``refresh`` calls, how
        # far it caught up (saved by ``compact``: see there), and a counter that moves whenever the whole
        # graph was replaced (the hook then starts its bookkeeping over)
        self.catch_up: Callable[[], bool] | None = None
        self.synced_to: int | None = None
        self.latest: int | None = None
        self.generation = 0
        if load:
            self.refresh()

    # ---- opening ---------------------------------------------------------------------------
    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _connection(self) -> sqlite3.Connection:
        """The open store (the caller holds ``lock``): opened, or migrated from an older folder, on
        first use; re-opened when a rebuild in another process swapped another file in."""
        identity = self._file_identity()
        if self._conn is not None and identity == self._identity:
            return self._conn
        self._close()
        if identity is None and not self.path.name.endswith(".rebuild"):
            if self.snapshot_path.exists() or self.journal_path.exists():
                self._migrate()
            elif self.legacy_path.exists():
                raise GraphSnapshotError(
                    f"{self.directory} keeps its content–tag graph in {LEGACY_SNAPSHOT}, an old format that can run code "
                    f"when it is read, so llm4tag does not open it; {rebuild_hint(self.directory)} "
                    f"(the pickle is not read; the stores hold every tag, sample and content)"
                )
        self._conn = self._open(self.path)
        self._identity = self._file_identity()
        self._data_version = None
        self.generation += 1
        marks = dict(self._conn.execute("SELECT key, value FROM meta WHERE key IN ('synced_to', 'latest')").fetchall())
        self.synced_to, self.latest = marks.get("synced_to"), marks.get("latest")
        return self._conn

    def _open(self, path: Path, durable: bool = True) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(path), timeout=120, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")  # a large load's log shrinks back after its checkpoint
            version = _version(conn)
            if version is None:  # a new store (opening an existing one writes nothing: a reader never waits for a writer)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
                version = _version(conn)
            elif "pos" not in {row[1] for row in conn.execute("PRAGMA table_info(edges)")}:  # made before annotations kept their order
                conn.execute("ALTER TABLE edges ADD COLUMN pos INTEGER")  # a change of the schema only: no row is rewritten
        except sqlite3.DatabaseError as exc:
            if is_disk_full(exc):
                raise OSError(28, f"no space left to open the graph store {path}") from exc
            if "unable to open" in str(exc):
                raise KnowledgeBaseError(
                    f"cannot open the graph store {path} ({exc}): does the folder exist, and may this user write to it?"
                ) from exc
            raise GraphSnapshotError(f"the graph store {path} is damaged ({exc}); {rebuild_hint(self.directory)}") from exc
        if version != STORE_VERSION:
            conn.close()
            raise GraphSnapshotError(
                f"the graph store {path} has version {version!r}, this llm4tag reads version {STORE_VERSION}; "
                f"{rebuild_hint(self.directory)}"
            )
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _migrate(self) -> None:
        """Move an older folder's JSON snapshot and journal into a new store, whole or not at all."""
        from filelock import FileLock

        with FileLock(str(self.directory / (STORE + ".migrating.lock"))):  # two processes opening it at once migrate it once
            if self.path.exists():
                return
            g, synced_to, latest = nx.Graph(), None, None
            if self.snapshot_path.exists():
                try:
                    g, synced_to, latest = _parse_snapshot(self.snapshot_path.read_bytes())
                except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
                    raise GraphSnapshotError(
                        f"the graph snapshot {self.snapshot_path} is damaged ({exc}); {rebuild_hint(self.directory)}"
                    ) from exc
            _replay_legacy_journal(g, self.journal_path, self.problems, self.directory)
            scratch = self.path.with_name(STORE + ".migrating")
            for leftover in (scratch, *_sidecars(scratch)):
                leftover.unlink(missing_ok=True)
            conn = self._open(scratch, durable=False)
            try:
                with _transaction(conn):
                    for op in _ops_of(g):
                        _apply(conn, op)
                    _save_marks(conn, synced_to, latest)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA synchronous=FULL")
            finally:
                conn.close()
            os.replace(scratch, self.path)
            _fsync_directory(self.directory)
            self.snapshot_path.unlink(missing_ok=True)
            self.journal_path.unlink(missing_ok=True)

    # ---- keeping up --------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Whether another process (or another instance) wrote to the store since the last call,
        and then (with a shared Chroma store) what other machines wrote, caught up."""
        with self.lock:
            changed = self._refresh()
        if self.catch_up is not None and self.loaded:  # outside the lock: it asks the Chroma server
            changed = self.catch_up() or changed
        return changed

    def _refresh(self) -> bool:
        if not self.loaded:
            return False
        before = self.generation
        conn = self._connection()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version or self.generation != before
        self._data_version = version
        return changed

    # ---- changing ----------------------------------------------------------------------------
    def write(self, ops: Iterable[dict]) -> int:
        """Apply operations in one durable transaction; returns how many."""
        ops = list(ops)
        if not ops:
            return 0
        with self.lock:
            conn = self._connection()
            with _transaction(conn):
                for op in ops:
                    _apply(conn, op)
        return len(ops)

    def compact(self) -> None:
        """Save how far a shared-store cache caught up, and fold the write-ahead log into the store."""
        with self.lock:
            if not self.loaded:
                return
            conn = self._connection()
            with _transaction(conn):
                _save_marks(conn, self.synced_to, self.latest)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def drop_similarity(self) -> int:
        """Remove the similarity edges an older llm4tag stored (they are queries now), in one
        transaction; how many there were. The caller holds the knowledge base's write lock."""
        with self.lock:
            if not self.loaded or not self.counts()["similarity_edges"]:
                return 0
            conn = self._connection()
            with _transaction(conn):
                dropped = conn.execute("DELETE FROM edges WHERE kind IS NOT 'det'").rowcount
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return dropped

    def replace(self, ops: Iterable[dict]) -> None:
        """Make the graph exactly what ``ops`` build, in one transaction (a cache built from a shared store)."""
        with self.lock:
            self.loaded = True
            conn = self._connection()
            with _transaction(conn):
                conn.execute("DELETE FROM edges")
                conn.execute("DELETE FROM nodes")
                for op in ops:
                    _apply(conn, op)
            self.generation += 1

    @classmethod
    def scratch(cls, directory: Path) -> "ContentTagGraph":
        """An empty store beside the folder's, for a rebuild to fill and ``adopt`` to swap in."""
        path = Path(directory) / (STORE + ".rebuild")
        for leftover in (path, *_sidecars(path)):
            leftover.unlink(missing_ok=True)
        return cls(directory, load=True, path=path)

    def adopt(self, scratch: "ContentTagGraph") -> None:
        """Swap a filled scratch store in for this folder's (a rebuild); another process notices
        the new file on its next read and re-opens it."""
        with self.lock, scratch.lock:
            conn = scratch._connection()
            _save_marks(conn, self.synced_to, self.latest)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            scratch._close()
            self._close()
            for sidecar in _sidecars(self.path):  # the old store's log must not be read with the new file
                sidecar.unlink(missing_ok=True)
            os.replace(scratch.path, self.path)
            _fsync_directory(self.directory)
            for path in (self.snapshot_path, self.journal_path):
                path.unlink(missing_ok=True)
            self.loaded = True
            self._connection()

    # ---- reading -------------------------------------------------------------------------
    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            if not self.loaded:
                return []
            return self._connection().execute(sql, params).fetchall()

    def has_node(self, node: str) -> bool:
        return bool(self._read("SELECT 1 FROM nodes WHERE id = ?", (node,)))

    def present(self, nodes: Iterable[str]) -> set[str]:
        """Which of ``nodes`` are in the graph."""
        nodes = list(nodes)
        found: set[str] = set()
        for start in range(0, len(nodes), _IN_CHUNK):
            chunk = nodes[start : start + _IN_CHUNK]
            found.update(r[0] for r in self._read(f"SELECT id FROM nodes WHERE id IN ({','.join('?' * len(chunk))})", tuple(chunk)))
        return found

    def node_ids(self, kind: str) -> list[str]:
        """Every node of a kind (``tag`` or ``content``)."""
        return [r[0] for r in self._read("SELECT id FROM nodes WHERE kind = ?", (kind,))]

    def tag_names(self) -> set[str]:
        return {n[len(TAG) :] for n in self.node_ids("tag")}

    def neighbours(self, node: str) -> list[tuple[str, str | None, float]] | None:
        """A node's edges as (other end, kind, weight); None when the node is not in the graph."""
        with self.lock:
            if not self.has_node(node):
                return None
            return self._read("SELECT v, kind, weight FROM edges WHERE u = ? ORDER BY pos IS NULL, pos, v", (node,)) + self._read(
                "SELECT u, kind, weight FROM edges WHERE v = ?", (node,)
            )

    def tags_of(self, cid: str) -> dict[str, float]:
        """Deterministic tags of a content (tag name → 1.0): its annotations in the order they were
        given (an edge's ``pos``; recall's ties follow it), one indexed lookup."""
        # a content–tag edge is stored as (c:…, t:…): "c:" sorts before "t:"
        return {
            v[len(TAG) :]: 1.0
            for (v,) in self._read(
                "SELECT v FROM edges WHERE u = ? AND kind = 'det' AND v >= 't:' AND v < 't;' ORDER BY pos IS NULL, pos, v",
                (content_node(cid),),
            )
        }

    def tags_of_many(self, cids: Iterable[str]) -> dict[str, list[str]]:
        """Deterministic tags of several contents at once (content id → tag names)."""
        out: dict[str, list[str]] = {}
        cids = list(dict.fromkeys(cids))
        for start in range(0, len(cids), _IN_CHUNK):
            chunk = [content_node(c) for c in cids[start : start + _IN_CHUNK]]
            for u, v in self._read(
                f"SELECT u, v FROM edges WHERE u IN ({','.join('?' * len(chunk))}) AND kind = 'det' "
                "AND v >= 't:' AND v < 't;' ORDER BY u, pos IS NULL, pos, v",
                tuple(chunk),
            ):
                out.setdefault(u[len(CONTENT) :], []).append(v[len(TAG) :])
        return out

    def counts(self) -> dict[str, int]:
        """Tag nodes (``t:…``), the other nodes, deterministic edges and the other edges (similarity
        edges an older llm4tag stored: ``drop_similarity``): kept by the store's triggers, so asking costs one small read whatever the graph's size."""
        tally = dict(self._read("SELECT what, n FROM tally"))
        return {
            "tag_nodes": tally.get("node:t:", 0),
            "content_nodes": tally.get("node:c:", 0) + tally.get("node:-", 0),
            "deterministic_edges": tally.get("edge:det", 0),
            "similarity_edges": tally.get("edge:other", 0),
        }

    def number_of_nodes(self) -> int:
        return sum(n for what, n in self._read("SELECT what, n FROM tally") if what.startswith("node:"))

    def subgraph(self, nodes: Iterable[str]) -> nx.Graph:
        """The stored nodes among ``nodes`` and every stored edge between two of them, in networkx."""
        keep = set(nodes)
        g = nx.Graph()
        nodes = list(keep)
        for start in range(0, len(nodes), _IN_CHUNK):
            chunk = tuple(nodes[start : start + _IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            for n, kind in self._read(f"SELECT id, kind FROM nodes WHERE id IN ({marks})", chunk):
                g.add_node(n, **({} if kind is None else {"kind": kind}))
            for u, v, kind, w in self._read(f"SELECT u, v, kind, weight FROM edges WHERE u IN ({marks})", chunk):
                if v in keep:
                    g.add_edge(u, v, kind=kind, weight=w)
        return g

    def to_networkx(self) -> nx.Graph:
        """The whole graph in networkx (analysis, export, tests): memory in proportion to the history."""
        g = nx.Graph()
        with _collector_paused():
            for n, kind in self._read("SELECT id, kind FROM nodes"):
                g.add_node(n, **({} if kind is None else {"kind": kind}))
            for u, v, kind, w in self._read("SELECT u, v, kind, weight FROM edges"):
                g.add_edge(u, v, kind=kind, weight=w)
        return g


def _version(conn: sqlite3.Connection) -> int | None:
    """The store's version; None when its tables are not made yet."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return row[0] if row else None


# ---- operations ---------------------------------------------------------------------------------
def _apply(conn: sqlite3.Connection, op: dict) -> None:
    kind = op["op"]
    if kind == "node":
        conn.execute(
            "INSERT INTO nodes(id, kind) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET kind = excluded.kind "
            "WHERE nodes.kind IS NOT excluded.kind",
            (op["id"], op["kind"]),
        )
    elif kind == "edge":
        a, b = sorted((op["u"], op["v"]))
        conn.executemany("INSERT OR IGNORE INTO nodes(id, kind) VALUES (?, NULL)", ((a,), (b,)))
        conn.execute(
            "INSERT INTO edges(u, v, kind, weight, pos) VALUES (?, ?, ?, ?, ?) ON CONFLICT(u, v) DO UPDATE SET "
            "kind = excluded.kind, weight = excluded.weight, pos = excluded.pos",
            (a, b, op["kind"], float(op.get("w", 1.0)), op.get("n")),
        )
    elif kind == "drop_det":
        conn.execute("DELETE FROM edges WHERE u = ? AND kind = 'det'", (op["id"],))
        conn.execute("DELETE FROM edges WHERE v = ? AND kind = 'det'", (op["id"],))
    elif kind == "remove_node":
        conn.execute("DELETE FROM edges WHERE u = ?", (op["id"],))
        conn.execute("DELETE FROM edges WHERE v = ?", (op["id"],))
        conn.execute("DELETE FROM nodes WHERE id = ?", (op["id"],))
    elif kind == "touch":  # no edge moves; the commit tells other processes that something changed
        conn.execute("INSERT INTO meta(key, value) VALUES ('touched', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1")


@contextmanager
def _transaction(conn: sqlite3.Connection):
    conn.execute("BEGIN IMMEDIATE")
    try:
        with _collector_paused():
            yield
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back already (a full disk): nothing of the batch stays
        raise
    conn.execute("COMMIT")


def _save_marks(conn: sqlite3.Connection, synced_to: int | None, latest: int | None) -> None:
    for key, value in (("synced_to", synced_to), ("latest", latest)):
        if value is None:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, int(value))
            )


def _sidecars(path: Path) -> tuple[Path, Path]:
    return (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
