"""A journal in PostgreSQL, shared by several Echo replicas.

Claims. Each claim is a short transaction of its own that takes rows with
``FOR UPDATE SKIP LOCKED``, so replicas claiming at once never wait for each
other and never get the same action. Every claim here has a lease: the
caller's, which the caller renews, or, when the caller gives none, the
store's own (``lease``), which the store's event thread renews for as long
as the store runs. A lease that ran out lets any replica take the action,
which is how the work of a replica that died comes back without anyone
having to know its name.

Sequence numbers. Every transaction that journals events first locks the
``last_sequence`` row of ``echo_meta`` and holds it until it commits, so
event numbers are assigned in commit order across all replicas, with no gaps:
when a reader sees number N committed, every number below N is committed
too. The price is that event-writing transactions of all replicas take turns;
group commit (one transaction per group of writes, see ``_writer``) keeps
each turn short and shared by many writes. Claims, releases, renewals and
purges journal no events and take no such lock. The same lock serialises
the idempotency check and the count of unfinished actions.

Fan-out. Each commit that journals events sends ``NOTIFY echo_events``. Every
store has an event thread that LISTENs, reads the new events in sequence
order and hands them to its listeners, so a listener on any replica sees the
events of all replicas. The thread also polls, so a lost notification (a
dropped connection) delays events but never loses them. Unlike the
single-node stores, listeners therefore run on that event thread, not on the
writer thread.

Fencing. A transition that names its ``owner`` is written only while that
owner holds the claim (checked under the row lock ``record`` takes), so a
replica whose lease ran out during a pause longer than the lease, and whose
action another replica took over, cannot record an outcome over the new
holder's: its write fails with ``FailedPrecondition``.

Limits. ``recover(owner)`` releases only the claims of ``owner``; a replica
that restarts under a new name gets its old work back when the leases run
out. Fencing guards the journal, not the world: the handler of the replica
that lost its lease may have done its side effects already, and the action
runs again elsewhere, so delivery to handlers stays at-least-once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors

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
from ._pool import Pool
from ._writer import GroupWriter, Write, done_future

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHANNEL = "echo_events"
_MIGRATION_LOCK = 0x6563686F  # advisory lock id: replicas create the schema in turn
_PURGE_CHUNK = 2_000
_EVENT_PAGE = 1_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS echo_meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS echo_actions (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    state           TEXT NOT NULL,
    done            BOOLEAN NOT NULL DEFAULT false,
    priority        BIGINT NOT NULL,
    due_at          DOUBLE PRECISION NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    parent_id       TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    outcome         BYTEA,
    owner           TEXT,
    lease_until     DOUBLE PRECISION,
    renewed         BOOLEAN NOT NULL DEFAULT false  -- the store keeps the lease
);
CREATE INDEX IF NOT EXISTS echo_actions_claim ON echo_actions
    (priority DESC, due_at, seq) WHERE NOT done AND owner IS NULL;
CREATE INDEX IF NOT EXISTS echo_actions_due ON echo_actions
    (due_at) WHERE NOT done AND owner IS NULL;
CREATE INDEX IF NOT EXISTS echo_actions_claimed ON echo_actions
    (owner, lease_until) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS echo_actions_lease ON echo_actions
    (lease_until) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS echo_actions_finished ON echo_actions
    (updated_at) WHERE done;
CREATE TABLE IF NOT EXISTS echo_events (
    seq       BIGINT PRIMARY KEY,
    action_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    state     TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    at        DOUBLE PRECISION NOT NULL,
    payload   BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS echo_events_action ON echo_events (action_id, seq);
CREATE INDEX IF NOT EXISTS echo_events_name ON echo_events (name, seq);
CREATE TABLE IF NOT EXISTS echo_idempotency_keys (
    key        TEXT PRIMARY KEY,
    action_id  TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS echo_keys_created ON echo_idempotency_keys (created_at);
CREATE INDEX IF NOT EXISTS echo_keys_action ON echo_idempotency_keys (action_id);
INSERT INTO echo_meta (key, value) VALUES
    ('last_sequence', 0), ('unfinished', 0), ('schema_version', 0)
    ON CONFLICT (key) DO NOTHING;
"""

