"""The content–tag graph shared through a Chroma server: several llm4tag servers, one graph.

With ``chroma_host`` set, llm4tag processes on several machines (each with its own knowledge-base
folder) read and write one Chroma server. The vectors were shared already; this module shares
the graph's edges, which live in each process's networkx graph: the Chroma store is the source
of truth, and each process's graph (``graph.ContentTagGraph``) is a cache of it that catches up.

**The edge store** is a fifth collection, ``<prefix>-graph``, one record per graph node a write
owns (id = the node id; a dummy one-number embedding; the JSON document; metadata ``written_us``
and ``kind``):

* ``c:<id>`` (``content``): the content's stored edges (its annotations, in order) as its writer's
  graph held them right after the write, every edge with its kind and weight. It is a state, not a diff: a reader drops
  the node and adds it back with exactly those edges, so a reader that missed earlier versions (a
  replaced text, an earlier verdict) still ends right, and a replace drops the old text's edges.
  Written by every write that changes a content's edges: ``add_samples``, ``record_feedback``,
  ``insert_content`` (with or without ``replace``) and ``rebuild_graph``.
* ``c:<id>`` (``gone``): a tombstone left by ``remove_sample``: the node and its edges go. A later
  write of the id overwrites it; otherwise it stays (one small record per removed content), so a
  process that was down when the content was removed still drops it.
* ``t:<name>`` (``tag``): a tag node (no edges: similarity edges are queries of the shared vector
  index, ``knowledge_base.neighbourhood``; the similarity links an older llm4tag listed are ignored).
* ``~touch``: re-stamped by writes that move no edge (a tag's description, documents), so that
  other processes see that something changed (``KnowledgeBase.revision``).

**Stamps.** ``written_us`` is the Chroma server's clock in whole microseconds (read from its
heartbeat, so the machines' clocks need not agree; whole numbers, because Chroma does not give a
float back to the last bit), and later than anything the writer had applied. A reader keeps
``synced_to``, the server's time when its last catch-up asked (saved in its graph store by ``compact``, so a
restart resumes there), and asks for the records stamped after ``synced_to − MARGIN_US``, metadata
only: one small query when nothing changed, whatever the size of the store. The margin covers
writes in flight (stamped, not yet visible when a reader asked); the documents of records not yet
applied are fetched, and applied in stamp order (ties by id). A record that lands late (stamped
before one already applied) makes the reader re-apply the window from it in order: re-applying is
harmless (each record sets its node's state), and every process converges to the graph that a
fresh process builds from the records. Within a process, a catch-up holds the writer lock, so it
never applies a record over a write in progress; a reader thread that finds the lock taken does
not wait (the writer catches up itself, and the reader on its next refresh).

**Guarantees** without a shared lock (writers on different machines cannot share the folder's file
lock; on one machine it still serialises them): writes of different contents never overwrite each
other, so concurrent writers on several machines lose nothing; two writes of the same id from two
machines at once: the last one wins (each collection keeps the write it received last, and they
normally agree). A write older than ``MARGIN_US`` when it lands would be missed; ``llm4tag kb
rebuild-graph`` re-derives every edge from the stored contents and re-publishes them all.

**First open.** A process whose graph store was never synced builds its graph from the edge store (every
record, in stamp order, in one transaction); a store whose contents predate the edge
store (no records yet) is seeded from the opening folder's graph when it has one, and otherwise
reported by ``stats`` with the ``kb rebuild-graph`` that fills it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable, Iterable

from .graph import CONTENT, TAG, ContentTagGraph

COLLECTION = "graph"  # the edge store is <prefix>-graph
MARGIN_US = 10_000_000  # how long (µs) a write may be in flight (stamped, not yet visible) and still be picked up
STAMP = "written_us"
TOUCH_ID = "~touch"
BATCH = 256
PAGE = 2000  # records per request when a graph is built from the whole store
_DUMMY = [1.0]  # Chroma wants an embedding for every record; the edge store is never searched


def _stamp_key(stamp: int, rid: str) -> tuple[int, str]:
    return (stamp, rid)


class SharedGraph:
    """The bridge between one process's ``ContentTagGraph`` and the edge store of a Chroma server."""

    def __init__(self, client, collection, graph: ContentTagGraph, thread_lock: threading.RLock, stored: Callable[[], int]):
        """``thread_lock`` is the knowledge base's writer lock: a catch-up holds it, so that it never
        applies a record over a write this process is making (a refresh that finds it held, by a
        writer or another thread catching up, does not wait). ``stored()`` counts the tags and
        contents in the Chroma store (an empty edge store beside them predates it)."""
        self.client = client
        self.collection = collection
        self._stored = stored
        self.graph = graph
        self._thread_lock = thread_lock
        self._generation = -1  # the graph generation the bookkeeping below belongs to
        self._seen: dict[str, int] = {}  # records of the current window already applied: id → stamp
        self._last: tuple[int, str] | None = None  # the latest (stamp, id) applied
        self._last_stamp = 0
        self._clock: tuple[int, float, float] | None = None  # (server µs, monotonic then, when measured)
        self.late = 0  # windows re-applied because a record landed late
        self.built = False  # the last catch-up built the graph from the whole store
        self.problems: list[str] = []

    # ---- stamps and bookkeeping ------------------------------------------------------------
    def _heartbeat(self) -> int:
        """The server's clock now, in µs (its heartbeat is nanoseconds since the epoch)."""
        before = time.monotonic()
        server = int(self.client.heartbeat()) // 1000
        self._clock = (server, (before + time.monotonic()) / 2, time.monotonic())
        return server

    def _server_now(self) -> int:
        """The server's clock now, estimated without asking it: its last heartbeat plus the time
        passed since on this machine's monotonic clock (measured again after a minute)."""
        if self._clock is None or time.monotonic() - self._clock[2] > 60:
            return self._heartbeat()
        server, then, _ = self._clock
        return server + int((time.monotonic() - then) * 1e6)

    def now(self) -> int:
        """The server's clock now (µs), asked."""
        return self._heartbeat()

    def _stamp(self) -> int:
        """A record's stamp: now on the server's clock, after everything this process applied or wrote."""
        floor = max(self.graph.latest or 0, self._last_stamp) + 1
        self._last_stamp = max(self._heartbeat(), floor)
        return self._last_stamp

    def _sync_generation(self) -> None:
        """The graph store was replaced or re-opened (a rebuild, here or in another process of this
        folder): forget what was applied; the next catch-up re-applies its window."""
        if self.graph.generation != self._generation:
            self._generation = self.graph.generation
            self._seen, self._last = {}, None

    def _note(self, stamp: int, rid: str) -> None:
        self._seen[rid] = stamp
        key = _stamp_key(stamp, rid)
        if self._last is None or key > self._last:
            self._last = key
        if self.graph.latest is None or stamp > self.graph.latest:
            self.graph.latest = stamp  # not synced_to: only a catch-up knows what others wrote meanwhile

    def token(self) -> str:
        """Changes whenever a shared record was applied here (for ``KnowledgeBase.revision``): the
        latest stamp applied, the same in every process that caught up."""
        latest = self.graph.latest
        return ("-" if latest is None else str(latest)) + (f"~{self.late}" if self.late else "")

    # ---- writing --------------------------------------------------------------------------
    def _neighbourhood(self, node: str) -> dict:
        edges = self.graph.neighbours(node)
        if edges is None:
            return {"kind": "gone"}
        return {"kind": "content", "edges": [[v, kind, weight] for v, kind, weight in edges]}

    def _publish(self, records: list[tuple[str, dict]]) -> None:
        """Upsert records (id, document), one stamp a batch; the caller holds the write lock."""
        with self._thread_lock:
            self._sync_generation()
            for start in range(0, len(records), BATCH):
                chunk = records[start : start + BATCH]
                stamp = self._stamp()
                self.collection.upsert(
                    ids=[rid for rid, _ in chunk],
                    embeddings=[_DUMMY] * len(chunk),
                    documents=[json.dumps(doc, ensure_ascii=False, separators=(",", ":")) for _, doc in chunk],
                    metadatas=[{STAMP: stamp, "kind": doc["kind"]} for _, doc in chunk],
                )
                with self.graph.lock:
                    for rid, _ in chunk:
                        self._note(stamp, rid)

    def publish_contents(self, cids: Iterable[str]) -> None:
        """The records of contents just written (their neighbourhood in this graph now), or their
        tombstones when they are no longer in it."""
        nodes = [CONTENT + cid for cid in dict.fromkeys(cids)]
        with self.graph.lock:
            records = [(node, self._neighbourhood(node)) for node in nodes]
        self._publish(records)

    def publish_tags(self, names: Iterable[str]) -> None:
        """Records of new tags (a tag node has no edge of its own: its annotations are in its contents' records)."""
        self._publish([(TAG + name, {"kind": "tag", "edges": []}) for name in names])

    def touch(self, what: str) -> None:
        self._publish([(TOUCH_ID, {"kind": "touch", "what": what})])

    def publish_all(self) -> int:
        """Every tag and content of this graph (after a rebuild, or to seed an empty edge store)."""
        with self.graph.lock:
            tags = [(n, {"kind": "tag", "edges": []}) for n in self.graph.node_ids("tag")]
            contents = [(n, self._neighbourhood(n)) for n in self.graph.node_ids("content")]
        self._publish(tags + contents)  # tags first: contents' det edges then find their nodes
        return len(tags) + len(contents)

    # ---- reading --------------------------------------------------------------------------
    def catch_up(self) -> bool:
        """Apply the records other processes wrote since the last catch-up; True when any was.

        Skipped (False) while another thread of this process holds the write lock: a writer
        catches up when it takes the lock, and a reader gets the records on its next refresh."""
        if not self._thread_lock.acquire(blocking=False):
            return False
        try:
            self._sync_generation()
            if self.graph.synced_to is None:
                return self._build()
            return self._catch_up()
        finally:
            self._thread_lock.release()

    def _catch_up(self) -> bool:
        asked = self._server_now()
        since = self.graph.synced_to - MARGIN_US
        got = self.collection.get(where={STAMP: {"$gt": since}}, include=["metadatas"])
        window: dict[str, int] = {}
        for rid, meta in zip(got["ids"], got["metadatas"]):
            stamp = (meta or {}).get(STAMP)
            if isinstance(stamp, int) and not isinstance(stamp, bool):
                window[rid] = stamp
        self._seen = {rid: stamp for rid, stamp in self._seen.items() if rid in window}  # the rest is older than the margin
        new = sorted(_stamp_key(stamp, rid) for rid, stamp in window.items() if self._seen.get(rid) != stamp)
        if not new:
            with self.graph.lock:
                self.graph.synced_to = max(self.graph.synced_to, asked)
            return False
        if self._last is not None and new[0] < self._last:  # landed late: re-apply the window from it, in order
            self.late += 1
            ids = [rid for rid, stamp in window.items() if _stamp_key(stamp, rid) >= new[0]]
        else:
            ids = [rid for _, rid in new]
        records = self._fetch(ids)
        with self.graph.lock:
            self.graph.write(op for _, rid, doc in records for op in self._ops(rid, doc))
            for stamp, rid, _ in records:
                self._note(stamp, rid)
            self.graph.synced_to = max(self.graph.synced_to, asked)
        return True

    def _fetch(self, ids: list[str]) -> list[tuple[int, str, dict]]:
        out = []
        for start in range(0, len(ids), BATCH):
            got = self.collection.get(ids=ids[start : start + BATCH], include=["documents", "metadatas"])
            out += self._records(got)
        return sorted(out, key=lambda r: (r[0], r[1]))

    def _records(self, got: dict) -> list[tuple[int, str, dict]]:
        out = []
        for rid, raw, meta in zip(got["ids"], got["documents"], got["metadatas"]):
            stamp = (meta or {}).get(STAMP)
            try:
                doc = json.loads(raw or "")
                if not isinstance(stamp, int) or isinstance(stamp, bool) or not isinstance(doc, dict):
                    raise ValueError("no stamp or no object")
            except ValueError:
                self._problem(rid, raw)
                continue
            out.append((stamp, rid, doc))
        return out

    def _problem(self, rid: str, raw) -> None:
        if len(self.problems) < 20:
            self.problems.append(
                f"the shared edge store's record {rid!r} is malformed ({str(raw)[:80]!r}) and was skipped; "
                "llm4tag kb rebuild-graph re-publishes every record"
            )

    def _ops(self, rid: str, doc: dict) -> list[dict]:
        """The graph operations that give node ``rid`` the state its record holds."""
        try:
            kind = doc["kind"]
            if kind == "content":
                edges = [(str(v), str(k), float(w)) for v, k, w in doc["edges"]]
                annotations = [v for v, k, _ in edges if k == "det"]  # in their order; an older llm4tag's similarity edges are queries now
                return [
                    {"op": "remove_node", "id": rid},
                    {"op": "node", "id": rid, "kind": "content"},
                    *({"op": "edge", "u": rid, "v": v, "kind": "det", "w": 1.0, "n": i} for i, v in enumerate(annotations)),
                ]
            if kind == "tag":  # an older llm4tag's record also lists similarity links: queries now
                return [{"op": "node", "id": rid, "kind": "tag"}]
            if kind == "gone":
                return [{"op": "remove_node", "id": rid}]
        except (KeyError, TypeError, ValueError):
            self._problem(rid, doc)
        return []

    def _build(self) -> bool:
        """The whole graph from the edge store (a first open, or a store that was never synced)."""
        asked = self._heartbeat()
        if self.collection.count() == 0:
            if self.graph.number_of_nodes() and self._stored():
                # tags and contents written before the edge store existed: this folder's graph is all there is
                self.publish_all()
                with self.graph.lock:
                    self.graph.synced_to = asked
                return True
            with self.graph.lock:  # nothing shared yet: a graph left in the folder belongs to no store
                changed = self.graph.number_of_nodes() > 0
                if changed:
                    self.graph.replace([])
                self.graph.synced_to, self.graph.latest = asked, 0
            return changed
        records: list[tuple[int, str, dict]] = []
        offset = 0
        while True:
            got = self.collection.get(include=["documents", "metadatas"], limit=PAGE, offset=offset)
            records += self._records(got)
            if len(got["ids"]) < PAGE:
                break
            offset += PAGE
        records.sort(key=lambda r: (r[0], r[1]))
        with self.graph.lock:
            self.graph.replace(op for _, rid, doc in records for op in self._ops(rid, doc))
            self._generation = self.graph.generation  # its own replacement: the bookkeeping below belongs to it
            self.graph.latest = max([0] + [r[0] for r in records])
            self.graph.synced_to = asked  # records landing while the pages were read are in the next window
            for stamp, rid, _ in records:
                if stamp > asked - MARGIN_US:
                    self._note(stamp, rid)
        self.built = True
        return True

    def stats(self) -> dict:
        def when(stamp):
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp / 1e6)) if stamp else None

        return {
            "collection": self.collection.name,
            "records": self.collection.count(),
            "synced_to": when(self.graph.synced_to),
            "latest_record": when(self.graph.latest),
            "late_windows": self.late,
        }
