"""The content–tag graph (paper §3.1) in networkx, persisted as a snapshot plus a journal.

Vertices are ``t:<tag>`` and ``c:<content id>``. Edges carry ``kind``: ``det`` (the content was
annotated with the tag) or ``sim`` (cosine above δ_ct / δ_cc, with the cosine as ``weight``).

Persistence: every change is appended to ``graph.journal`` (one JSON line each, flushed and
fsynced) and ``compact()`` rewrites ``graph.pickle`` atomically (temp file + rename) before
emptying the journal. A crash mid-append leaves at most one torn last line, which replay skips;
a crash mid-compaction leaves the previous snapshot, and replaying operations twice is harmless
because every operation is idempotent. Callers serialise writers across processes with the knowledge base's file lock; within a
process, ``lock`` guards the in-memory graph, so readers never iterate it while a thread writes.
"""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path
from typing import Iterable

import networkx as nx

TAG, CONTENT = "t:", "c:"
COMPACT_AFTER_OPS = 20000


def tag_node(name: str) -> str:
    return TAG + name


def content_node(cid: str) -> str:
    return CONTENT + cid


class ContentTagGraph:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.snapshot_path = self.directory / "graph.pickle"
        self.journal_path = self.directory / "graph.journal"
        self.g = nx.Graph()
        self.lock = threading.RLock()
        self._stamp: tuple[int, int] | None = None  # (snapshot mtime_ns, inode)
        self._journal_offset = 0
        self._journal_ops = 0
        self.refresh()

    # ---- loading -------------------------------------------------------------------------
    def _snapshot_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.snapshot_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def refresh(self) -> bool:
        """Bring the in-memory graph up to date with what other writers persisted.

        Returns True when something written by another process (or another instance) was loaded.
        """
        with self.lock:
            return self._refresh()

    def _refresh(self) -> bool:
        stamp = self._snapshot_stamp()
        changed = False
        if stamp != self._stamp:
            if stamp is None:
                self.g = nx.Graph()
            else:
                with open(self.snapshot_path, "rb") as fh:
                    self.g = pickle.load(fh)
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
            self._apply(op)
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
        with self.lock:
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

    def _compact(self) -> None:
        tmp = self.snapshot_path.with_suffix(".pickle.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(self.g, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.snapshot_path)
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
