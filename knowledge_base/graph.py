"""The content–tag graph (paper §3.1) in networkx, persisted as a snapshot plus a journal.

Vertices are ``t:<tag>`` and ``c:<content id>``. Edges carry ``kind``: ``det`` (the content was
annotated with the tag) or ``sim`` (cosine above δ_ct / δ_cc, with the cosine as ``weight``).

Persistence: every change is appended to ``graph.journal`` (one JSON line each, flushed and
fsynced) and ``compact()`` rewrites the snapshot ``graph.json`` atomically (temp file + rename)
before emptying the journal. Both are plain JSON: reading a knowledge base never runs code from it.
Older knowledge bases kept the snapshot in ``graph.pickle``, which can run arbitrary code when
read; it is never opened — such a knowledge base is refused until ``llm4tag kb rebuild-graph``
rebuilds the graph from the Chroma stores (``KnowledgeBase.rebuild_graph``), which is also the
way out when a snapshot is damaged. A crash mid-append leaves at most one torn last line, which replay skips;
a crash mid-compaction leaves the previous snapshot, and replaying operations twice is harmless
because every operation is idempotent. Callers serialise writers across processes with the knowledge base's file lock; within a
process, ``lock`` guards the in-memory graph, so readers never iterate it while a thread writes.

With a Chroma server configured, the graph is a cache of the edges kept in the Chroma store
(``knowledge_base.shared_graph``): ``catch_up`` is then set, ``refresh`` calls it after reading the
journal, and the snapshot also records how far the cached graph had caught up (``synced_to``, the
server's time of its last catch-up, and ``latest``, the stamp of the latest record it applied), so
that a restart catches up from there instead of rebuilding.
"""

from __future__ import annotations

import gc
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

import networkx as nx

from .errors import KnowledgeBaseError

TAG, CONTENT = "t:", "c:"
COMPACT_AFTER_OPS = 20000
SNAPSHOT_FORMAT = "llm4tag-graph"
SNAPSHOT_VERSION = 1
LEGACY_SNAPSHOT = "graph.pickle"


class GraphSnapshotError(KnowledgeBaseError):
    """The graph snapshot cannot be used (an old pickle, or damaged); rebuild it from the stores."""


def rebuild_hint(directory: Path) -> str:
    return f"rebuild the graph from the knowledge base's stores with: llm4tag --kb {directory} kb rebuild-graph"


def graph_to_json(g: nx.Graph, synced_to: int | None = None, latest: int | None = None) -> bytes:
    """The snapshot: ``{"format", "version", "nodes": [[id, kind], ...], "edges": [[u, v, kind, weight], ...]}``,
    and ``"synced_to"``, ``"latest"`` (whole µs) when the graph is a cache of a shared Chroma store."""
    with _collector_paused():
        data = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "nodes": [[n, d.get("kind")] for n, d in g.nodes(data=True)],
            "edges": [[u, v, d.get("kind"), d.get("weight", 1.0)] for u, v, d in g.edges(data=True)],
        }
        if synced_to is not None:
            data["synced_to"], data["latest"] = synced_to, latest or 0
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def graph_from_json(raw: bytes) -> nx.Graph:
    """Parse a snapshot written by ``graph_to_json``; ``ValueError`` says what is wrong with it."""
    return _parse_snapshot(raw)[0]


def _parse_snapshot(raw: bytes) -> tuple[nx.Graph, int | None, int | None]:
    """The graph of a snapshot, its ``synced_to`` and ``latest`` (None when it has none)."""
    with _collector_paused():
        return _build_snapshot(json.loads(raw))


@contextmanager
def _collector_paused():
    """Millions of small lists and dicts made at once, none of them garbage: the cyclic garbage
    collector, run every few hundred allocations, would re-scan all that exist each time (at 2.5M
    edges it made ``json.loads`` of the snapshot 5× slower), so it waits until they are made."""
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
            if not (type(item) is list and len(item) == 4 and type(item[0]) is str and type(item[1]) is str
                    and (item[2] is None or type(item[2]) is str) and type(item[3]) in (float, int)):
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


def tag_node(name: str) -> str:
    return TAG + name