_COLUMNS = (
    "id, name, payload, state, priority, due_at, attempt, idempotency_key, "
    "parent_id, created_at, updated_at, outcome, owner, lease_until"
)
_EVENT_COLUMNS = "seq, action_id, name, state, attempt, at, payload"


def _record(row: Sequence[Any]) -> ActionRecord:
    return ActionRecord(
        id=row[0],
        name=row[1],
        payload=bytes(row[2]),
        state=State(row[3]),
        priority=row[4],
        due_at=row[5],
        attempt=row[6],
        idempotency_key=row[7],
        parent_id=row[8],
        created_at=row[9],
        updated_at=row[10],
        outcome=None if row[11] is None else bytes(row[11]),
        owner=row[12],
        lease_until=row[13],
    )


def _event(row: Sequence[Any]) -> EventRecord:
    return EventRecord(
        sequence=row[0],
        action_id=row[1],
        name=row[2],
        state=State(row[3]),
        attempt=row[4],
        at=row[5],
        payload=bytes(row[6]),
    )


def translate(exc: BaseException, doing: str) -> errors.EchoError:
    """Turn a database failure into the error a caller can act on."""
    if isinstance(exc, errors.EchoError):
        return exc
    if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
        return errors.Unavailable(
            f"journal database stayed locked while {doing}; gave up after the "
            "lock timeout",
            retry_after=timedelta(seconds=1),
        )
    if isinstance(exc, pg_errors.DiskFull | pg_errors.InsufficientResources):
        return errors.StoreError(f"journal database is full while {doing}: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        return errors.Unavailable(
            f"journal database unreachable while {doing}: {exc}",
            retry_after=timedelta(seconds=1),
        )
    if isinstance(exc, psycopg.Error):
        return errors.StoreError(f"journal database failed while {doing}: {exc}")
    return errors.StoreError(f"journal database failed while {doing}: {exc!r}")


