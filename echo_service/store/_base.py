"""The journal's contract: records, and the operations the engine relies on.

The store knows nothing of gRPC, protobuf or the engine's types. Action
arguments, options and outcomes reach it as opaque ``bytes`` that the engine
encodes; the store indexes only what it needs to schedule and to answer
queries (state, priority, due time, idempotency key).

Concurrency contract, shared by every implementation:

* Every method is safe to call from any thread.
* Writes are ordered: a write submitted after another commits after it, and
  events get sequence numbers in commit order, with no gaps and no reuse.
* ``insert`` returns only when its actions are durable (for the stores that
  are durable at all). ``record`` returns a future that resolves when its
  transition is durable; the caller need not wait, but ``flush`` waits for
  every write submitted before it.
* Writes from many callers are grouped: the writer takes everything queued,
  applies it in one transaction and commits once, so durability costs one
  sync per group, not one per action. A caller's own write is atomic: if it
  fails (say ``NotFound`` for an unknown action id) nothing of it is written
  and the other writes of the group are unaffected. If the commit itself
  fails, every write of the group fails with ``StoreError`` or
  ``Unavailable`` and ``healthy()`` turns False until a commit succeeds.
* Listeners registered with ``add_listener`` see every committed event once,
  in sequence order, on a thread of the store, after the commit: the writer
  thread, after the futures of that group have resolved, in the single-node
  stores; an event thread fed by notifications, that also delivers other
  replicas' events, in the shared PostgreSQL store. ``flush`` returns only
  once the listeners have been handed every event written before it through
  this store. Listeners must
  be quick, must not block on a thread that may be waiting for a store write,
  and must not call back into the store's write methods (reads are fine).
* Claims carry an owner and optionally a lease. A claim without a lease holds
  until it is released, the action finishes, ``recover`` runs, or (in a
  shared store) the store that made it stops renewing it; a claim with a
  lease may be taken by any claimer once the lease has run out, which is how
  a replica that died gives its work back in a shared journal.
  Single-node stores hold their data exclusively (a second process on the
  same files gets ``Unavailable``), so their ``recover`` releases every
  claim. An action may also be inserted already claimed (``NewAction.owner``):
  a child that its parent's runner runs at once is never offered to anyone
  else.
* Fencing. A transition that names an ``owner`` is written only while that
  owner holds the action's claim. A runner whose lease ran out and was taken
  over can therefore not record an outcome over its successor's: the write
  fails with ``FailedPrecondition`` and nothing of it is written. The
  handler's side effects of that lost attempt are not undone; that part of
  delivery stays at-least-once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

__all__ = [
    "ActionRecord",
    "EventListener",
    "EventRecord",
    "Inserted",
    "NewAction",
    "State",
    "Store",
    "Transition",
]


class State(enum.StrEnum):
    """Where an action is in its life. The names match the contract's enum."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    PROGRESS = "progress"  # an event kind only; never an action's state
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})


@dataclass(frozen=True, slots=True)
class NewAction:
    """An action to insert. ``due_at`` is epoch seconds; ``payload`` is opaque."""

    id: str
    name: str
    payload: bytes
    priority: int
    due_at: float
    idempotency_key: str | None = None
    parent_id: str | None = None
    event_payload: bytes = b""
    owner: str | None = None
    """Insert it already claimed by this owner, as ``claim`` would: nobody
    else claims it until the claim ends. None: claimable when due."""
    lease_until: float | None = None
    """With ``owner``: epoch seconds when the claim may be taken, as a
    claim's lease; None holds it like a claim without a lease."""
    only_if_idle: bool = False
    """With ``owner``: take the claim only if no other action is due and
    unclaimed when the insert runs, so that fresh work never overtakes work
    that waits; otherwise insert it claimable like any other. The answer's
    ``record.owner`` says which happened."""
    also: State | None = None
    """A second state journaled in the same transaction, right after
    ACCEPTED, with the same event payload: SCHEDULED for an action due later,
    or QUEUED for one inserted claimed (written only if the claim was taken).
    The action's state is then this one."""


def second_state(action: NewAction, owner: str | None) -> State | None:
    """The ``also`` state an insert journals for ``action`` when the claim
    went to ``owner`` (None: not claimed); see ``NewAction.also``."""
    if action.also is State.QUEUED and owner is None:
        return None
    return action.also


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """An action as the journal holds it."""

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
    outcome: bytes | None
    """Engine-encoded result or error once finished (or the last error)."""
    owner: str | None = None
    """Who holds the claim on it, if anyone."""
    lease_until: float | None = None
    """Epoch seconds after which the claim may be taken; None: no expiry."""


@dataclass(frozen=True, slots=True)
class Inserted:
    """What ``insert`` did with one ``NewAction``.

    ``duplicate`` is true when an unexpired action with the same idempotency
    key already existed; ``record`` is then that first action, and nothing
    was written for the new one.
    """

    record: ActionRecord
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One journaled state change, numbered by the global ``sequence``."""

    sequence: int
    action_id: str
    name: str
    state: State
    attempt: int
    at: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of one action, journaled together with its event.

    ``state`` becomes the action's state unless it is ``State.PROGRESS``, which
    only appends an event (carrying ``attempt`` when given). ``due_at`` (when
    not None) replaces the due time, ``outcome`` (when not None) replaces the
    stored outcome, ``attempt`` (when not None) replaces the attempt count.
    The store applies transitions as given, also to a finished action: which
    transitions are legal is the engine's rule. A finished state also drops the
    claim.
    """

    action_id: str
    state: State
    attempt: int | None = None
    due_at: float | None = None
    outcome: bytes | None = None
    event_payload: bytes = b""
    release: bool = False
    """Drop the action's claim in the same transaction (a retry waits again)."""
    owner: str | None = None
    """Fence: write only while this owner holds the action's claim, else fail
    the write with ``FailedPrecondition``. None: write whoever holds it."""


