"""The annotation queue's records, kept in the knowledge base (``queue.sqlite``).

A person reviewing a file record by record (the page's Queue tab, ``agent.annotation``) needs
what is left, what each record was suggested and what was decided to survive a page reload and
a restart of the server. This module stores exactly that — one row per record: its text, its
place in the file, its status, the suggested tags with their confidence and the text's
embedding (so that a decision can find the records it may change without encoding them again),
and the decision. What a decision teaches is not kept here: it goes through the one ``learn``
path into the knowledge base's samples and graph.

Statuses: ``open`` (not decided), ``skipped`` (put back behind the open ones), ``accepted`` (the
suggested tags, as suggested), ``changed`` (some added or removed), ``rejected`` (no suggested tag
fits). SQLite's own locking serialises writers, so several people can work on one queue.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np

from .errors import InputError

FILE_NAME = "queue.sqlite"
Status = Literal["open", "skipped", "accepted", "changed", "rejected"]
DECIDED = ("accepted", "changed", "rejected")
Order = Literal["uncertain", "score", "file"]
ORDERS: dict[str, str] = {  # how the next record is chosen among the undecided ones (skipped ones come after the open ones)
    "uncertain": "uncertainty DESC, position",  # the record a person is expected to correct most first
    "score": "top DESC, position",  # the surest suggestion first (for bulk acceptance)
    "file": "position",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    title TEXT,
    status TEXT NOT NULL DEFAULT 'open',
    suggestions TEXT NOT NULL DEFAULT '[]',
    preselected TEXT NOT NULL DEFAULT '[]',
    top REAL NOT NULL DEFAULT 0,
    uncertainty REAL NOT NULL DEFAULT 0,
    scored_at REAL NOT NULL DEFAULT 0,
    vector BLOB,
    correct TEXT NOT NULL DEFAULT '[]',
    incorrect TEXT NOT NULL DEFAULT '[]',
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS records_status ON records (status);
"""


@dataclass
class QueueRecord:
    id: str
    position: int
    text: str
    title: str | None
    status: Status
    suggestions: list[tuple[str, float | None]] = field(default_factory=list)  # best first; None: no confidence (no trained ranker)
    preselected: list[str] = field(default_factory=list)  # the suggestions kept at the threshold (what the Tag page shows)
    correct: list[str] = field(default_factory=list)
    incorrect: list[str] = field(default_factory=list)
    scored_at: float = 0.0

    @property
    def decided(self) -> bool:
        return self.status in DECIDED


@dataclass
class QueueCounts:
    total: int = 0
    open: int = 0
    skipped: int = 0
    accepted: int = 0
    changed: int = 0
    rejected: int = 0

    @property
    def decided(self) -> int:
        return self.accepted + self.changed + self.rejected

    @property
    def acceptance_rate(self) -> float | None:
        """The share of decided records whose suggestion was accepted as it was."""
        return self.accepted / self.decided if self.decided else None


def uncertainty(suggestions: Iterable[tuple[str, float | None]], threshold: float) -> float:
    """How much a person is expected to correct on a record: the expected number of suggestions
    whose pre-selection is wrong — a pre-selected tag (confidence ≥ threshold) is wrong with
    probability 1 − p, a tag left out is missed with probability p (expected-error reduction's
    quantity, Roy & McCallum 2001, for calibrated multi-label suggestions). 0: every suggestion
    certain either way; a record whose first tag is a coin toss scores about 0.5, one with several
    doubtful tags more. With no confidence (no trained ranker) every record scores the same."""
    scores = [p for _, p in suggestions if p is not None]
    if not scores:
        return 1.0
    return round(sum(1.0 - p if p >= threshold else p for p in scores), 4)


