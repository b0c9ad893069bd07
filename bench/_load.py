"""Closed-loop load from this process, the same code for Echo and a baseline.

A load is bounded twice, by a call count and by a time limit, and always
ends by itself. Threads are started and joined by the function that uses
them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import grpc

from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

__all__ = ["Load", "calls_per_second", "run_load"]


@dataclass(frozen=True)
class Load:
    units: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.units / self.seconds


def calls_per_second(
    address: str,
    call: Callable[[rpc.EchoServiceStub], int],
    *,
    threads: int,
    calls: int,
    limit: timedelta,
    warmup: int = 20,
) -> float:
    """Units per second of ``run_load``."""
    return run_load(
        address, call, threads=threads, calls=calls, limit=limit, warmup=warmup
    ).rate


def run_load(
    address: str,
    call: Callable[[rpc.EchoServiceStub], int],
    *,
    threads: int,
    calls: int,
    limit: timedelta,
    warmup: int = 20,
) -> Load:
    """Run ``call`` in a loop on ``threads`` threads sharing one channel.

    ``call`` returns how many units it did (actions, for batch calls); the
    answer is units per second over the wall time from the common start to
    the last thread's end. Each thread makes at most ``calls // threads``
    calls and stops at ``limit``.
    """
    per_thread = max(1, calls // threads)
    done = [0] * threads
    errors: list[BaseException] = []
    start_line = threading.Barrier(threads + 1)
    with grpc.insecure_channel(address) as channel:
        stub = rpc.EchoServiceStub(channel)
        for _ in range(warmup):
            call(stub)
        end_by = [0.0]

        def worker(slot: int) -> None:
            try:
                start_line.wait(30)
                stop_at = end_by[0]
                units = 0
                for _ in range(per_thread):
                    units += call(stub)
                    if time.perf_counter() > stop_at:
                        break
                done[slot] = units
            except BaseException as exc:  # reported by the owner
                errors.append(exc)

        workers = [
            threading.Thread(target=worker, args=(i,), name=f"bench-load-{i}")
            for i in range(threads)
        ]
        for thread in workers:
            thread.start()
        started = time.perf_counter()
        end_by[0] = started + limit.total_seconds()
        try:
            start_line.wait(30)
        finally:
            for thread in workers:
                thread.join(limit.total_seconds() + 60)
        elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"load failed: {errors[0]!r}") from errors[0]
    return Load(sum(done), elapsed)
