"""Echo's work-stealing executor against ``ThreadPoolExecutor``.

Both pools get the same number of threads and run the very same tasks: each
task calls the same no-op ``_work`` and then reports its completion to a
shared counter, which sets an event on the last one. After the pool is shut
down the counter must stand at exactly the number of tasks: a task lost or
run twice fails the benchmark instead of flattering it. The baseline runs in
the same process right after Echo's pool, for every metric.

Scenarios:

* ``noop_per_s``: no-op tasks, submitted from outside the pool.
* ``1ms_per_s``: tasks that block for a millisecond (I/O-like).
* ``fanout_per_s``: a skewed tree: one root task submits children from
  inside a worker and each child submits grandchildren, so idle workers must
  steal. Against ``ThreadPoolExecutor`` the ratio is large because a submit
  from inside an Echo worker is a lock-free append to its own deque, while
  each ``ThreadPoolExecutor.submit`` makes a future, takes a lock and goes
  through a shared queue; the tasks themselves do nothing. A second record
  puts the figure beside the same tasks called one after another by a
  single thread with no pool at all: under the GIL no pool can beat that
  loop, so a ratio above 1 there would mean the measurement is wrong.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from echo_service.engine import WorkStealingExecutor

__all__ = ["run"]

WORKERS = 4
Task = Callable[[], object]
Submit = Callable[[Task], object]
Body = Callable[[Submit, Callable[[], None]], None]


def _work() -> None:
    """What every task of every scenario does besides reporting: nothing."""


class _Completions:
    """Counts finished tasks; ``done`` is set by the last one."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = threading.Event()
        self._counter = itertools.count(1)

    def finished(self) -> None:
        if next(self._counter) == self.total:  # next() is atomic under the GIL
            self.done.set()

    def check(self) -> None:
        """Once the pool has stopped: every task ran, and ran once."""
        counted = next(self._counter) - 1
        if counted != self.total:
            raise RuntimeError(
                f"{counted} task completions counted, {self.total} expected"
            )


def _measure(submit: Submit, total: int, body: Body) -> tuple[float, _Completions]:
    completions = _Completions(total)
    start = time.perf_counter()
    body(submit, completions.finished)
    if not completions.done.wait(120):
        raise RuntimeError("benchmark tasks did not finish")
    return total / (time.perf_counter() - start), completions


def _noop(n: int) -> tuple[int, Body]:
    def body(submit: Submit, finished: Callable[[], None]) -> None:
        def task() -> None:
            _work()
            finished()

        for _ in range(n):
            submit(task)

    return n, body


def _blocking(n: int) -> tuple[int, Body]:
    def body(submit: Submit, finished: Callable[[], None]) -> None:
        def task() -> None:
            _work()
            time.sleep(0.001)
            finished()

        for _ in range(n):
            submit(task)

    return n, body


def _fanout(children: int, grandchildren: int) -> tuple[int, Body]:
    total = 1 + children + children * grandchildren

    def body(submit: Submit, finished: Callable[[], None]) -> None:
        def leaf() -> None:
            _work()
            finished()

        def child() -> None:
            _work()
            for _ in range(grandchildren):
                submit(leaf)
            finished()

        def root() -> None:
            _work()
            for _ in range(children):
                submit(child)
            finished()

        submit(root)

    return total, body


def _loop(total: int, body: Body) -> float:
    """The same tasks, called one after another on this thread: no pool."""
    queue: deque[Task] = deque()
    completions = _Completions(total)
    start = time.perf_counter()
    body(queue.append, completions.finished)
    while queue:
        queue.pop()()
    rate = total / (time.perf_counter() - start)
    completions.check()
    return rate


def _echo_rate(total: int, body: Body) -> float:
    pool = WorkStealingExecutor(WORKERS, name="bench-echo")
    try:
        rate, completions = _measure(pool.submit, total, body)
    finally:
        pool.shutdown()
    completions.check()
    ran = sum(w.run for w in pool.stats())
    if ran != total:
        raise RuntimeError(f"Echo's workers ran {ran} tasks, {total} submitted")
    return rate


def _pool_rate(total: int, body: Body) -> float:
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="bench-tpe") as pool:
        # Warm the pool up to its full size, as Echo's starts full.
        _measure(pool.submit, WORKERS * 4, _noop(WORKERS * 4)[1])
        rate, completions = _measure(pool.submit, total, body)
    completions.check()
    return rate


def _record(metric: str, echo: float, base: float, name: str) -> dict[str, object]:
    return {
        "scenario": "executor",
        "metric": metric,
        "echo": round(echo, 1),
        "baseline": round(base, 1),
        "baseline_name": name,
        "ratio": round(echo / base, 3),
    }


def _compare(
    metric: str, scenario: tuple[int, Body], repeats: int, *, loop: bool = False
) -> list[dict[str, object]]:
    total, body = scenario
    echo_best = base_best = loop_best = 0.0
    for _ in range(repeats):
        echo_best = max(echo_best, _echo_rate(total, body))
        base_best = max(base_best, _pool_rate(total, body))
        if loop:
            loop_best = max(loop_best, _loop(total, body))
    out = [_record(metric, echo_best, base_best, "ThreadPoolExecutor")]
    if loop:
        out.append(
            _record(metric, echo_best, loop_best, "one thread calling them, no pool")
        )
    return out


def run(quick: bool) -> list[dict[str, object]]:
    """Measure tasks per second for each metric; ``quick`` shrinks the runs."""
    scale = 1 if quick else 5
    repeats = 2 if quick else 3
    return [
        *_compare("noop_per_s", _noop(20_000 * scale), repeats),
        *_compare("1ms_per_s", _blocking(400 * scale), repeats),
        *_compare("fanout_per_s", _fanout(100 * scale, 40), repeats, loop=True),
    ]


if __name__ == "__main__":
    import json
    import sys

    for record in run(quick="--quick" in sys.argv):
        print(json.dumps(record))
