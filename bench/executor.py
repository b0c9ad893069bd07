"""Echo's work-stealing executor against ``ThreadPoolExecutor``.

Both pools get the same number of threads and run the very same task
functions; completion is counted the same way (a shared counter that sets an
event on the last task), so the only difference is the pool itself. The
baseline runs in the same process right after Echo's pool, for every metric.

Scenarios:

* ``noop_per_s``: tasks that do nothing, submitted from outside the pool.
* ``1ms_per_s``: tasks that block for a millisecond (I/O-like).
* ``fanout_per_s``: a skewed tree: one root spawns children from inside a
  worker and each child spawns grandchildren, so idle workers must steal.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from echo_service.engine import WorkStealingExecutor

__all__ = ["run"]

WORKERS = 4
Submit = Callable[[Callable[[], object]], object]


def _measure(
    submit: Submit, total: int, body: Callable[[Submit, Callable[[], None]], None]
) -> float:
    done = threading.Event()
    counter = itertools.count(1)

    def finished() -> None:
        if next(counter) == total:
            done.set()

    start = time.perf_counter()
    body(submit, finished)
    if not done.wait(120):
        raise RuntimeError("benchmark tasks did not finish")
    return total / (time.perf_counter() - start)


def _noop(n: int) -> tuple[int, Callable[[Submit, Callable[[], None]], None]]:
    def body(submit: Submit, finished: Callable[[], None]) -> None:
        for _ in range(n):
            submit(finished)

    return n, body


def _blocking(n: int) -> tuple[int, Callable[[Submit, Callable[[], None]], None]]:
    def body(submit: Submit, finished: Callable[[], None]) -> None:
        def task() -> None:
            time.sleep(0.001)
            finished()

        for _ in range(n):
            submit(task)

    return n, body


def _fanout(
    children: int, grandchildren: int
) -> tuple[int, Callable[[Submit, Callable[[], None]], None]]:
    total = 1 + children + children * grandchildren

    def body(submit: Submit, finished: Callable[[], None]) -> None:
        def child() -> None:
            for _ in range(grandchildren):
                submit(finished)
            finished()

        def root() -> None:
            for _ in range(children):
                submit(child)
            finished()

        submit(root)

    return total, body


def _compare(
    metric: str,
    scenario: tuple[int, Callable[[Submit, Callable[[], None]], None]],
    repeats: int,
) -> dict[str, object]:
    total, body = scenario
    echo_best = base_best = 0.0
    for _ in range(repeats):
        echo = WorkStealingExecutor(WORKERS, name="bench-echo")
        try:
            echo_best = max(echo_best, _measure(echo.submit, total, body))
        finally:
            echo.shutdown()
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="bench-tpe") as pool:
            # Warm the pool up to its full size, as Echo's starts full.
            _measure(pool.submit, WORKERS * 4, _noop(WORKERS * 4)[1])
            base_best = max(base_best, _measure(pool.submit, total, body))
    return {
        "scenario": "executor",
        "metric": metric,
        "echo": round(echo_best, 1),
        "baseline": round(base_best, 1),
        "baseline_name": "ThreadPoolExecutor",
        "ratio": round(echo_best / base_best, 3),
    }


def run(quick: bool) -> list[dict[str, object]]:
    """Measure tasks per second for each metric; ``quick`` shrinks the runs."""
    scale = 1 if quick else 5
    repeats = 2 if quick else 3
    return [
        _compare("noop_per_s", _noop(20_000 * scale), repeats),
        _compare("1ms_per_s", _blocking(400 * scale), repeats),
        _compare("fanout_per_s", _fanout(100 * scale, 40), repeats),
    ]


if __name__ == "__main__":
    import json
    import sys

    for record in run(quick="--quick" in sys.argv):
        print(json.dumps(record))
