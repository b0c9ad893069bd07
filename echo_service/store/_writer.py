"""Group commit: one writer thread applies everyone's writes in few transactions.

Callers hand a write (a callable run inside the transaction) to ``submit`` and
get a future. The writer thread takes everything queued, opens one
transaction, runs each write, commits once, resolves the futures, hands the
committed events to the listeners in sequence order, and only then resolves
the ``flush`` barriers of that group. Under load many writes share one commit,
so durability costs one sync per group instead of one per action.

Writes of one kind may be applied *together*: consecutive writes in a group
that carry the same ``many`` function are handed to it as one list, so a
backend can serve them with a statement or two instead of a few each. Such a
function checks everything before it changes anything, so a write it fails
leaves nothing behind without a savepoint; any other exception aborts the
group as usual.

A write may *linger*: it waits up to its linger for another write to come
and share its commit, unless one is queued already. Order holds regardless:
a lingering write is taken with (and before) any write queued after it, and
a ``flush`` barrier is such a write, so it never waits for a linger.

Ownership: the writer thread alone runs ``Transaction`` methods, so a backend
needs no lock around its write connection or its write-side counters. The
queue, the count of prompt writes in it, the stopping flag and the listener
list are guarded by ``_cond``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from echo_service import errors

from ._base import EventListener, EventRecord

__all__ = ["GroupWriter", "Transaction", "Write", "done_future"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Transaction(Protocol):
    """What a backend gives the writer: one transaction at a time."""

    def begin(self) -> None:
        """Open a transaction for a group of writes."""

    def run(self, write: Write[Any]) -> tuple[Any, list[EventRecord]]:
        """Run one write atomically inside the open transaction.

        Raising an ``EchoError`` means only this write failed and none of its
        effects remain; any other exception aborts the whole group.
        """

    def commit(self) -> None:
        """Make the group durable; raising aborts (and rolls back) the group."""

    def rollback(self) -> None:
        """Undo the open transaction after a failure; must not raise."""

    def failure(self, exc: BaseException) -> errors.EchoError:
        """Translate a group failure into the error every waiter gets."""


Answer = tuple[Any, list[EventRecord]] | errors.EchoError
Many = Callable[[Sequence[Any]], list[Answer]]
"""Applies the payloads of several writes at once, in order: for each, its
result and events, or the ``EchoError`` that failed it (and it alone)."""


@dataclass(eq=False, slots=True)
class Write(Generic[T]):
    """One caller's write: ``apply`` runs inside the transaction."""

    apply: Callable[[], tuple[T, list[EventRecord]]]
    weight: int = 1
    """Rows it touches, roughly; bounds how much one transaction takes."""
    until: float = 0.0
    """``time.monotonic()`` until which it may wait for company; 0: none."""
    many: Many | None = None
    """Applies this write together with its neighbours of the same kind."""
    payload: Any = None
    """What ``many`` is given for this write."""
    future: Future[T] = field(default_factory=Future)


def done_future(result: T) -> Future[T]:
    """A future that already holds ``result`` (a write with nothing to do)."""
    future: Future[T] = Future()
    future.set_result(result)
    return future


_BARRIER: Callable[[], tuple[None, list[EventRecord]]] = lambda: (None, [])  # noqa: E731


