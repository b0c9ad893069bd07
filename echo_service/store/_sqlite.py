"""The default journal: one SQLite file in WAL mode, written by one thread.

Durability. The database runs in WAL mode with ``synchronous=FULL``: every
commit syncs the WAL before ``insert`` answers, so an acknowledged action
survives a power cut as well as a crash of the process. ``NORMAL`` would only
survive the process crashing (the OS could still lose the last commits), which
would break the promise that ``Assign`` answers after the action is durable.
The price of that sync is paid once per group of writes, not once per action,
because one writer thread commits everything that queued up meanwhile (see
``_writer``).

Threads. The writer thread owns the write connection and the write-side
counters (next sequence, unfinished count). Readers borrow connections from a
small pool; WAL lets them read while the writer writes, and they see only
committed data. Claims are writes, so they go through the writer too, which
is what makes two concurrent claimers never get the same action.

Checkpoints. Commits never copy the WAL back into the database: a thread of
the store does that every ``checkpoint_interval`` and the writer finishes it
between two groups now and then (see ``_checkpoint``), so no caller's commit
waits for a checkpoint.

Exclusivity. A data directory belongs to one process: an ``flock`` on
``echo.db.lock`` is held while the store is open, so ``recover`` may release
every claim without asking whose it was.

Memory stays bounded by the page caches, whatever the number of waiting
actions: nothing reads more rows than a call's ``limit``.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from echo_service import errors

from ._base import (
    ActionRecord,
    EventListener,
    EventRecord,
    Inserted,
    NewAction,
    State,
    Transition,
    second_state,
)
from ._checkpoint import Checkpointer
from ._pool import Pool
from ._writer import GroupWriter, Write, done_future

__all__ = ["SqliteStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1

# ``done`` mirrors "state is finished" so that partial indexes can name it; an
# action that finishes always loses its claim, so ``owner IS NOT NULL`` implies
# ``done = 0``. Every query that should use a partial index repeats the index's
# WHERE terms literally, which is what SQLite needs to pick it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS actions (
    seq             INTEGER PRIMARY KEY,  -- insertion order
    id              TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    payload         BLOB NOT NULL,
    state           TEXT NOT NULL,
    done            INTEGER NOT NULL DEFAULT 0,
    priority        INTEGER NOT NULL,
    due_at          REAL NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    parent_id       TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    outcome         BLOB,
    owner           TEXT,
    lease_until     REAL
);
CREATE INDEX IF NOT EXISTS actions_claim
    ON actions (priority DESC, due_at, seq) WHERE done = 0 AND owner IS NULL;
CREATE INDEX IF NOT EXISTS actions_due
    ON actions (due_at) WHERE done = 0 AND owner IS NULL;
CREATE INDEX IF NOT EXISTS actions_claimed
    ON actions (lease_until) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS actions_finished
    ON actions (updated_at) WHERE done = 1;
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY,
    action_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    state     TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    at        REAL NOT NULL,
    payload   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_action ON events (action_id, seq);
CREATE INDEX IF NOT EXISTS events_name ON events (name, seq);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key        TEXT PRIMARY KEY,
    action_id  TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS keys_created ON idempotency_keys (created_at);
CREATE INDEX IF NOT EXISTS keys_action ON idempotency_keys (action_id);
"""

_COLUMNS = (
    "id, name, payload, state, priority, due_at, attempt, idempotency_key, "
    "parent_id, created_at, updated_at, outcome, owner, lease_until"
)
_EVENT_COLUMNS = "seq, action_id, name, state, attempt, at, payload"
_PURGE_CHUNK = 2_000
_AUTOCHECKPOINT = 1000  # pages; SQLite's default
_IN_CHUNK = 500  # ids per "IN (...)" list


def _record(row: tuple[Any, ...]) -> ActionRecord:
    return ActionRecord(
        id=row[0],
        name=row[1],
        payload=row[2],
        state=State(row[3]),
        priority=row[4],
        due_at=row[5],
        attempt=row[6],
        idempotency_key=row[7],
        parent_id=row[8],
        created_at=row[9],
        updated_at=row[10],
        outcome=row[11],
        owner=row[12],
        lease_until=row[13],
    )