class _Journal:
    """The writer side: the write connection and the group transaction.

    Every method runs on the writer thread. ``committed_sequence`` is also
    read by other threads; it changes only after a commit.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        key_retention: float,
        lease: float,
        clock: Callable[[], float],
    ) -> None:
        self._connect = connect
        self.conn = connect()
        self.key_retention = key_retention
        self.lease = lease
        """Seconds of the store's own lease, for owned inserts without one."""
        self.clock = clock
        self.committed_sequence = 0
        self.sequence = self._meta_sequence = 0
        self.unfinished = self._meta_unfinished = 0

    # -- Transaction -----------------------------------------------------------

    def begin(self) -> None:
        if self.conn.closed or self.conn.broken:
            logger.warning("journal write connection lost; reconnecting")
            self.conn = self._connect()
        self.conn.execute("BEGIN")
        # The lock every event-journaling transaction takes first, in the
        # same order: it serialises numbering and keeps it gap-free.
        rows = dict(
            self.conn.execute(
                "SELECT key, value FROM echo_meta "
                "WHERE key IN ('last_sequence', 'unfinished') ORDER BY key FOR UPDATE"
            ).fetchall()
        )
        self.sequence = self._meta_sequence = rows["last_sequence"]
        self.unfinished = self._meta_unfinished = rows["unfinished"]

    def run(self, write: Write[Any]) -> tuple[Any, list[EventRecord]]:
        sequence, unfinished = self.sequence, self.unfinished
        self.conn.execute("SAVEPOINT write")
        try:
            result: tuple[Any, list[EventRecord]] = write.apply()
        except errors.EchoError:
            self.conn.execute("ROLLBACK TO SAVEPOINT write")
            self.conn.execute("RELEASE SAVEPOINT write")
            self.sequence, self.unfinished = sequence, unfinished
            raise
        self.conn.execute("RELEASE SAVEPOINT write")
        return result

    def commit(self) -> None:
        if self.unfinished != self._meta_unfinished:
            self.conn.execute(
                "UPDATE echo_meta SET value = %s WHERE key = 'unfinished'",
                (self.unfinished,),
            )
        if self.sequence != self._meta_sequence:
            self.conn.execute(
                "UPDATE echo_meta SET value = %s WHERE key = 'last_sequence'",
                (self.sequence,),
            )
            self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(self.sequence)))
        self.conn.execute("COMMIT")
        self.committed_sequence = self.sequence

    def rollback(self) -> None:
        try:
            if not self.conn.closed and not self.conn.broken:
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            logger.warning("rollback of the journal transaction failed", exc_info=True)

    def failure(self, exc: BaseException) -> errors.EchoError:
        return translate(exc, "writing")

    # -- writes ------------------------------------------------------------------

    def _new_events(
        self, rows: Sequence[tuple[str, str, State, int, float, bytes]]
    ) -> list[EventRecord]:
        events = []
        for action_id, name, state, attempt, at, payload in rows:
            self.sequence += 1
            events.append(
                EventRecord(self.sequence, action_id, name, state, attempt, at, payload)
            )
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO echo_events ({_EVENT_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
        return events

    def insert(
        self, actions: Sequence[NewAction]
    ) -> tuple[list[Inserted], list[EventRecord]]:
        now = self.clock()
        fresh_after = now - self.key_retention
        out: list[Inserted] = []
        new: list[tuple[ActionRecord, bytes]] = []
        owned_from: list[NewAction] = []  # the NewAction of each entry of new
        in_batch: dict[str, ActionRecord] = {}
        idle: bool | None = None  # no due unclaimed action; asked at most once
        for action in actions:
            key = action.idempotency_key
            if key is not None:
                first = in_batch.get(key)
                if first is None:
                    row = self.conn.execute(
                        f"SELECT {', '.join('a.' + c for c in _COLUMNS.split(', '))} "
                        "FROM echo_idempotency_keys k "
                        "JOIN echo_actions a ON a.id = k.action_id "
                        "WHERE k.key = %s AND k.created_at > %s",
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
                            "SELECT 1 FROM echo_actions WHERE NOT done "
                            "AND owner IS NULL AND due_at <= %s LIMIT 1",
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
                lease_until=(
                    None
                    if owner is None
                    else now + self.lease
                    if action.lease_until is None
                    else action.lease_until
                ),
            )
            if key is not None:
                in_batch[key] = record
            new.append((record, action.event_payload))
            owned_from.append(action)
            out.append(Inserted(record, duplicate=False))
        if not new:
            return out, []
        try:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO echo_actions (id, name, payload, state, priority, "
                    "due_at, idempotency_key, parent_id, created_at, updated_at, "
                    "owner, lease_until, renewed) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                            # Owned without a lease of its own: the store
                            # keeps renewing it, as for such a claim.
                            r.owner is not None and a.lease_until is None,
                        )
                        for (r, _), a in zip(new, owned_from, strict=True)
                    ],
                )
        except pg_errors.UniqueViolation as exc:
            raise errors.StoreError(
                f"an action id of the batch already exists: {exc}"
            ) from exc
        if in_batch:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO echo_idempotency_keys (key, action_id, created_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                    "action_id = excluded.action_id, created_at = excluded.created_at",
                    [(key, r.id, now) for key, r in in_batch.items()],
                )
        events = self._new_events(
            [
                (r.id, r.name, state, 0, now, payload)
                for r, payload in new
                for state in (
                    (State.ACCEPTED,)
                    if r.state is State.ACCEPTED
                    else (State.ACCEPTED, r.state)
                )
            ]
        )
        self.unfinished += len(new)
        return out, events

    def record(
        self, transitions: Sequence[Transition]
    ) -> tuple[list[EventRecord], list[EventRecord]]:
        now = self.clock()
        pending: list[tuple[str, str, State, int, float, bytes]] = []
        for t in transitions:
            row = self.conn.execute(
                "SELECT name, done, attempt, owner FROM echo_actions "
                "WHERE id = %s FOR UPDATE",
                (t.action_id,),
            ).fetchone()
            if row is None:
                raise errors.NotFound(f"no action with id {t.action_id!r}")
            name, done, attempt, owner = row
            if t.owner is not None and owner != t.owner:
                # The row lock keeps a claimer from taking it between this
                # check and the update; the savepoint undoes earlier ones.
                raise errors.FailedPrecondition(
                    f"{t.owner} no longer holds the claim on {t.action_id}"
                )
            if t.attempt is not None:
                attempt = t.attempt
            if t.state is not State.PROGRESS:
                finished = t.state.finished
                drop = finished or t.release
                self.conn.execute(
                    "UPDATE echo_actions SET state = %s, done = %s, attempt = %s, "
                    "due_at = COALESCE(%s, due_at), "
                    "outcome = COALESCE(%s, outcome), updated_at = %s, "
                    "owner = CASE WHEN %s THEN NULL ELSE owner END, "
                    "lease_until = CASE WHEN %s THEN NULL ELSE lease_until END, "
                    "renewed = CASE WHEN %s THEN false ELSE renewed END "
                    "WHERE id = %s",
                    (
                        t.state.value,
                        finished,
                        attempt,
                        t.due_at,
                        t.outcome,
                        now,
                        drop,
                        drop,
                        drop,
                        t.action_id,
                    ),
                )
                self.unfinished += int(done) - int(finished)
            pending.append((t.action_id, name, t.state, attempt, now, t.event_payload))
        events = self._new_events(pending)
        return events, events