class GroupWriter:
    """The writer thread of one store and the queue that feeds it."""

    def __init__(
        self,
        transaction: Transaction,
        *,
        name: str,
        max_group_weight: int = 20_000,
        max_queued: int = 100_000,
        upkeep: Callable[[], None] | None = None,
    ) -> None:
        """
        Args:
            upkeep: run on the writer thread after each group, once its
                futures, listeners and barriers are served: work that must
                not share a transaction with anyone's write (a checkpoint,
                say). It must not raise.
        """
        self._tx = transaction
        self._upkeep = upkeep
        self._max_group_weight = max_group_weight
        self._max_queued = max_queued
        # Guarded by _cond: the queue, _stopping, _listeners.
        self._cond = threading.Condition()
        self._queue: deque[Write[Any]] = deque()
        self._prompt = 0  # writes in _queue that do not linger
        self._stopping = False
        self._listeners: tuple[EventListener, ...] = ()
        # Written by the writer thread only; read anywhere (plain values).
        self._healthy = True
        self.commits = 0
        """Groups committed so far; under load far fewer than writes."""
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def healthy(self) -> bool:
        return self._healthy and not self._stopping

    def add_listener(self, listener: EventListener) -> None:
        with self._cond:
            self._listeners = (*self._listeners, listener)

    def submit(
        self,
        apply: Callable[[], tuple[T, list[EventRecord]]],
        *,
        weight: int = 1,
        linger: float = 0.0,
        many: Many | None = None,
        payload: Any = None,
    ) -> Future[T]:
        """Queue a write; blocks while the queue is full (back-pressure).

        ``linger`` (seconds): how long the write may wait for another one to
        share its commit. ``many`` and ``payload``: how to apply it together
        with neighbours of its kind. See the module docstring.
        """
        write: Write[T] = Write(
            apply,
            weight,
            time.monotonic() + linger if linger > 0 else 0.0,
            many,
            payload,
        )
        with self._cond:
            while len(self._queue) >= self._max_queued and not self._stopping:
                self._cond.wait()
            if self._stopping:
                raise errors.Unavailable("the journal is closed")
            self._queue.append(write)
            if not write.until:
                self._prompt += 1
            self._cond.notify_all()
        return write.future

    def call(
        self, apply: Callable[[], tuple[T, list[EventRecord]]], *, weight: int = 1
    ) -> T:
        """Submit a write and wait until it is committed."""
        return self.submit(apply, weight=weight).result()

    def flush(self) -> None:
        """Wait until every earlier write is committed and its events delivered."""
        self.submit(_BARRIER, weight=0).result()

    def close(self) -> None:
        """Refuse new writes, finish the queued ones, stop and join the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _take(self) -> list[Write[Any]] | None:
        with self._cond:
            while True:
                if not self._queue:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                if self._prompt or self._stopping:
                    break
                # Only lingering writes: the oldest one's linger decides.
                left = self._queue[0].until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            group = [self._queue.popleft()]
            weight = group[0].weight
            while self._queue and weight + self._queue[0].weight <= (
                self._max_group_weight
            ):
                group.append(self._queue.popleft())
                weight += group[-1].weight
            self._prompt -= sum(1 for w in group if not w.until)
            self._cond.notify_all()  # wake submitters blocked on a full queue
            return group

    def _loop(self) -> None:
        while (group := self._take()) is not None:
            try:
                self._run_group(group)
                if self._upkeep is not None:
                    self._upkeep()
            except BaseException as exc:  # a bug; keep serving, fail the group
                logger.error("journal writer failed unexpectedly", exc_info=True)
                self._healthy = False
                for write in group:
                    if not write.future.done():
                        write.future.set_exception(
                            errors.StoreError(f"journal writer failed: {exc!r}")
                        )

    def _apply(self, writes: Sequence[Write[Any]]) -> list[tuple[Write[Any], Answer]]:
        """Run the writes in the open transaction, neighbours of one kind
        together; each with its answer."""
        out: list[tuple[Write[Any], Answer]] = []
        start = 0
        while start < len(writes):
            end = start + 1
            many = writes[start].many
            if many is not None:
                while end < len(writes) and writes[end].many == many:
                    end += 1
                batch = writes[start:end]
                out.extend(zip(batch, many([w.payload for w in batch]), strict=True))
            else:
                try:
                    out.append((writes[start], self._tx.run(writes[start])))
                except errors.EchoError as exc:
                    out.append((writes[start], exc))
            start = end
        return out

    def _run_group(self, group: Sequence[Write[Any]]) -> None:
        # A caller may cancel a future it stopped waiting for; a cancelled
        # write is dropped unapplied, and a running one can no longer be.
        group = [w for w in group if w.future.set_running_or_notify_cancel()]
        writes = [w for w in group if w.apply is not _BARRIER]
        barriers = [w for w in group if w.apply is _BARRIER]
        outcomes: list[tuple[Write[Any], Any, BaseException | None]] = []
        events: list[EventRecord] = []
        if writes:
            try:
                self._tx.begin()
                for write, answer in self._apply(writes):
                    if isinstance(answer, errors.EchoError):
                        outcomes.append((write, None, answer))
                    else:
                        outcomes.append((write, answer[0], None))
                        events.extend(answer[1])
                self._tx.commit()
                self.commits += 1
            except Exception as exc:
                self._tx.rollback()
                if self._healthy:
                    logger.error("journal write failed: %s", self._tx.failure(exc))
                self._healthy = False
                for write in group:
                    # Each waiter gets its own exception object: one instance
                    # raised in several threads would tangle their tracebacks.
                    failure = self._tx.failure(exc)
                    failure.__cause__ = exc
                    write.future.set_exception(failure)
                return
            self._healthy = True
        for write, result, error in outcomes:
            if error is None:
                write.future.set_result(result)
            else:
                write.future.set_exception(error)
        if events:
            for listener in self._listeners:
                try:
                    listener(events)
                except Exception:
                    logger.error("journal listener %r raised", listener, exc_info=True)
        for barrier in barriers:
            barrier.future.set_result(None)
