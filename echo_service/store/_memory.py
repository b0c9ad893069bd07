"""A journal held in memory: same contract as the durable stores, no durability.

It is for tests, demos and throw-away runs. Writes go through the same group
writer as the durable stores, so callers see the same threading: ``record``
resolves on the writer thread and listeners run there.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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
from ._writer import GroupWriter, Write

__all__ = ["MemoryStore"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Row:
    seq: int
    id: str
    name: str
    payload: bytes
    state: State
    priority: int
    due_at: float
    attempt: int
    idempotency_key: str | None
    parent_id: str | None
    created_at: float
    updated_at: float
    outcome: bytes | None = None
    owner: str | None = None
    lease_until: float | None = None
    ticket: int = 0
    """Bumped whenever the row is (re)queued; older heap entries are stale."""

    def record(self) -> ActionRecord:
        return ActionRecord(
            id=self.id,
            name=self.name,
            payload=self.payload,
            state=self.state,
            priority=self.priority,
            due_at=self.due_at,
            attempt=self.attempt,
            idempotency_key=self.idempotency_key,
            parent_id=self.parent_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            outcome=self.outcome,
            owner=self.owner,
            lease_until=self.lease_until,
        )

    @property
    def claimable(self) -> bool:
        return self.owner is None and not self.state.finished


# A heap entry: (due_at, insertion seq, ticket, id). Entries are never removed
# when a row is claimed, finished or re-timed; they are skipped when popped.
_Entry = tuple[float, int, int, str]


class _Transaction:
    """A group of writes holds the data lock from begin to commit.

    Every write checks its preconditions before it changes anything, so a
    write that fails leaves nothing behind; there is nothing to roll back.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def begin(self) -> None:
        self._lock.acquire()

    def run(self, write: Write[Any]) -> tuple[Any, list[EventRecord]]:
        return write.apply()

    def commit(self) -> None:
        self._lock.release()

    def rollback(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def failure(self, exc: BaseException) -> errors.EchoError:
        return errors.StoreError(f"memory journal failed: {exc!r}")


class MemoryStore:
    """The ``Store`` contract in memory; everything is lost on close."""

    shared = False
    """Only this process sees it (tests may share one between engines)."""

    def __init__(
        self,
        *,
        key_retention: timedelta = timedelta(hours=24),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key_retention = key_retention.total_seconds()
        self._clock = clock
        # _lock guards every field below. The writer thread holds it for a
        # whole group of writes (so readers never see half a group); readers
        # hold it while they read. Listeners run after it is released.
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._ready: dict[int, list[_Entry]] = {}  # per priority
        self._priorities: list[int] = []  # ascending, those with a heap
        self._claimed: dict[str, _Row] = {}
        self._events: list[EventRecord] = []
        self._keys: dict[str, tuple[str, float]] = {}  # key -> (action id, created)
        self._next_row = 0
        self._sequence = 0
        self._unfinished = 0
        self._closed = False
        self._writer = GroupWriter(_Transaction(self._lock), name="echo-journal-memory")

    # -- writes ------------------------------------------------------------

    def insert(self, actions: Sequence[NewAction]) -> list[Inserted]:
        return self._submit_insert(actions).result()

    def insert_async(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        return self._submit_insert(actions)

    def _submit_insert(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        actions = list(actions)
        return self._writer.submit(
            lambda: self._insert(actions), weight=max(1, 2 * len(actions))
        )

    def _insert(
        self, actions: Sequence[NewAction]
    ) -> tuple[list[Inserted], list[EventRecord]]:
        now = self._clock()
        fresh_after = now - self._key_retention
        batch_ids: set[str] = set()
        for action in actions:
            if action.id in self._rows or action.id in batch_ids:
                raise errors.StoreError(f"action id {action.id!r} already exists")
            batch_ids.add(action.id)
        out: list[Inserted] = []
        events: list[EventRecord] = []
        idle: bool | None = None  # no due unclaimed action; asked at most once
        for action in actions:
            key = action.idempotency_key
            if key is not None:
                known = self._keys.get(key)
                if known is not None and known[1] > fresh_after:
                    first = self._rows.get(known[0])
                    if first is not None:
                        out.append(Inserted(first.record(), duplicate=True))
                        continue
            owner = action.owner
            if owner is not None and action.only_if_idle:
                if idle is None:
                    idle = not self._due_waiting(now)
                if not idle:
                    owner = None
            also = second_state(action, owner)
            self._next_row += 1
            row = _Row(
                seq=self._next_row,
                id=action.id,
                name=action.name,
                payload=action.payload,
                state=also or State.ACCEPTED,
                priority=action.priority,
                due_at=action.due_at,
                attempt=0,
                idempotency_key=key,
                parent_id=action.parent_id,
                created_at=now,
                updated_at=now,
            )
            self._rows[row.id] = row
            if key is not None:
                self._keys[key] = (row.id, now)
            self._unfinished += 1
            if owner is None:
                self._enqueue(row)
            else:
                row.owner = owner
                row.lease_until = action.lease_until
                self._claimed[row.id] = row
            events.append(
                self._event(row, State.ACCEPTED, now, action.event_payload, 0)
            )
            if also is not None:
                events.append(self._event(row, also, now, action.event_payload, 0))
            out.append(Inserted(row.record(), duplicate=False))
        return out, events

    def record(
        self, transitions: Sequence[Transition], *, linger: timedelta = timedelta(0)
    ) -> Future[list[EventRecord]]:
        transitions = list(transitions)
        return self._writer.submit(
            lambda: self._record(transitions),
            weight=max(1, len(transitions)),
            linger=linger.total_seconds(),
        )

    def _record(
        self, transitions: Sequence[Transition]
    ) -> tuple[list[EventRecord], list[EventRecord]]:
        for t in transitions:
            found = self._rows.get(t.action_id)
            if found is None:
                raise errors.NotFound(f"no action with id {t.action_id!r}")
            if t.owner is not None and found.owner != t.owner:
                raise errors.FailedPrecondition(
                    f"{t.owner} no longer holds the claim on {t.action_id}"
                )
        now = self._clock()
        events: list[EventRecord] = []
        for t in transitions:
            row = self._rows[t.action_id]
            attempt = row.attempt if t.attempt is None else t.attempt
            if t.state is not State.PROGRESS:
                row.attempt = attempt
                was_finished = row.state.finished
                requeue = False
                row.state = t.state
                row.updated_at = now
                if t.due_at is not None and t.due_at != row.due_at:
                    row.due_at = t.due_at
                    requeue = True
                if t.outcome is not None:
                    row.outcome = t.outcome
                if t.state.finished or t.release:
                    requeue = requeue or row.owner is not None
                    self._drop_claim(row)
                if was_finished and not t.state.finished:
                    self._unfinished += 1
                    requeue = True
                elif t.state.finished and not was_finished:
                    self._unfinished -= 1
                if requeue and row.claimable:
                    self._enqueue(row)
            events.append(self._event(row, t.state, now, t.event_payload, attempt))
        return events, events

    def claim(
        self,
        *,
        now: float,
        limit: int,
        owner: str,
        lease: timedelta | None = None,
        queued: Callable[[ActionRecord], bytes | None] | None = None,
    ) -> list[ActionRecord]:
        until = None if lease is None else now + lease.total_seconds()
        return self._writer.call(
            lambda: self._claim(now, limit, owner, until, queued), weight=limit
        )

    def _claim(
        self,
        now: float,
        limit: int,
        owner: str,
        until: float | None,
        queued: Callable[[ActionRecord], bytes | None] | None,
    ) -> tuple[list[ActionRecord], list[EventRecord]]:
        self._expire_leases(now)
        out: list[ActionRecord] = []
        events: list[EventRecord] = []
        at = self._clock()
        for priority in reversed(list(self._priorities)):
            heap = self._ready[priority]
            while heap and len(out) < limit:
                due_at, _, ticket, action_id = heap[0]
                row = self._rows.get(action_id)
                if row is None or row.ticket != ticket or not row.claimable:
                    heapq.heappop(heap)
                    continue
                if due_at > now:
                    break
                heapq.heappop(heap)
                row.owner = owner
                row.lease_until = until
                self._claimed[row.id] = row
                payload = None if queued is None else queued(row.record())
                if payload is not None:
                    row.state = State.QUEUED
                    row.updated_at = at
                    events.append(
                        self._event(row, State.QUEUED, at, payload, row.attempt)
                    )
                out.append(row.record())
            if not heap:
                self._drop_heap(priority)
            if len(out) >= limit:
                break
        return out, events

    def renew(
        self, action_ids: Iterable[str], *, owner: str, now: float, lease: timedelta
    ) -> set[str]:
        ids = list(action_ids)
        until = now + lease.total_seconds()

        def apply() -> tuple[set[str], list[EventRecord]]:
            held: set[str] = set()
            for action_id in ids:
                row = self._claimed.get(action_id)
                if row is not None and row.owner == owner:
                    row.lease_until = until
                    held.add(action_id)
            return held, []

        return self._writer.call(apply, weight=max(1, len(ids)))

    def release(self, action_ids: Iterable[str]) -> None:
        ids = list(action_ids)

        def apply() -> tuple[None, list[EventRecord]]:
            for action_id in ids:
                row = self._claimed.get(action_id)
                if row is not None:
                    self._drop_claim(row)
                    self._enqueue(row)
            return None, []

        self._writer.call(apply, weight=max(1, len(ids)))

    def recover(self, owner: str) -> int:
        def apply() -> tuple[int, list[EventRecord]]:
            rows = list(self._claimed.values())
            for row in rows:
                self._drop_claim(row)
                self._enqueue(row)
            return len(rows), []

        return self._writer.call(apply)

    def purge(self, *, finished_before: float, keys_before: float) -> int:
        def apply() -> tuple[int, list[EventRecord]]:
            gone = {
                row.id
                for row in self._rows.values()
                if row.state.finished and row.updated_at < finished_before
            }
            for action_id in gone:
                row = self._rows.pop(action_id)
                key = row.idempotency_key
                if key is not None and self._keys.get(key, ("",))[0] == action_id:
                    del self._keys[key]
            for key, (_, created) in list(self._keys.items()):
                if created < keys_before:
                    del self._keys[key]
            if gone:
                self._events = [e for e in self._events if e.action_id not in gone]
            return len(gone), []

        return self._writer.call(apply)

    def flush(self) -> None:
        self._writer.flush()

    # -- reads -------------------------------------------------------------

    def next_due(self) -> float | None:
        with self._lock:
            best: float | None = None
            for priority in list(self._priorities):
                heap = self._ready[priority]
                while heap:
                    due_at, _, ticket, action_id = heap[0]
                    row = self._rows.get(action_id)
                    if row is not None and row.ticket == ticket and row.claimable:
                        best = due_at if best is None else min(best, due_at)
                        break
                    heapq.heappop(heap)
                if not heap:
                    self._drop_heap(priority)
            for row in self._claimed.values():
                if row.lease_until is not None:
                    best = (
                        row.lease_until if best is None else min(best, row.lease_until)
                    )
            return best

    def waiting(self) -> int:
        with self._lock:
            return self._unfinished

    def get(self, action_id: str) -> ActionRecord | None:
        with self._lock:
            row = self._rows.get(action_id)
            return None if row is None else row.record()

    def events_after(
        self,
        sequence: int,
        *,
        limit: int,
        action_ids: frozenset[str] = frozenset(),
        names: frozenset[str] = frozenset(),
    ) -> list[EventRecord]:
        with self._lock:
            start = bisect.bisect_right(self._events, sequence, key=_sequence_of)
            out: list[EventRecord] = []
            for event in self._events[start:]:
                if len(out) >= limit:
                    break
                if action_ids and event.action_id not in action_ids:
                    continue
                if names and event.name not in names:
                    continue
                out.append(event)
            return out

    def last_sequence(self) -> int:
        with self._lock:
            return self._sequence

    def add_listener(self, listener: EventListener) -> None:
        self._writer.add_listener(listener)

    def healthy(self) -> bool:
        return self._writer.healthy

    @property
    def commits(self) -> int:
        """Transactions committed since open (one per group of writes)."""
        return self._writer.commits

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()

    # -- helpers, called with _lock held -------------------------------------

    def _event(
        self, row: _Row, state: State, at: float, payload: bytes, attempt: int
    ) -> EventRecord:
        self._sequence += 1
        event = EventRecord(
            sequence=self._sequence,
            action_id=row.id,
            name=row.name,
            state=state,
            attempt=attempt,
            at=at,
            payload=payload,
        )
        self._events.append(event)
        return event

    def _enqueue(self, row: _Row) -> None:
        row.ticket += 1
        heap = self._ready.get(row.priority)
        if heap is None:
            heap = self._ready[row.priority] = []
            bisect.insort(self._priorities, row.priority)
        heapq.heappush(heap, (row.due_at, row.seq, row.ticket, row.id))

    def _due_waiting(self, now: float) -> bool:
        """True when some unclaimed unfinished action is due at ``now``."""
        for priority in list(self._priorities):
            heap = self._ready[priority]
            while heap:
                due_at, _, ticket, action_id = heap[0]
                row = self._rows.get(action_id)
                if row is not None and row.ticket == ticket and row.claimable:
                    if due_at <= now:
                        return True
                    break
                heapq.heappop(heap)
            if not heap:
                self._drop_heap(priority)
        return False

    def _drop_heap(self, priority: int) -> None:
        del self._ready[priority]
        self._priorities.remove(priority)

    def _drop_claim(self, row: _Row) -> None:
        row.owner = None
        row.lease_until = None
        self._claimed.pop(row.id, None)

    def _expire_leases(self, now: float) -> None:
        expired = [
            row
            for row in self._claimed.values()
            if row.lease_until is not None and row.lease_until <= now
        ]
        for row in expired:
            logger.info("lease of %s held by %s ran out", row.id, row.owner)
            self._drop_claim(row)
            self._enqueue(row)


def _sequence_of(event: EventRecord) -> int:
    return event.sequence