class QueueStore:
    """The queue of one knowledge base (``FILE_NAME`` in its folder)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / FILE_NAME
        self._ready = False  # the file's schema and journal mode are set once per store

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=30)
        except sqlite3.OperationalError as exc:
            raise InputError(f"the annotation queue ({self.path.name} in the knowledge base) cannot be opened ({exc})") from exc
        connection.row_factory = sqlite3.Row
        with closing(connection) as db:
            if not self._ready:
                db.execute("PRAGMA journal_mode=WAL")  # kept by the file
                db.executescript(_SCHEMA)
                self._ready = True
            with db:  # one transaction: committed on success, rolled back on an error
                yield db

    def add(self, items: Iterable[tuple[str, str, str | None]], vectors: np.ndarray) -> tuple[int, int]:
        """Append records ``(id, text, title)`` with their embeddings, in order; a record whose id
        is queued already is left as it is. Returns (added, already queued)."""
        items = list(items)
        with self._db() as db:
            start = db.execute("SELECT COALESCE(MAX(position), 0) FROM records").fetchone()[0]
            added = 0
            for (rid, text, title), vector in zip(items, vectors):
                cur = db.execute(
                    "INSERT OR IGNORE INTO records (id, position, text, title, vector) VALUES (?, ?, ?, ?, ?)",
                    (rid, start + added + 1, text, title, np.asarray(vector, dtype=np.float32).tobytes()),
                )
                added += cur.rowcount
        return added, len(items) - added

    def set_suggestions(self, scored: Iterable[tuple[str, list[tuple[str, float | None]], list[str], float]]) -> None:
        """Store each record's suggestions (best first), the pre-selected ones and its ``uncertainty``;
        a decided record keeps its own."""
        now = time.time()
        rows = [
            (
                json.dumps([[t, p] for t, p in suggestions]),
                json.dumps(preselected),
                max((p for _, p in suggestions if p is not None), default=0.0),
                u,
                now,
                rid,
            )
            for rid, suggestions, preselected, u in scored
        ]
        with self._db() as db:
            db.executemany(
                "UPDATE records SET suggestions = ?, preselected = ?, top = ?, uncertainty = ?, scored_at = ? "
                "WHERE id = ? AND status IN ('open', 'skipped')",
                rows,
            )

    def next(self, order: Order = "uncertain", after: Iterable[str] = (), match: str | None = None) -> QueueRecord | None:
        """The next undecided record in ``order``: open ones first, then skipped ones; ``after``: ids
        to pass over (the one on screen); ``match``: only records whose text or suggested tags contain it."""
        found = self.listing(order, match, 1, after)
        return found[0] if found else None

    def listing(
        self, order: Order = "uncertain", match: str | None = None, limit: int = 50, after: Iterable[str] = ()
    ) -> list[QueueRecord]:
        """The undecided records in ``order`` (open ones first), at most ``limit``; ``match``: only
        those whose text or suggested tags contain it (case-insensitive); ``after``: ids to pass over."""
        if order not in ORDERS:
            raise InputError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
        after = list(after)
        where, values = ["status IN ('open', 'skipped')"], list(after)
        if after:
            where.append(f"id NOT IN ({','.join('?' * len(after))})")
        if match and match.strip():
            pattern = "%" + match.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(text LIKE ? ESCAPE '\\' OR suggestions LIKE ? ESCAPE '\\')")
            values += [pattern, pattern]
        with self._db() as db:
            rows = db.execute(
                f"SELECT * FROM records WHERE {' AND '.join(where)} ORDER BY status = 'skipped', {ORDERS[order]} LIMIT ?",
                [*values, max(int(limit), 0)],
            ).fetchall()
        return [_record(row) for row in rows]

    def get(self, rid: str) -> QueueRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM records WHERE id = ?", (rid,)).fetchone()
            return _record(row) if row else None

    def decide(self, rid: str, status: Status, correct: Iterable[str], incorrect: Iterable[str]) -> bool:
        """Record a decision on an undecided record; False when it was decided already (by someone else)."""
        with self._db() as db:
            cur = db.execute(
                "UPDATE records SET status = ?, correct = ?, incorrect = ?, decided_at = ? WHERE id = ? AND status IN ('open', 'skipped')",
                (status, json.dumps(list(correct)), json.dumps(list(incorrect)), time.time(), rid),
            )
            return cur.rowcount == 1

    def skip(self, rid: str) -> None:
        with self._db() as db:
            db.execute("UPDATE records SET status = 'skipped' WHERE id = ? AND status = 'open'", (rid,))

    def undecided(self, match: str | None = None) -> list[QueueRecord]:
        """Every undecided record (``match``: whose text or suggested tags contain it), in file order (one query)."""
        return self.listing("file", match, limit=2**31 - 1)

    def undecided_ids(self) -> list[str]:
        with self._db() as db:
            return [row[0] for row in db.execute("SELECT id FROM records WHERE status IN ('open', 'skipped') ORDER BY position")]

    def vectors(self) -> dict[str, np.ndarray]:
        """Every record's embedding, by id."""
        with self._db() as db:
            return {row[0]: np.frombuffer(row[1], dtype=np.float32) for row in db.execute("SELECT id, vector FROM records") if row[1]}

    def counts(self) -> QueueCounts:
        with self._db() as db:
            rows = db.execute("SELECT status, COUNT(*) FROM records GROUP BY status").fetchall()
        counts = QueueCounts(**{status: n for status, n in rows if status in QueueCounts.__dataclass_fields__})
        counts.total = sum(n for _, n in rows)
        return counts


def _record(values: sqlite3.Row) -> QueueRecord:
    return QueueRecord(
        values["id"],
        values["position"],
        values["text"],
        values["title"],
        values["status"],
        [(t, p) for t, p in json.loads(values["suggestions"])],
        json.loads(values["preselected"]),
        json.loads(values["correct"]),
        json.loads(values["incorrect"]),
        values["scored_at"],
    )
