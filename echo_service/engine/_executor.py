"""A threaded work-stealing executor for plain callables.

The executor knows nothing of actions: it runs zero-argument callables and
counts what its workers did. Layout and ownership:

* Each worker owns a deque. Only the owner appends to it and pops from its
  right (LIFO) end; thieves pop from its left (FIFO) end. ``deque.append``,
  ``pop`` and ``popleft`` are atomic under the GIL, so neither side locks.
* Work from outside any worker goes to the shared *injector*, a heap ordered
  by priority (higher first) then arrival, guarded by ``_heap_lock``.
* Work submitted from inside a worker goes to that worker's own deque, so a
  task's children stay hot on the thread that made them until someone idle
  steals them.
* An idle worker parks on its own lock (held locked; a waker releases it).
  ``_idle`` lists parked workers and is guarded by ``_idle_lock``. A worker
  announces itself idle *before* it looks at the queues one last time, and a
  submitter looks at ``_idle`` *after* it queued its work, so one of the two
  always sees the other and no wake-up is lost. Nothing spins or polls.

Priority applies to the injector only: a worker runs its own children first,
whatever their priority, because they are the continuation of work it already
started.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["WorkStealingExecutor", "WorkerStats"]

logger = logging.getLogger(__name__)

Task = Callable[[], object]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What one worker did: tasks run, tasks stolen from others, times parked."""

    run: int
    stolen: int
    parked: int


class _Worker:
    __slots__ = ("deque", "index", "parked", "run", "stolen", "thread", "wakeup")

    def __init__(self, index: int) -> None:
        self.index = index
        self.deque: deque[Task] = deque()
        # Held while the worker is awake; a waker releases it to unpark.
        self.wakeup = threading.Lock()
        self.wakeup.acquire()
        # Counters are written by the owning thread only; readers may see a
        # slightly stale value, which is fine for metrics.
        self.run = 0
        self.stolen = 0
        self.parked = 0
        self.thread: threading.Thread | None = None


class WorkStealingExecutor:
    """Runs callables on ``workers`` threads that steal from each other.

    A task that raises is logged and counted as run; the executor never dies
    of a task's exception. ``shutdown`` lets queued work finish, then joins.
    """

    def __init__(self, workers: int, *, name: str = "echo-worker") -> None:
        if workers < 1:
            raise ValueError("an executor needs at least one worker")
        self._workers = tuple(_Worker(i) for i in range(workers))
        self._heap: list[tuple[int, int, Task]] = []
        self._heap_lock = threading.Lock()
        self._seq = itertools.count()
        self._idle: list[_Worker] = []
        self._idle_lock = threading.Lock()
        self._stopping = False
        self._tls = threading.local()
        for w in self._workers:
            w.thread = threading.Thread(
                target=self._work, args=(w,), name=f"{name}-{w.index}", daemon=True
            )
        for w in self._workers:
            assert w.thread is not None
            w.thread.start()

    # -- submitting -----------------------------------------------------

    def submit(self, task: Task, priority: int = 0) -> None:
        """Queue ``task``; from inside a worker it goes to that worker's deque."""
        worker: _Worker | None = getattr(self._tls, "worker", None)
        if worker is not None:
            worker.deque.append(task)
        else:
            if self._stopping:
                raise RuntimeError("executor is shut down")
            with self._heap_lock:
                heapq.heappush(self._heap, (-priority, next(self._seq), task))
        if self._idle:
            self._wake_one()

    def current_worker(self) -> int | None:
        """The index of the calling worker thread, or None outside the pool."""
        worker: _Worker | None = getattr(self._tls, "worker", None)
        return None if worker is None else worker.index

    # -- observing ------------------------------------------------------

    def stats(self) -> tuple[WorkerStats, ...]:
        return tuple(WorkerStats(w.run, w.stolen, w.parked) for w in self._workers)

    def pending(self) -> int:
        """Tasks queued and not started (approximate while workers run)."""
        return len(self._heap) + sum(len(w.deque) for w in self._workers)

    def alive(self) -> bool:
        return not self._stopping and all(
            w.thread is not None and w.thread.is_alive() for w in self._workers
        )

    @property
    def size(self) -> int:
        return len(self._workers)

    # -- stopping -------------------------------------------------------

    def shutdown(self, *, timeout: timedelta | None = None) -> bool:
        """Run what is queued, stop the workers and join them.

        Returns False when some worker is still busy after ``timeout`` (a task
        that never returns keeps its thread; the thread is a daemon so it does
        not hold the process open).
        """
        with self._idle_lock:
            self._stopping = True
            parked, self._idle = self._idle, []
        for w in parked:
            w.wakeup.release()
        limit = None if timeout is None else timeout.total_seconds()
        current = threading.current_thread()
        for w in self._workers:
            if w.thread is not None and w.thread is not current:
                w.thread.join(limit)
        return not any(
            w.thread is not None and w.thread.is_alive() and w.thread is not current
            for w in self._workers
        )

    # -- the worker loop ------------------------------------------------

    def _work(self, me: _Worker) -> None:
        self._tls.worker = me
        pop_own = me.deque.pop
        while True:
            try:
                task = pop_own()
            except IndexError:
                found = self._take_shared(me)
                if found is None:
                    if self._stopping:
                        return
                    self._park(me)
                    continue
                task = found
            try:
                task()
            except Exception:
                logger.exception("a task raised on worker %d", me.index)
            me.run += 1

    def _take_shared(self, me: _Worker) -> Task | None:
        if self._heap:
            with self._heap_lock:
                if self._heap:
                    return heapq.heappop(self._heap)[2]
        workers = self._workers
        n = len(workers)
        for step in range(1, n):
            victim = workers[(me.index + step) % n].deque
            if victim:
                try:
                    task = victim.popleft()
                except IndexError:
                    continue
                me.stolen += 1
                return task
        return None

    def _has_work(self) -> bool:
        return bool(self._heap) or any(w.deque for w in self._workers)

    def _park(self, me: _Worker) -> None:
        with self._idle_lock:
            if self._stopping:
                return
            self._idle.append(me)
        if self._has_work():
            with self._idle_lock:
                if me in self._idle:
                    self._idle.remove(me)
                    return
            # A waker already took us off the list; its release is coming
            # (or came), so the acquire below returns at once.
        me.parked += 1
        me.wakeup.acquire()

    def _wake_one(self) -> None:
        with self._idle_lock:
            if not self._idle:
                return
            worker = self._idle.pop()
        worker.wakeup.release()
