"""CPU time a server spends per call: what limits a figure on two cores.

Throughput on a shared machine drifts; CPU seconds per unit of work drift far
less, and they say whether a server is bound by its own work (CPU per call
near the core's share) or waits on something else (a sync, a handoff).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cpu_seconds", "measure_cpu"]

_QUIET = 0.01  # CPU seconds per 0.2 s below which a server counts as idle


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process and its children so far."""
    try:
        import psutil  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
    except ImportError:
        return None
    process = psutil.Process(pid)
    times = process.cpu_times()
    total: float = times.user + times.system
    for child in process.children(recursive=True):
        child_times = child.cpu_times()
        total += child_times.user + child_times.system
    return total


def _settle(pid: int, limit: float) -> None:
    """Wait until the server is idle: work it queued has been done."""
    end = time.perf_counter() + limit
    last = cpu_seconds(pid)
    while last is not None and time.perf_counter() < end:
        time.sleep(0.2)
        now = cpu_seconds(pid)
        if now is None or now - last < _QUIET:
            return
        last = now


@contextmanager
def measure_cpu(pid: int, *, settle: float = 30.0) -> Iterator[list[float | None]]:
    """CPU seconds ``pid`` spent in the block and on what it left queued.

    The list holds one item, None while running or when psutil is missing.
    """
    out: list[float | None] = [None]
    before = cpu_seconds(pid)
    yield out
    _settle(pid, settle)
    after = cpu_seconds(pid)
    if before is not None and after is not None:
        out[0] = after - before
