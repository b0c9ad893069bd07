"""The work-stealing executor runs callables; it knows nothing of actions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from echo_service.engine import WorkStealingExecutor

WAIT = 10.0


@pytest.fixture
def make_executor() -> Iterator[type[WorkStealingExecutor]]:
    made: list[WorkStealingExecutor] = []

    def make(workers: int) -> WorkStealingExecutor:
        ex = WorkStealingExecutor(workers, name="test-worker")
        made.append(ex)
        return ex

    yield make  # type: ignore[misc]
    for ex in made:
        assert ex.shutdown()


def test_runs_every_task_submitted_from_outside(make_executor) -> None:
    ex = make_executor(2)
    done = threading.Event()
    seen: list[int] = []
    lock = threading.Lock()

    def task(i: int) -> None:
        with lock:
            seen.append(i)
            if len(seen) == 500:
                done.set()

    for i in range(500):
        ex.submit(lambda i=i: task(i))
    assert done.wait(WAIT)
    assert sorted(seen) == list(range(500))
    assert sum(s.run for s in ex.stats()) >= 500


def test_injector_runs_higher_priority_first_then_arrival_order(make_executor) -> None:
    ex = make_executor(1)
    gate = threading.Event()
    started = threading.Event()
    order: list[str] = []
    done = threading.Event()

    def block() -> None:
        started.set()
        gate.wait(WAIT)

    ex.submit(block)
    assert started.wait(WAIT)
    ex.submit(lambda: order.append("low"), priority=0)
    ex.submit(lambda: order.append("high-1"), priority=5)
    ex.submit(lambda: order.append("mid"), priority=1)
    ex.submit(lambda: order.append("high-2"), priority=5)
    ex.submit(done.set, priority=-1)
    gate.set()
    assert done.wait(WAIT)
    assert order == ["high-1", "high-2", "mid", "low"]


def test_children_go_to_the_submitting_workers_deque_and_run_newest_first(
    make_executor,
) -> None:
    ex = make_executor(1)
    order: list[int] = []
    done = threading.Event()
    workers_seen: list[int | None] = []

    def child(i: int) -> None:
        workers_seen.append(ex.current_worker())
        order.append(i)
        if len(order) == 3:
            done.set()

    def root() -> None:
        for i in range(3):
            ex.submit(lambda i=i: child(i))

    ex.submit(root)
    assert done.wait(WAIT)
    assert order == [2, 1, 0]
    assert workers_seen == [0, 0, 0]


def test_an_idle_worker_steals_from_a_loaded_workers_deque(make_executor) -> None:
    ex = make_executor(2)
    stolen_ran = threading.Event()
    ran_on: list[int | None] = []
    root_worker: list[int | None] = []

    def child() -> None:
        ran_on.append(ex.current_worker())
        stolen_ran.set()

    def root() -> None:
        root_worker.append(ex.current_worker())
        for _ in range(10):
            ex.submit(child)
        # The root keeps its own worker busy until some child has run, which
        # can only happen on the other worker, by stealing.
        assert stolen_ran.wait(WAIT)

    ex.submit(root)
    assert stolen_ran.wait(WAIT)
    thief = 1 - root_worker[0]  # type: ignore[operator]
    assert ran_on[0] == thief
    assert ex.stats()[thief].stolen >= 1


def test_idle_workers_park_and_wake_for_new_work(make_executor) -> None:
    ex = make_executor(2)
    first = threading.Event()
    ex.submit(first.set)
    assert first.wait(WAIT)
    # Wait until both workers have parked at least once (no sleeping: the
    # counters move only when a worker parks).
    parked = threading.Event()

    def check() -> None:
        if all(s.parked for s in ex.stats()):
            parked.set()

    for _ in range(200):
        check()
        if parked.is_set():
            break
        idle_probe = threading.Event()
        ex.submit(idle_probe.set)
        assert idle_probe.wait(WAIT)
    assert parked.is_set()
    again = threading.Event()
    ex.submit(again.set)
    assert again.wait(WAIT)


def test_a_raising_task_is_logged_and_the_worker_lives_on(
    make_executor, caplog: pytest.LogCaptureFixture
) -> None:
    ex = make_executor(1)
    done = threading.Event()

    def boom() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR):
        ex.submit(boom)
        ex.submit(done.set)
        assert done.wait(WAIT)
    assert any("a task raised" in r.getMessage() for r in caplog.records)
    assert ex.alive()


def test_shutdown_runs_queued_work_joins_and_refuses_more() -> None:
    ex = WorkStealingExecutor(2, name="test-worker")
    count = 0
    lock = threading.Lock()

    def task() -> None:
        nonlocal count
        with lock:
            count += 1

    for _ in range(100):
        ex.submit(task)
    assert ex.shutdown()
    assert count == 100
    assert not ex.alive()
    with pytest.raises(RuntimeError):
        ex.submit(task)