def _event(row: tuple[Any, ...]) -> EventRecord:
    return EventRecord(
        sequence=row[0],
        action_id=row[1],
        name=row[2],
        state=State(row[3]),
        attempt=row[4],
        at=row[5],
        payload=row[6],
    )


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(slots=True)
class _Row:
    """An action's row as a batch of ``record`` writes leaves it so far."""

    name: str
    was_done: bool
    """As the journal holds it before the batch."""
    done: bool
    attempt: int
    owner: str | None
    state: str | None = None
    """The state to write; None while only PROGRESS touched it."""
    due_at: float | None = None
    outcome: bytes | None = None
    dropped: bool = False


def _check(
    transitions: Sequence[Transition], rows: dict[str, _Row]
) -> list[tuple[Transition, str, int]] | errors.EchoError:
    """One write of a batch: each transition with its action's name and
    attempt, applied to ``rows``; or its failure, with ``rows`` untouched."""
    saved: dict[str, _Row] = {}
    made: list[tuple[Transition, str, int]] = []
    for t in transitions:
        row = rows.get(t.action_id)
        if row is None:
            failure: errors.EchoError = errors.NotFound(
                f"no action with id {t.action_id!r}"
            )
            break
        if t.owner is not None and row.owner != t.owner:
            failure = errors.FailedPrecondition(
                f"{t.owner} no longer holds the claim on {t.action_id}"
            )
            break
        if t.action_id not in saved:
            saved[t.action_id] = replace(row)
        attempt = row.attempt if t.attempt is None else t.attempt
        if t.state is State.PROGRESS:
            made.append((t, row.name, attempt))  # an event; the row stays
            continue
        row.attempt = attempt
        row.state = t.state.value
        row.done = t.state.finished
        if t.due_at is not None:
            row.due_at = t.due_at
        if t.outcome is not None:
            row.outcome = t.outcome
        if t.state.finished or t.release:
            row.dropped = True
            row.owner = None
        made.append((t, row.name, attempt))
    else:
        return made
    rows.update(saved)
    return failure


def _only(
    answers: list[tuple[T, list[EventRecord]] | errors.EchoError],
) -> tuple[T, list[EventRecord]]:
    """The one answer of a batch of one write, raised if it failed."""
    [answer] = answers
    if isinstance(answer, errors.EchoError):
        raise answer
    return answer


def _marks(count: int) -> str:
    return ",".join("?" * count)


def is_corruption(exc: BaseException) -> bool:
    """True for the failures that will not go away by themselves."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    return isinstance(exc, sqlite3.Error) and code in (
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
    )


def translate(exc: BaseException, doing: str, path: Path) -> errors.EchoError:
    """Turn a database failure into the error a caller can act on."""
    if not isinstance(exc, sqlite3.Error):
        if isinstance(exc, errors.EchoError):
            return exc
        return errors.StoreError(f"journal {path} failed while {doing}: {exc!r}")
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return errors.Unavailable(
            f"journal {path} is locked by another connection while {doing}; "
            "gave up after the busy timeout",
            retry_after=timedelta(seconds=1),
        )
    if code == sqlite3.SQLITE_FULL:
        return errors.StoreError(
            f"journal {path} is full (disk or size limit) while {doing}: {exc}"
        )
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return errors.StoreError(
            f"journal {path} is corrupt or not an Echo database while {doing}: {exc}"
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
        return errors.StoreError(
            f"journal {path} cannot be written (read-only or no permission) "
            f"while {doing}: {exc}"
        )
    if code == sqlite3.SQLITE_IOERR:
        return errors.StoreError(
            f"journal {path} hit an I/O error while {doing}: {exc}"
        )
    return errors.StoreError(f"journal {path} failed while {doing}: {exc}")


def _lock_directory(data_dir: Path) -> int:
    """Hold an exclusive flock on the data directory's lock file."""
    lock_path = data_dir / "echo.db.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise errors.StoreError(
            f"cannot open {lock_path}: {exc.strerror or exc}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise errors.Unavailable(
            f"journal in {data_dir} is in use by another process",
            retry_after=timedelta(seconds=1),
        ) from exc
    return fd