class PostgresStore:
    """The ``Store`` contract on PostgreSQL; see the module docstring."""

    shared = True
    """Any number of replicas claim from the same database."""

    def __init__(
        self,
        url: str,
        *,
        key_retention: timedelta = timedelta(hours=24),
        busy_timeout: timedelta = timedelta(seconds=5),
        clock: Callable[[], float] = time.time,
        poll_interval: timedelta = timedelta(milliseconds=500),
        lease: timedelta = timedelta(seconds=30),
        max_group_weight: int = 20_000,
        readers: int = 8,
    ) -> None:
        """Connect to the journal database, creating the tables if needed.

        Args:
            url: a libpq connection URL, ``postgresql://user@host:port/db``.
            key_retention: how long an idempotency key recognises repeats.
            busy_timeout: how long a statement waits for a lock (or for the
                server to answer a connect) before failing with
                ``Unavailable``.
            clock: epoch seconds, for created/updated times and key expiry.
            poll_interval: how often the event thread looks for new events
                when no notification arrives.
            lease: the lease of claims made without one; the store renews
                it every third of its length while it runs, so the claims
                of a replica that died come free after at most this long.
            max_group_weight: about how many rows one group commit may touch.
            readers: connections kept open for reads and claims.

        Raises:
            Unavailable: the server cannot be reached or stayed locked.
            StoreError: the schema is newer than this Echo, or the server
                refused the schema.
        """
        self._url = url
        self._busy = busy_timeout
        self._poll = poll_interval.total_seconds()
        self._lease = lease
        self._clock = clock
        self._closed = False
        self._close_lock = threading.Lock()
        try:
            self._migrate()
            self._journal = _Journal(
                self._connect,
                key_retention=key_retention.total_seconds(),
                lease=lease.total_seconds(),
                clock=clock,
            )
            self._journal.committed_sequence = self._meta("last_sequence")
        except psycopg.Error as exc:
            raise translate(exc, "opening") from exc
        self._pool: Pool[psycopg.Connection[Any]] = Pool(self._connect, keep=readers)
        self._writer = GroupWriter(
            self._journal,
            name="echo-journal-postgres",
            max_group_weight=max_group_weight,
        )
        # _delivered (the last sequence handed to listeners), _listeners,
        # _renewing and _dispatch_ok are guarded by _delivery; the event thread advances
        # _delivered, flush waits for it.
        self._delivery = threading.Condition()
        self._delivered = self._journal.committed_sequence
        self._listeners: tuple[EventListener, ...] = ()
        self._renewing: set[str] = set()  # owners whose leases the store keeps
        self._dispatch_ok = True
        self._stopping = threading.Event()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="echo-journal-events", daemon=True
        )
        self._dispatcher.start()

    def _connect(self) -> psycopg.Connection[Any]:
        timeout_ms = int(self._busy.total_seconds() * 1000)
        conn = psycopg.connect(
            self._url,
            autocommit=True,  # transactions are explicit
            connect_timeout=max(1, round(self._busy.total_seconds())),
            options=f"-c lock_timeout={timeout_ms}",
        )
        return conn

    def _migrate(self) -> None:
        with self._connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(_SCHEMA)
            (version,) = conn.execute(
                "SELECT value FROM echo_meta WHERE key = 'schema_version'"
            ).fetchone() or (0,)
            if version > SCHEMA_VERSION:
                raise errors.StoreError(
                    f"journal database has schema {version}, newer than this "
                    f"version of Echo understands ({SCHEMA_VERSION})"
                )
            conn.execute(
                "UPDATE echo_meta SET value = %s WHERE key = 'schema_version'",
                (SCHEMA_VERSION,),
            )

    def _meta(self, key: str) -> int:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT value FROM echo_meta WHERE key = %s", (key,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def _with_connection(
        self, doing: str, work: Callable[[psycopg.Connection[Any]], Any]
    ) -> Any:
        try:
            with self._pool.borrow() as conn:
                return work(conn)
        except psycopg.Error as exc:
            raise translate(exc, doing) from exc

    # -- writes that journal events: through the group writer --------------------

    def insert(self, actions: Sequence[NewAction]) -> list[Inserted]:
        return self._submit_insert(actions).result()

    def insert_async(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        return self._submit_insert(actions)

    def _submit_insert(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        actions = list(actions)
        if not actions:
            return done_future([])
        kept = {
            a.owner for a in actions if a.owner is not None and a.lease_until is None
        }
        if kept:
            with self._delivery:
                self._renewing.update(kept)
        return self._writer.submit(
            lambda: self._journal.insert(actions), weight=2 * len(actions)
        )

    def record(
        self, transitions: Sequence[Transition], *, linger: timedelta = timedelta(0)
    ) -> Future[list[EventRecord]]:
        transitions = list(transitions)
        return self._writer.submit(
            lambda: self._journal.record(transitions),
            weight=max(1, len(transitions)),
            linger=linger.total_seconds(),
        )

    def flush(self) -> None:
        self._writer.flush()
        self._wait_delivered()

    # -- claims and other writes without events: short transactions of their own --

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
        renewed = lease is None
        until = now + (self._lease if lease is None else lease).total_seconds()
        if renewed:
            with self._delivery:
                self._renewing.add(owner)

        def work(conn: psycopg.Connection[Any]) -> list[ActionRecord]:
            out: list[ActionRecord] = []
            with conn.transaction():
                conn.execute(
                    "UPDATE echo_actions SET owner = NULL, lease_until = NULL, "
                    "renewed = false WHERE owner IS NOT NULL AND lease_until <= %s",
                    (now,),
                )
                # One priority at a time, highest first: within a priority the
                # claim index is ordered by due time, so rows not yet due are
                # never scanned.
                priority: int | None = None
                while len(out) < limit:
                    if priority is None:
                        found = conn.execute(
                            "SELECT priority FROM echo_actions "
                            "WHERE NOT done AND owner IS NULL "
                            "ORDER BY priority DESC LIMIT 1"
                        ).fetchone()
                    else:
                        found = conn.execute(
                            "SELECT priority FROM echo_actions "
                            "WHERE NOT done AND owner IS NULL AND priority < %s "
                            "ORDER BY priority DESC LIMIT 1",
                            (priority,),
                        ).fetchone()
                    if found is None:
                        break
                    priority = found[0]
                    rows = conn.execute(
                        "UPDATE echo_actions SET owner = %s, lease_until = %s, "
                        "renewed = %s WHERE seq IN (SELECT seq FROM echo_actions "
                        "WHERE NOT done AND owner IS NULL AND priority = %s "
                        "AND due_at <= %s ORDER BY due_at, seq LIMIT %s "
                        f"FOR UPDATE SKIP LOCKED) RETURNING due_at, seq, {_COLUMNS}",
                        (owner, until, renewed, priority, now, limit - len(out)),
                    ).fetchall()
                    rows.sort(key=lambda r: (r[0], r[1]))
                    out.extend(_record(r[2:]) for r in rows)
            return out

        result: list[ActionRecord] = self._with_connection("claiming", work)
        if queued is None or not result:
            return result
        # Events take their sequence numbers on the writer: QUEUED follows
        # the claim's own transaction, fenced by the claim just taken.
        named = [(r, queued(r)) for r in result]
        marks = [
            Transition(r.id, State.QUEUED, event_payload=p, owner=owner)
            for r, p in named
            if p is not None
        ]
        if not marks:
            return result
        try:
            self.record(marks).result()
        except errors.EchoError:
            # Nothing of it was written; the claims stand without the events,
            # as before an engine recorded QUEUED itself.
            logger.warning("QUEUED of %d claimed actions not journaled", len(marks))
            return result
        return [
            replace(r, state=State.QUEUED) if p is not None else r for r, p in named
        ]

    def renew(
        self, action_ids: Iterable[str], *, owner: str, now: float, lease: timedelta
    ) -> set[str]:
        ids = list(action_ids)
        until = now + lease.total_seconds()

        def work(conn: psycopg.Connection[Any]) -> set[str]:
            rows = conn.execute(
                "UPDATE echo_actions SET lease_until = %s, renewed = false "
                "WHERE owner = %s AND id = ANY(%s) RETURNING id",
                (until, owner, ids),
            ).fetchall()
            return {r[0] for r in rows}

        held: set[str] = self._with_connection("renewing leases", work)
        return held

    def release(self, action_ids: Iterable[str]) -> None:
        ids = list(action_ids)
        if ids:
            self._with_connection(
                "releasing claims",
                lambda conn: conn.execute(
                    "UPDATE echo_actions SET owner = NULL, lease_until = NULL, "
                    "renewed = false WHERE owner IS NOT NULL AND id = ANY(%s)",
                    (ids,),
                ),
            )

    def recover(self, owner: str) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            cursor = conn.execute(
                "UPDATE echo_actions SET owner = NULL, lease_until = NULL, "
                "renewed = false WHERE owner = %s",
                (owner,),
            )
            return cursor.rowcount

        released: int = self._with_connection("recovering", work)
        logger.debug("journal recovered: %d claims of %s released", released, owner)
        return released

    def purge(self, *, finished_before: float, keys_before: float) -> int:
        def actions(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                gone = [
                    r[0]
                    for r in conn.execute(
                        "DELETE FROM echo_actions WHERE seq IN (SELECT seq FROM "
                        "echo_actions WHERE done AND updated_at < %s LIMIT %s "
                        "FOR UPDATE SKIP LOCKED) RETURNING id",
                        (finished_before, _PURGE_CHUNK),
                    ).fetchall()
                ]
                if gone:
                    conn.execute(
                        "DELETE FROM echo_events WHERE action_id = ANY(%s)", (gone,)
                    )
                    conn.execute(
                        "DELETE FROM echo_idempotency_keys WHERE action_id = ANY(%s)",
                        (gone,),
                    )
            return len(gone)

        def keys(conn: psycopg.Connection[Any]) -> int:
            return conn.execute(
                "DELETE FROM echo_idempotency_keys WHERE key IN (SELECT key FROM "
                "echo_idempotency_keys WHERE created_at < %s LIMIT %s)",
                (keys_before, _PURGE_CHUNK),
            ).rowcount

        total = 0
        while True:
            count: int = self._with_connection("purging actions", actions)
            total += count
            if count < _PURGE_CHUNK:
                break
        while self._with_connection("purging keys", keys) >= _PURGE_CHUNK:
            pass
        return total

    # -- reads -------------------------------------------------------------------

    def get(self, action_id: str) -> ActionRecord | None:
        row = self._with_connection(
            "reading an action",
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM echo_actions WHERE id = %s", (action_id,)
            ).fetchone(),
        )
        return None if row is None else _record(row)

    def events_after(
        self,
        sequence: int,
        *,
        limit: int,
        action_ids: frozenset[str] = frozenset(),
        names: frozenset[str] = frozenset(),
    ) -> list[EventRecord]:
        events: list[EventRecord] = self._with_connection(
            "reading events",
            lambda conn: _read_events(conn, sequence, limit, action_ids, names),
        )
        return events

    def next_due(self) -> float | None:
        def work(conn: psycopg.Connection[Any]) -> float | None:
            row = conn.execute(
                "SELECT (SELECT MIN(due_at) FROM echo_actions "
                "WHERE NOT done AND owner IS NULL), "
                "(SELECT MIN(lease_until) FROM echo_actions WHERE owner IS NOT NULL)"
            ).fetchone()
            found = [t for t in (row or ()) if t is not None]
            return min(found) if found else None

        due: float | None = self._with_connection("reading the next due time", work)
        return due

    def waiting(self) -> int:
        return self._read_meta("unfinished")

    def last_sequence(self) -> int:
        return self._read_meta("last_sequence")

    def _read_meta(self, key: str) -> int:
        row = self._with_connection(
            "reading the journal's counters",
            lambda conn: conn.execute(
                "SELECT value FROM echo_meta WHERE key = %s", (key,)
            ).fetchone(),
        )
        return 0 if row is None else int(row[0])

    # -- listeners -----------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        with self._delivery:
            self._listeners = (*self._listeners, listener)

    def _dispatch_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        renew_every = self._lease.total_seconds() / 3
        renewed_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                    conn.execute(f"LISTEN {CHANNEL}")
                if time.monotonic() - renewed_at >= renew_every:
                    self._renew_leases(conn)
                    renewed_at = time.monotonic()
                self._deliver_new(conn)
                with self._delivery:
                    self._dispatch_ok = True
                for _ in conn.notifies(timeout=self._poll, stop_after=1):
                    pass
            except psycopg.Error:
                with self._delivery:
                    if self._dispatch_ok:
                        logger.warning("journal event thread lost its connection")
                    self._dispatch_ok = False
                if conn is not None:
                    conn.close()
                conn = None
                self._stopping.wait(self._poll)
        if conn is not None:
            conn.close()

    def _renew_leases(self, conn: psycopg.Connection[Any]) -> None:
        with self._delivery:
            owners = sorted(self._renewing)
        if owners:
            conn.execute(
                "UPDATE echo_actions SET lease_until = %s "
                "WHERE renewed AND owner = ANY(%s)",
                (self._clock() + self._lease.total_seconds(), owners),
            )

    def _deliver_new(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stopping.is_set():
            events = _read_events(
                conn, self._delivered, _EVENT_PAGE, frozenset(), frozenset()
            )
            if not events:
                return
            with self._delivery:
                listeners = self._listeners
            for listener in listeners:
                try:
                    listener(events)
                except Exception:
                    logger.error("journal listener %r raised", listener, exc_info=True)
            with self._delivery:
                self._delivered = events[-1].sequence
                self._delivery.notify_all()

    # -- life --------------------------------------------------------------------

    def healthy(self) -> bool:
        with self._delivery:
            return self._writer.healthy and self._dispatch_ok

    @property
    def commits(self) -> int:
        """Transactions committed by this store's writer since open."""
        return self._writer.commits

    def close(self) -> None:
        """Commit what is queued, stop both threads, close every connection."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._writer.close()
        try:
            self._wait_delivered()
        finally:
            self._stopping.set()
            try:
                # Wake the event thread now rather than at its next poll.
                with self._connect() as conn:
                    conn.execute("SELECT pg_notify(%s, 'closing')", (CHANNEL,))
            except psycopg.Error:
                pass
            self._dispatcher.join()
            self._pool.close()
            self._journal.conn.close()

    def _wait_delivered(self) -> None:
        """Wait until listeners were handed every event this store wrote."""
        target = self._journal.committed_sequence
        with self._delivery:
            while (
                self._delivered < target
                and self._dispatch_ok
                and self._dispatcher.is_alive()
            ):
                self._delivery.wait(self._poll)


def _read_events(
    conn: psycopg.Connection[Any],
    sequence: int,
    limit: int,
    action_ids: frozenset[str],
    names: frozenset[str],
) -> list[EventRecord]:
    if names and not action_ids:
        # One index range per name (echo_events_name), each cut at ``limit``,
        # merged in sequence order: a popular name costs ``limit`` rows, not
        # a scan of the table or a sort of all its events.
        rows = conn.execute(
            f"SELECT {', '.join('e.' + c for c in _EVENT_COLUMNS.split(', '))} "
            "FROM unnest(%s::text[]) AS n(name) CROSS JOIN LATERAL "
            f"(SELECT {_EVENT_COLUMNS} FROM echo_events "
            "WHERE name = n.name AND seq > %s ORDER BY seq LIMIT %s) e "
            "ORDER BY e.seq LIMIT %s",
            (sorted(names), sequence, limit, limit),
        ).fetchall()
        return [_event(row) for row in rows]
    where = ["seq > %s"]
    params: list[Any] = [sequence]
    if action_ids:
        where.append("action_id = ANY(%s)")
        params.append(sorted(action_ids))
    if names:
        where.append("name = ANY(%s)")
        params.append(sorted(names))
    params.append(limit)
    rows = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM echo_events WHERE {' AND '.join(where)} "
        "ORDER BY seq LIMIT %s",
        params,
    ).fetchall()
    return [_event(row) for row in rows]
