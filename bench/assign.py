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

from ._echo import SERVER_STYLE, assign_request, capture_assign, echo_server
from ._harness import Record, record
from ._load import calls_per_second
from ._servers import RAW_NAME, raw_server

__all__ = ["run"]

_REQUEST = assign_request()


def _assign(stub: rpc.EchoServiceStub) -> int:
    stub.Assign(_REQUEST, timeout=30)
    return 1


def _measure(address: str, *, calls: int, limit: timedelta) -> dict[int, float]:
    return {
        threads: calls_per_second(
            address, _assign, threads=threads, calls=calls, limit=limit
        )
        for threads in (1, 8)
    }


def run(quick: bool) -> list[Record]:
    calls = 200 if quick else 20_000
    limit = timedelta(seconds=2 if quick else 15)
    repeats = 1 if quick else 3
    echo: dict[int, float] = {1: 0.0, 8: 0.0}
    base: dict[int, float] = {1: 0.0, 8: 0.0}
    for _ in range(repeats):
        with echo_server(store="sqlite") as server:
            answer = capture_assign(server.address)
            for threads, rate in _measure(
                server.address, calls=calls, limit=limit
            ).items():
                echo[threads] = max(echo[threads], rate)
        with raw_server(style=SERVER_STYLE, assign_response=answer) as raw:
            for threads, rate in _measure(
                raw.address, calls=calls, limit=limit
            ).items():
                base[threads] = max(base[threads], rate)
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
    ]