class _Journal:
    """The writer side: the write connection and what only the writer changes.

    Every method here runs on the writer thread (or in ``__init__`` before
    that thread exists). ``committed_sequence`` and ``committed_unfinished``
    are also read by other threads; they change only after a commit.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path,
        key_retention: float,
        clock: Callable[[], float],
    ) -> None:
        self.conn = conn
        self.path = path
        self.key_retention = key_retention
        self.clock = clock
        self.committed_sequence = max(
            conn.execute(
                "SELECT value FROM meta WHERE key = 'last_sequence'"
            ).fetchone()[0],
            conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0],
        )
        self.committed_unfinished = (
            conn.execute(
                "SELECT COUNT(*) FROM actions WHERE done = 0 AND owner IS NULL"
            ).fetchone()[0]
            + conn.execute(
                "SELECT COUNT(*) FROM actions WHERE owner IS NOT NULL"
            ).fetchone()[0]
        )
        self.sequence = self.committed_sequence
        self.unfinished = self.committed_unfinished
        self.corrupt = False
        """Set once a read or write found the file damaged; it stays set."""

    # -- Transaction -----------------------------------------------------------

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def run(self, write: Write[Any]) -> tuple[Any, list[EventRecord]]:
        sequence, unfinished = self.sequence, self.unfinished
        self.conn.execute("SAVEPOINT write")
        try:
            result: tuple[Any, list[EventRecord]] = write.apply()
        except errors.EchoError:
            self.conn.execute("ROLLBACK TO write")
            self.conn.execute("RELEASE write")
            self.sequence, self.unfinished = sequence, unfinished
            raise
        self.conn.execute("RELEASE write")
        return result

    def commit(self) -> None:
        # The events table holds the last sequence; meta keeps it only
        # across a purge of the newest events (see purge_actions), so a
        # commit writes no page of meta.
        self.conn.execute("COMMIT")
        self.committed_sequence = self.sequence
        self.committed_unfinished = self.unfinished

    def rollback(self) -> None:
        self.sequence = self.committed_sequence
        self.unfinished = self.committed_unfinished
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.warning("rollback of journal %s failed", self.path, exc_info=True)

    def failure(self, exc: BaseException) -> errors.EchoError:
        if is_corruption(exc):
            self.corrupt = True
        return translate(exc, "writing", self.path)

    def checkpoint(self, *, fallback: bool) -> None:
        """Between groups: finish the checkpoint thread's pass (see
        ``_checkpoint``), or with ``fallback`` go back to SQLite's own
        checkpoints inside commits once that thread is gone."""
        try:
            if fallback:
                self.conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            logger.warning("checkpoint of journal %s failed", self.path, exc_info=True)

    # -- writes, run inside a transaction --------------------------------------

    def _new_event(
        self,
        *,
        action_id: str,
        name: str,
        state: State,
        attempt: int,
        at: float,
        payload: bytes,
    ) -> EventRecord:
        self.sequence += 1
        return EventRecord(self.sequence, action_id, name, state, attempt, at, payload)

    def _append_events(self, events: Sequence[EventRecord]) -> None:
        self.conn.executemany(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.sequence,
                    e.action_id,
                    e.name,
                    e.state.value,
                    e.attempt,
                    e.at,
                    e.payload,
                )
                for e in events
            ],
        )

    def insert(
        self, actions: Sequence[NewAction]
    ) -> tuple[list[Inserted], list[EventRecord]]:
        now = self.clock()
        fresh_after = now - self.key_retention
        out: list[Inserted] = []
        new: list[ActionRecord] = []
        payloads: list[bytes] = []
        in_batch: dict[str, ActionRecord] = {}
        idle: bool | None = None  # no due unclaimed action; asked at most once
        for action in actions:
            key = action.idempotency_key
            if key is not None:
                first = in_batch.get(key)
                if first is None:
                    row = self.conn.execute(
                        f"SELECT {', '.join('a.' + c for c in _COLUMNS.split(', '))} "
                        "FROM idempotency_keys k JOIN actions a ON a.id = k.action_id "
                        "WHERE k.key = ? AND k.created_at > ?",
                        (key, fresh_after),
                    ).fetchone()
                    first = None if row is None else _record(row)
                if first is not None:
                    out.append(Inserted(first, duplicate=True))
                    continue
            owner = action.owner
            if owner is not None and action.only_if_idle:
                if idle is None:
                    idle = (
                        self.conn.execute(
                            "SELECT 1 FROM actions WHERE done = 0 AND owner IS NULL "
                            "AND due_at <= ? LIMIT 1",
                            (now,),
                        ).fetchone()
                        is None
                    )
                if not idle:
                    owner = None
            record = ActionRecord(
                id=action.id,
                name=action.name,
                payload=action.payload,
                state=second_state(action, owner) or State.ACCEPTED,
                priority=action.priority,
                due_at=action.due_at,
                attempt=0,
                idempotency_key=key,
                parent_id=action.parent_id,
                created_at=now,
                updated_at=now,
                outcome=None,
                owner=owner,
                lease_until=None if owner is None else action.lease_until,
            )
            if key is not None:
                in_batch[key] = record
            new.append(record)
            payloads.append(action.event_payload)
            out.append(Inserted(record, duplicate=False))
        if not new:
            return out, []
        try:
            self.conn.executemany(
                "INSERT INTO actions (id, name, payload, state, priority, due_at, "
                "idempotency_key, parent_id, created_at, updated_at, owner, "
                "lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        r.name,
                        r.payload,
                        r.state.value,
                        r.priority,
                        r.due_at,
                        r.idempotency_key,
                        r.parent_id,
                        now,
                        now,
                        r.owner,
                        r.lease_until,
                    )
                    for r in new
                ],
            )
        except sqlite3.IntegrityError as exc:
            raise errors.StoreError(
                f"an action id of the batch already exists: {exc}"
            ) from exc
        if in_batch:
            self.conn.executemany(
                "INSERT OR REPLACE INTO idempotency_keys (key, action_id, created_at) "
                "VALUES (?, ?, ?)",
                [(key, r.id, now) for key, r in in_batch.items()],
            )
        events: list[EventRecord] = []
        for r, payload in zip(new, payloads, strict=True):
            states: tuple[State, ...] = (State.ACCEPTED,)
            if r.state is not State.ACCEPTED:
                states = (State.ACCEPTED, r.state)
            events.extend(
                self._new_event(
                    action_id=r.id,
                    name=r.name,
                    state=state,
                    attempt=0,
                    at=now,
                    payload=payload,
                )
                for state in states
            )
        self._append_events(events)
        self.unfinished += len(new)
        return out, events

    def record_many(
        self, writes: Sequence[Sequence[Transition]]
    ) -> list[tuple[list[EventRecord], list[EventRecord]] | errors.EchoError]:
        """Several ``record`` writes at once, in order (see ``_writer``).

        One read of the rows they touch, every check made on those rows as
        the writes before would leave them, then one UPDATE per action (its
        last state, the other columns as the transitions leave them) and one
        insert of all events. A write that fails a check changes nothing.
        """
        now = self.clock()
        ids = sorted({t.action_id for ts in writes for t in ts})
        rows: dict[str, _Row] = {}
        for chunk in _chunks(ids):
            for action_id, name, done, attempt, owner in self.conn.execute(
                "SELECT id, name, done, attempt, owner FROM actions "
                f"WHERE id IN ({_marks(len(chunk))})",
                tuple(chunk),
            ):
                rows[action_id] = _Row(name, bool(done), bool(done), attempt, owner)
        answers = [_check(transitions, rows) for transitions in writes]
        changed = [r for r in rows.values() if r.state is not None]
        if changed:
            self.conn.executemany(
                "UPDATE actions SET state = ?, done = ?, attempt = ?, "
                "due_at = COALESCE(?, due_at), outcome = COALESCE(?, outcome), "
                "updated_at = ?, "
                "owner = CASE WHEN ? THEN NULL ELSE owner END, "
                "lease_until = CASE WHEN ? THEN NULL ELSE lease_until END "
                "WHERE id = ?",
                [
                    (
                        r.state,
                        int(r.done),
                        r.attempt,
                        r.due_at,
                        r.outcome,
                        now,
                        r.dropped,
                        r.dropped,
                        action_id,
                    )
                    for action_id, r in rows.items()
                    if r.state is not None
                ],
            )
        out: list[tuple[list[EventRecord], list[EventRecord]] | errors.EchoError] = []
        every: list[EventRecord] = []
        for answer in answers:
            if isinstance(answer, errors.EchoError):
                out.append(answer)
                continue
            events = [
                self._new_event(
                    action_id=t.action_id,
                    name=name,
                    state=t.state,
                    attempt=attempt,
                    at=now,
                    payload=t.event_payload,
                )
                for t, name, attempt in answer
            ]
            every.extend(events)
            out.append((events, events))
        self._append_events(every)
        self.unfinished += sum(int(r.was_done) - int(r.done) for r in changed)
        return out

    def claim(
        self,
        now: float,
        limit: int,
        owner: str,
        until: float | None,
        queued: Callable[[ActionRecord], bytes | None] | None,
    ) -> tuple[list[ActionRecord], list[EventRecord]]:
        conn = self.conn
        conn.execute(
            "UPDATE actions SET owner = NULL, lease_until = NULL "
            "WHERE owner IS NOT NULL AND lease_until <= ?",
            (now,),
        )
        # Walk the priorities present, highest first; within one priority the
        # index is ordered by due time, so the due rows are a prefix of it.
        # This never scans rows that are not yet due.
        picked: list[int] = []
        priority: int | None = None
        while len(picked) < limit:
            if priority is None:
                found = conn.execute(
                    "SELECT priority FROM actions WHERE done = 0 AND owner IS NULL "
                    "ORDER BY priority DESC LIMIT 1"
                ).fetchone()
            else:
                found = conn.execute(
                    "SELECT priority FROM actions WHERE done = 0 AND owner IS NULL "
                    "AND priority < ? ORDER BY priority DESC LIMIT 1",
                    (priority,),
                ).fetchone()
            if found is None:
                break
            priority = found[0]
            picked.extend(
                seq
                for (seq,) in conn.execute(
                    "SELECT seq FROM actions WHERE done = 0 AND owner IS NULL "
                    "AND priority = ? AND due_at <= ? ORDER BY due_at, seq LIMIT ?",
                    (priority, now, limit - len(picked)),
                )
            )
        records: dict[int, ActionRecord] = {}
        for start in range(0, len(picked), _IN_CHUNK):
            chunk = picked[start : start + _IN_CHUNK]
            for row in conn.execute(
                f"UPDATE actions SET owner = ?, lease_until = ? "
                f"WHERE seq IN ({_marks(len(chunk))}) RETURNING seq, {_COLUMNS}",
                (owner, until, *chunk),
            ):
                records[row[0]] = _record(row[1:])
        claimed = [records[seq] for seq in picked]
        if queued is None or not claimed:
            return claimed, []
        return self._queue(claimed, queued)

    def _queue(
        self,
        claimed: list[ActionRecord],
        queued: Callable[[ActionRecord], bytes | None],
    ) -> tuple[list[ActionRecord], list[EventRecord]]:
        """QUEUED, with its event, for each claimed action ``queued`` names."""
        at = self.clock()
        out: list[ActionRecord] = []
        events: list[EventRecord] = []
        for record in claimed:
            payload = queued(record)
            if payload is None:
                out.append(record)
                continue
            out.append(replace(record, state=State.QUEUED, updated_at=at))
            events.append(
                self._new_event(
                    action_id=record.id,
                    name=record.name,
                    state=State.QUEUED,
                    attempt=record.attempt,
                    at=at,
                    payload=payload,
                )
            )
        if events:
            self.conn.executemany(
                "UPDATE actions SET state = 'queued', updated_at = ? WHERE id = ?",
                [(at, e.action_id) for e in events],
            )
            self._append_events(events)
        return out, events

    def renew(self, ids: Sequence[str], owner: str, until: float) -> set[str]:
        held: set[str] = set()
        for chunk in _chunks(ids):
            held.update(
                action_id
                for (action_id,) in self.conn.execute(
                    f"UPDATE actions SET lease_until = ? WHERE owner = ? "
                    f"AND id IN ({_marks(len(chunk))}) RETURNING id",
                    (until, owner, *chunk),
                )
            )
        return held

    def release(self, ids: Sequence[str]) -> int:
        released = 0
        for chunk in _chunks(ids):
            released += self.conn.execute(
                "UPDATE actions SET owner = NULL, lease_until = NULL "
                f"WHERE owner IS NOT NULL AND id IN ({_marks(len(chunk))})",
                tuple(chunk),
            ).rowcount
        return released

    def recover(self) -> int:
        cursor = self.conn.execute(
            "UPDATE actions SET owner = NULL, lease_until = NULL "
            "WHERE owner IS NOT NULL"
        )
        return cursor.rowcount

    def purge_actions(self, finished_before: float) -> int:
        ids = [
            (action_id,)
            for (action_id,) in self.conn.execute(
                "SELECT id FROM actions WHERE done = 1 AND updated_at < ? LIMIT ?",
                (finished_before, _PURGE_CHUNK),
            )
        ]
        if ids:
            # The newest events may go: keep their sequence so that none is
            # ever given again (the open takes the larger of the two).
            self.conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'last_sequence'",
                (self.sequence,),
            )
            self.conn.executemany("DELETE FROM events WHERE action_id = ?", ids)
            self.conn.executemany(
                "DELETE FROM idempotency_keys WHERE action_id = ?", ids
            )
            self.conn.executemany("DELETE FROM actions WHERE id = ?", ids)
        return len(ids)

    def purge_keys(self, keys_before: float) -> int:
        cursor = self.conn.execute(
            "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM "
            "idempotency_keys WHERE created_at < ? LIMIT ?)",
            (keys_before, _PURGE_CHUNK),
        )
        return cursor.rowcount


class SqliteStore:
    """The ``Store`` contract on one SQLite file; see the module docstring."""

    shared = False
    """One process holds the file (see Exclusivity above)."""

    def __init__(
        self,
        path: Path,
        *,
        key_retention: timedelta = timedelta(hours=24),
        busy_timeout: timedelta = timedelta(seconds=5),
        clock: Callable[[], float] = time.time,
        max_group_weight: int = 20_000,
        readers: int = 4,
        checkpoint_interval: timedelta = timedelta(milliseconds=200),
        wal_limit_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        """Open (creating if needed) the journal at ``path``.

        Args:
            path: the database file; its directory is created if missing.
            key_retention: how long an idempotency key keeps recognising
                repeats.
            busy_timeout: how long a statement waits for a lock held by
                another connection before giving up with ``Unavailable``.
            clock: epoch seconds, for created/updated times and key expiry.
            max_group_weight: about how many rows one group commit may touch.
            readers: read connections kept open for reuse.
            checkpoint_interval: how often a thread of the store copies the
                WAL into the database (see ``_checkpoint``); commits never do.
            wal_limit_bytes: once the log is this long after a pass of that
                thread, the writer finishes the checkpoint between two groups
                so that the log starts over.

        Raises:
            StoreError: the directory or file cannot be created, read or
                written, or the file is not a journal.
            Unavailable: another process holds the directory, or the database
                stayed locked for longer than ``busy_timeout``.
        """
        self.path = path
        self._busy_ms = int(busy_timeout.total_seconds() * 1000)
        self._closed = False
        self._close_lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.StoreError(
                f"cannot create journal directory {path.parent}: {exc.strerror or exc}"
            ) from exc
        self._lock_fd = _lock_directory(path.parent)
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise errors.StoreError(
                    f"journal {path} cannot use WAL mode (got {mode!r})"
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA cache_size = -16384")  # KiB: 16 MiB for the writer
            conn.execute("PRAGMA temp_store = MEMORY")
            # After a checkpoint the WAL file is cut back to this size, so a
            # burst of writes does not leave a huge log behind.
            conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
            # No checkpoint inside a commit: the checkpoint thread does them.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._migrate(conn)
            self._journal = _Journal(
                conn,
                path=path,
                key_retention=key_retention.total_seconds(),
                clock=clock,
            )
        except BaseException as exc:
            if conn is not None:
                conn.close()
            os.close(self._lock_fd)
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, "opening", path) from exc
            raise
        self._readers = Pool(self._connect_reader, keep=readers)
        self._autocheckpoint = False  # writer thread only: back to SQLite's
        self._checkpointer = Checkpointer(
            self._connect,
            path=path,
            interval=checkpoint_interval,
            limit_bytes=wal_limit_bytes,
            name=f"echo-journal-checkpoint-{path.name}",
        )
        self._writer = GroupWriter(
            self._journal,
            name=f"echo-journal-{path.name}",
            max_group_weight=max_group_weight,
            upkeep=self._upkeep,
        )
        logger.debug(
            "journal %s open: %d unfinished, last sequence %d",
            path,
            self._journal.committed_unfinished,
            self._journal.committed_sequence,
        )

    def _upkeep(self) -> None:
        """Between groups, on the writer thread: the writer's part of a
        checkpoint (see ``_checkpoint``)."""
        checkpointer = self._checkpointer
        if checkpointer.due or checkpointer.failed:
            checkpointer.due = False
            fallback, self._autocheckpoint = (
                checkpointer.failed and not self._autocheckpoint,
                checkpointer.failed,
            )
            if fallback or not checkpointer.failed:
                self._journal.checkpoint(fallback=fallback)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_ms / 1000,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # opened here, used by the writer thread
        )
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise translate(exc, "opening a reader", self.path) from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # Always a write, even when the schema exists: a file we can read but
        # not write must fail here, at open, not at the first Assign.
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if found is not None and found[0] > SCHEMA_VERSION:
                raise errors.StoreError(
                    f"journal {self.path} has schema {found[0]}, newer than this "
                    f"version of Echo understands ({SCHEMA_VERSION})"
                )
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('last_sequence', 0)"
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?)",
                (int(time.time()),),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- writes --------------------------------------------------------------

    def insert(self, actions: Sequence[NewAction]) -> list[Inserted]:
        return self._submit_insert(actions).result()

    def insert_async(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        return self._submit_insert(actions)

    def _submit_insert(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        actions = list(actions)
        if not actions:
            return done_future([])
        return self._writer.submit(
            lambda: self._journal.insert(actions), weight=2 * len(actions)
        )

    def record(
        self, transitions: Sequence[Transition], *, linger: timedelta = timedelta(0)
    ) -> Future[list[EventRecord]]:
        transitions = list(transitions)
        return self._writer.submit(
            lambda: _only(self._journal.record_many([transitions])),
            weight=max(1, len(transitions)),
            linger=linger.total_seconds(),
            many=self._journal.record_many,
            payload=transitions,
        )

    def claim(
        self,
        *,
        now: float,
        limit: int,
        owner: str,
        lease: timedelta | None = None,
        queued: Callable[[ActionRecord], bytes | None] | None = None,
    ) -> list[ActionRecord]:
        if limit <= 0:
            return []
        until = None if lease is None else now + lease.total_seconds()
        return self._writer.call(
            lambda: self._journal.claim(now, limit, owner, until, queued),
            weight=2 * limit,
        )

    def renew(
        self, action_ids: Iterable[str], *, owner: str, now: float, lease: timedelta
    ) -> set[str]:
        ids = list(action_ids)
        until = now + lease.total_seconds()
        return self._writer.call(
            lambda: (self._journal.renew(ids, owner, until), []),
            weight=max(1, len(ids)),
        )

    def release(self, action_ids: Iterable[str]) -> None:
        ids = list(action_ids)
        if ids:
            self._writer.call(lambda: (self._journal.release(ids), []), weight=len(ids))

    def recover(self, owner: str) -> int:
        released: int = self._writer.call(lambda: (self._journal.recover(), []))
        logger.debug("journal %s recovered: %d claims released", self.path, released)
        return released

    def purge(self, *, finished_before: float, keys_before: float) -> int:
        # In chunks, each its own write, so a large purge never holds the
        # writer (and every Assign behind it) for long.
        total = 0
        while True:
            count: int = self._writer.call(
                lambda: (self._journal.purge_actions(finished_before), []),
                weight=3 * _PURGE_CHUNK,
            )
            total += count
            if count < _PURGE_CHUNK:
                break
        while (
            self._writer.call(
                lambda: (self._journal.purge_keys(keys_before), []),
                weight=_PURGE_CHUNK,
            )
            >= _PURGE_CHUNK
        ):
            pass
        return total

    def flush(self) -> None:
        self._writer.flush()

    # -- reads -----------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._readers.borrow() as conn:
            try:
                yield conn
            except sqlite3.Error as exc:
                if is_corruption(exc):
                    self._journal.corrupt = True
                raise translate(exc, doing, self.path) from exc

    def get(self, action_id: str) -> ActionRecord | None:
        with self._reading("reading an action") as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM actions WHERE id = ?", (action_id,)
            ).fetchone()
        return None if row is None else _record(row)

    def events_after(
        self,
        sequence: int,
        *,
        limit: int,
        action_ids: frozenset[str] = frozenset(),
        names: frozenset[str] = frozenset(),
    ) -> list[EventRecord]:
        # Each filter reads through its index and never more than ``limit``
        # rows per key: an action filter (a handful of events per action)
        # through events_action, names checked on those rows; a names filter
        # through events_name, one query per name merged in sequence order,
        # so a name with millions of events costs ``limit`` rows, not a scan
        # or a sort of them all.
        with self._reading("reading events") as conn:
            if action_ids:
                where = f"action_id IN ({_marks(len(action_ids))}) AND seq > ?"
                params: list[Any] = [*sorted(action_ids), sequence]
                if names:
                    where += f" AND name IN ({_marks(len(names))})"
                    params.extend(sorted(names))
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events INDEXED BY events_action "
                    f"WHERE {where} ORDER BY seq LIMIT ?",
                    (*params, limit),
                ).fetchall()
            elif names:
                per_name = [
                    conn.execute(
                        f"SELECT {_EVENT_COLUMNS} FROM events INDEXED BY events_name "
                        "WHERE name = ? AND seq > ? ORDER BY seq LIMIT ?",
                        (name, sequence, limit),
                    ).fetchall()
                    for name in sorted(names)
                ]
                rows = list(
                    itertools.islice(
                        heapq.merge(*per_name, key=lambda row: row[0]), limit
                    )
                )
            else:
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (sequence, limit),
                ).fetchall()
        return [_event(row) for row in rows]

    def next_due(self) -> float | None:
        with self._reading("reading the next due time") as conn:
            due = conn.execute(
                "SELECT MIN(due_at) FROM actions WHERE done = 0 AND owner IS NULL"
            ).fetchone()[0]
            lease = conn.execute(
                "SELECT MIN(lease_until) FROM actions WHERE owner IS NOT NULL"
            ).fetchone()[0]
        found = [t for t in (due, lease) if t is not None]
        return min(found) if found else None

    def waiting(self) -> int:
        return int(self._journal.committed_unfinished)

    def last_sequence(self) -> int:
        return int(self._journal.committed_sequence)

    def add_listener(self, listener: EventListener) -> None:
        self._writer.add_listener(listener)

    def healthy(self) -> bool:
        # A lock or a full disk can pass; a damaged file does not mend itself,
        # so corruption keeps the store unhealthy until an operator steps in.
        return self._writer.healthy and not self._journal.corrupt

    @property
    def commits(self) -> int:
        """Transactions committed since open (one per group of writes)."""
        return self._writer.commits

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the file; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._checkpointer.close()
        self._writer.close()
        self._readers.close()
        try:
            # Fold the WAL back into the database so the next open starts
            # with a short log; best effort.
            self._journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            logger.warning("checkpoint of journal %s failed", self.path, exc_info=True)
        self._journal.conn.close()
        os.close(self._lock_fd)
