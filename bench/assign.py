"""Unary Assign against the transport's physical limit.

Echo runs with its durable default store (SQLite): every Assign answers only
once its action is committed, and the assigned no-op actions run meanwhile,
as they would in use. The baseline is a bare grpcio server of the same style
that answers each call with a prebuilt message of exactly the size of
Echo's real answer (captured from the Echo server first) and does nothing
else. Both are driven by the same client code from this process, one server
at a time, alternating, best of ``repeats``.
"""

from __future__ import annotations

from datetime import timedelta

from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

from ._cpu import measure_cpu
from ._echo import SERVER_STYLE, assign_request, capture_assign, echo_server
from ._harness import Record, record
from ._load import calls_per_second, run_load
from ._servers import RAW_NAME, raw_server

__all__ = ["run"]

_REQUEST = assign_request()


def _assign(stub: rpc.EchoServiceStub) -> int:
    stub.Assign(_REQUEST, timeout=30)
    return 1


def _measure(
    address: str, pid: int, *, calls: int, limit: timedelta
) -> tuple[dict[int, float], float | None]:
    """Calls per second with 1 and 8 client threads, and the server's CPU
    microseconds per call under 8 threads (its queued work included)."""
    rates = {1: calls_per_second(address, _assign, threads=1, calls=calls, limit=limit)}
    with measure_cpu(pid) as cpu:
        load = run_load(address, _assign, threads=8, calls=calls, limit=limit)
    rates[8] = load.rate
    used = cpu[0]
    return rates, None if used is None else used * 1e6 / load.units


def run(quick: bool) -> list[Record]:
    calls = 200 if quick else 20_000
    limit = timedelta(seconds=2 if quick else 15)
    repeats = 1 if quick else 3
    echo: dict[int, float] = {1: 0.0, 8: 0.0}
    base: dict[int, float] = {1: 0.0, 8: 0.0}
    echo_cpu: list[float] = []
    base_cpu: list[float] = []
    for _ in range(repeats):
        with echo_server(store="sqlite") as server:
            answer = capture_assign(server.address)
            rates, cpu = _measure(server.address, server.pid, calls=calls, limit=limit)
            echo = {t: max(echo[t], rates[t]) for t in echo}
            echo_cpu.extend([] if cpu is None else [cpu])
        with raw_server(style=SERVER_STYLE, assign_response=answer) as raw:
            rates, cpu = _measure(raw.address, raw.pid, calls=calls, limit=limit)
            base = {t: max(base[t], rates[t]) for t in base}
            base_cpu.extend([] if cpu is None else [cpu])
    name = RAW_NAME(SERVER_STYLE)
    return [
        record(
            "assign",
            "unary_1_thread_per_s",
            echo=echo[1],
            baseline=base[1],
            baseline_name=name,
        ),
        record(
            "assign",
            "unary_8_threads_per_s",
            echo=echo[8],
            baseline=base[8],
            baseline_name=name,
        ),
        record(
            "assign",
            "server_cpu_us_per_assign",
            echo=min(echo_cpu) if echo_cpu else None,
            baseline=min(base_cpu) if base_cpu else None,
            baseline_name=name,
            lower_is_better=True,
        ),
    ]