EventListener = Callable[[Sequence[EventRecord]], None]


class Store(Protocol):
    """The journal. See the module docstring for the concurrency contract."""

    @property
    def shared(self) -> bool:
        """True when other processes claim from the same journal, so that
        claims need leases that their holder renews."""
        ...

    def insert(self, actions: Sequence[NewAction]) -> list[Inserted]:
        """Insert all actions in one transaction, each with an ACCEPTED event.

        Idempotency keys are checked inside the same transaction; a duplicate
        is not claimed by the new action's ``owner``. Returns when
        durable. Raises ``StoreError`` with the cause chained on failure, in
        which case nothing of the batch was written.
        """
        ...

    def insert_async(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        """``insert`` without waiting: a future that resolves, on a store
        thread, once the actions are durable (or fails as ``insert`` raises).

        For callers that must not block (an event loop): it blocks only while
        the writer's queue is full. A future cancelled before the writer took
        it writes nothing.
        """
        ...

    def record(
        self, transitions: Sequence[Transition], *, linger: timedelta = timedelta(0)
    ) -> Future[list[EventRecord]]:
        """Apply transitions and append their events, in order, atomically.

        ``linger``: the write may wait up to this long for another write to
        share its commit (a RUNNING that the outcome soon follows, say). A
        write submitted later never commits before it, and ``flush`` does
        not wait for the linger.

        The future fails with ``NotFound`` (and nothing is written) when an
        action id is unknown, with ``FailedPrecondition`` (nothing written)
        when a transition's ``owner`` does not hold the action's claim, with
        ``StoreError``/``Unavailable`` when the journal fails; the store does
        not log those, the waiter decides.
        """
        ...

    def flush(self) -> None:
        """Block until every write submitted so far is durable."""
        ...

    def claim(
        self,
        *,
        now: float,
        limit: int,
        owner: str,
        lease: timedelta | None = None,
        queued: Callable[[ActionRecord], bytes | None] | None = None,
    ) -> list[ActionRecord]:
        """Take up to ``limit`` due, unclaimed, unfinished actions for ``owner``.

        ``queued`` (optional) names the QUEUED event of each claimed action:
        its payload, or None for no event. Each action with a payload becomes
        QUEUED and its event is journaled with the claim, in the same
        transaction in the single-node stores, right after it in a shared one.
        ``queued`` runs on a store thread and must be quick.

        Highest priority first, then earliest due time, then insertion order.
        A claimed action is not returned again until released, or until its
        lease (``now + lease``) has run out. Without a lease the claim holds
        while the claiming store runs: single-node stores never expire it; a
        shared store gives it a lease of its own and keeps renewing it, so
        the claims of a replica that died come free. Only ``limit`` rows are
        read. The claim itself is not an event.
        """
        ...

    def renew(
        self, action_ids: Iterable[str], *, owner: str, now: float, lease: timedelta
    ) -> set[str]:
        """Extend ``owner``'s leases to ``now + lease``; returns the ids it holds.

        An id missing from the answer was lost (taken by another claimer after
        the lease ran out, or finished): its runner should stop.
        """
        ...

    def release(self, action_ids: Iterable[str]) -> None:
        """Make claimed actions claimable again (after a retry delay, say)."""
        ...

    def recover(self, owner: str) -> int:
        """Make accepted but unfinished work claimable again after a restart.

        Releases the claims held by ``owner`` (every claim, in single-node
        stores). Due times, attempts and priorities stay as journaled.
        Returns how many claims on unfinished actions it released.
        """
        ...

    def next_due(self) -> float | None:
        """Earliest due time among unclaimed unfinished actions, if any."""
        ...

    def waiting(self) -> int:
        """How many unfinished actions exist (claimed or not)."""
        ...

    def get(self, action_id: str) -> ActionRecord | None: ...

    def events_after(
        self,
        sequence: int,
        *,
        limit: int,
        action_ids: frozenset[str] = frozenset(),
        names: frozenset[str] = frozenset(),
    ) -> list[EventRecord]:
        """Committed events with a sequence above ``sequence``, ascending.

        An empty filter set means no filter; when both are given an event must
        match both. Events of purged actions are gone, so a reader resuming
        from before a purge sees a hole where they were.
        """
        ...

    def last_sequence(self) -> int:
        """The highest committed sequence, 0 for an empty journal."""
        ...

    def purge(self, *, finished_before: float, keys_before: float) -> int:
        """Remove finished actions (and their events) and expired keys.

        Actions finished (last updated) before ``finished_before`` go with
        their events and their idempotency key; keys created before
        ``keys_before`` go too. Returns how many actions were removed.
        """
        ...

    def add_listener(self, listener: EventListener) -> None: ...

    def healthy(self) -> bool:
        """True while the journal can be written."""
        ...

    def close(self) -> None:
        """Flush, stop the writer and release the database."""
        ...