def content_node(cid: str) -> str:
    return CONTENT + cid


class ContentTagGraph:
    def __init__(self, directory: Path, load: bool = True):
        """``load=False`` starts from an empty graph without reading the snapshot or the journal
        (for ``KnowledgeBase.rebuild_graph``, which replaces both)."""
        self.directory = Path(directory)
        self.snapshot_path = self.directory / "graph.json"
        self.legacy_path = self.directory / LEGACY_SNAPSHOT
        self.journal_path = self.directory / "graph.journal"
        self.g = nx.Graph()
        self.lock = threading.RLock()
        self._stamp: tuple[int, int] | None | str = "unread"  # (snapshot mtime_ns, inode); None: no snapshot
        self._journal_offset = 0
        self._journal_ops = 0
        self.loaded = load
        self.problems: list[str] = []  # journal lines that were skipped, for ``stats``
        # a cache of a shared Chroma store (knowledge_base.shared_graph): the hook ``refresh`` calls, how
        # far it caught up (saved with the snapshot: see there), and a counter that moves
        # whenever the whole graph was swapped for a snapshot (the hook then starts its bookkeeping over)
        self.catch_up: Callable[[], bool] | None = None
        self.synced_to: int | None = None
        self.latest: int | None = None
        self.generation = 0
        if load:
            self.refresh()

    # ---- loading -------------------------------------------------------------------------
    def _snapshot_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.snapshot_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def refresh(self) -> bool:
        """Bring the in-memory graph up to date with what other writers persisted: the snapshot and
        journal in the directory, then (with a shared Chroma store) what other machines wrote.

        Returns True when something written by another process (or another instance) was loaded.
        """
        with self.lock:
            changed = self._refresh()
        if self.catch_up is not None and self.loaded:  # outside the lock: it asks the Chroma server
            changed = self.catch_up() or changed
        return changed

    def _refresh(self) -> bool:
        if not self.loaded:  # being rebuilt: nothing on disk is read
            return False
        stamp = self._snapshot_stamp()
        changed = False
        if stamp != self._stamp:
            if stamp is None:
                if self.legacy_path.exists():
                    raise GraphSnapshotError(
                        f"{self.directory} keeps its content–tag graph in {LEGACY_SNAPSHOT}, an old format that can run code "
                        f"when it is read, so llm4tag does not open it; {rebuild_hint(self.directory)} "
                        f"(the pickle is not read; the stores hold every tag, sample and content)"
                    )
                self.g, self.synced_to, self.latest = nx.Graph(), None, None
            else:
                try:
                    self.g, self.synced_to, self.latest = _parse_snapshot(self.snapshot_path.read_bytes())
                except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
                    raise GraphSnapshotError(f"the graph snapshot {self.snapshot_path} is damaged ({exc}); {rebuild_hint(self.directory)}") from exc
            self.generation += 1
            self._stamp = stamp
            self._journal_offset = 0
            self._journal_ops = 0
            changed = True
        return self._replay_journal() or changed

    def _replay_journal(self) -> bool:
        try:
            size = self.journal_path.stat().st_size
        except FileNotFoundError:
            self._journal_offset = 0
            return False
        if size < self._journal_offset:  # compacted by another process after we read the snapshot
            self._journal_offset = 0
        if size == self._journal_offset:
            return False
        with open(self.journal_path, "rb") as fh:
            fh.seek(self._journal_offset)
            data = fh.read()
        consumed = 0
        for raw in data.split(b"\n")[:-1]:  # the part after the last newline is torn or unwritten
            consumed += len(raw) + 1
            try:
                op = json.loads(raw)
            except ValueError:
                continue  # a torn line left by a crash: its batch was never acknowledged
            try:
                self._apply(op)
            except (KeyError, TypeError, AttributeError, ValueError):  # a line no llm4tag wrote: skipped, reported
                self.problems.append(f"{self.journal_path}: skipped a malformed operation {raw[:80].decode('utf-8', 'backslashreplace')!r}; "
                                     f"{rebuild_hint(self.directory)} if the graph looks wrong")
                continue
            self._journal_ops += 1
        self._journal_offset += consumed
        return consumed > 0

    # ---- changing ------------------------------------------------------------------------
    def _apply(self, op: dict) -> None:
        kind = op["op"]
        if kind == "node":
            self.g.add_node(op["id"], kind=op["kind"])
        elif kind == "edge":
            self.g.add_edge(op["u"], op["v"], kind=op["kind"], weight=op.get("w", 1.0))
        elif kind == "drop_det":
            node = op["id"]
            if node in self.g:
                stale = [n for n, d in self.g[node].items() if d.get("kind") == "det"]
                self.g.remove_edges_from((node, n) for n in stale)
        elif kind == "remove_node":
            if op["id"] in self.g:
                self.g.remove_node(op["id"])

    def write(self, ops: Iterable[dict]) -> int:
        """Append operations to the journal durably, then apply them in memory."""
        ops = list(ops)
        if not ops:
            return 0
        with self.lock, _collector_paused():
            return self._write(ops)

    def _write(self, ops: list[dict]) -> int:
        self._refresh()
        payload = b"".join(json.dumps(op, ensure_ascii=False).encode("utf-8") + b"\n" for op in ops)
        with open(self.journal_path, "ab") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end > self._journal_offset:  # a torn line left by a crash: end it, or it swallows our first op
                payload = b"\n" + payload
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        for op in ops:
            self._apply(op)
        self._journal_offset = end + len(payload)
        self._journal_ops += len(ops)
        if self._journal_ops >= COMPACT_AFTER_OPS:
            self._compact()
        return len(ops)

    def compact(self) -> None:
        """Write the whole graph as a new snapshot (atomically) and start an empty journal."""
        with self.lock:
            self._compact()

    def replace(self, g: nx.Graph) -> None:
        """Make ``g`` the whole graph: written as the snapshot, with an empty journal (a rebuild)."""
        with self.lock:
            self.g = g
            self.loaded = True
            self.generation += 1
            self._compact()

    def _compact(self) -> None:
        tmp = self.snapshot_path.with_suffix(".json.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(graph_to_json(self.g, self.synced_to, self.latest))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.snapshot_path)
        except BaseException:  # a full disk, an interrupt: the old snapshot and the journal stay; no partial copy is left
            tmp.unlink(missing_ok=True)
            raise
        with open(self.journal_path, "wb") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        self._stamp = self._snapshot_stamp()
        self._journal_offset = 0
        self._journal_ops = 0

    # ---- reading -------------------------------------------------------------------------
    def tags_of(self, cid: str) -> dict[str, float]:
        """Deterministic tags of a content (tag name → 1.0)."""
        node = content_node(cid)
        with self.lock:
            if node not in self.g:
                return {}
            return {n[len(TAG):]: 1.0 for n, d in self.g[node].items() if d.get("kind") == "det" and n.startswith(TAG)}

    def counts(self) -> dict[str, int]:
        with self.lock:
            tags = sum(1 for n in self.g if n.startswith(TAG))
            det = sum(1 for _, _, d in self.g.edges(data=True) if d.get("kind") == "det")
        return {
            "tag_nodes": tags,
            "content_nodes": self.g.number_of_nodes() - tags,
            "deterministic_edges": det,
            "similarity_edges": self.g.number_of_edges() - det,
        }

    def neighbourhood(self, node: str, radius: int = 1, limit: int = 40) -> nx.Graph:
        """A small subgraph around a node, strongest edges first, for pictures and explanations."""
        with self.lock:
            return self._neighbourhood(node, radius, limit)

    def _neighbourhood(self, node: str, radius: int, limit: int) -> nx.Graph:
        if node not in self.g:
            return nx.Graph()
        keep = {node}
        frontier = [node]
        for _ in range(radius):
            nxt = []
            for n in frontier:
                ranked = sorted(self.g[n].items(), key=lambda kv: (kv[1].get("kind") != "det", -kv[1].get("weight", 1.0)))
                for m, _ in ranked[: max(1, limit // max(1, len(frontier)))]:
                    if m not in keep:
                        keep.add(m)
                        nxt.append(m)
            frontier = nxt
        return self.g.subgraph(keep).copy()
