"""Bulk assign: many actions per call, batch and client-streamed.

``actions_per_s`` sends ``AssignMany`` calls of ``BATCH`` actions;
``stream_actions_per_s`` sends ``AssignStream`` calls of ``STREAM_MESSAGES``
messages of ``STREAM_CHUNK`` actions each, journaled when the client
half-closes. Two client threads keep the server busy while one waits for
its commit. Echo uses its durable default store and runs the assigned
no-ops meanwhile; the baseline is the bare grpcio server (same style)
answering with as many copies of Echo's real per-action answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from echo_service._proto.echo.v1 import echo_service_pb2
from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

from ._echo import SERVER_STYLE, assign_request, capture_assign, echo_server
from ._harness import Record, record
from ._load import calls_per_second
from ._servers import RAW_NAME, raw_server

__all__ = ["BATCH", "STREAM_CHUNK", "STREAM_MESSAGES", "run"]

BATCH = 1000
STREAM_CHUNK = 100
STREAM_MESSAGES = 10
THREADS = 2

_ACTION = assign_request().action
_MANY = echo_service_pb2.AssignManyRequest(actions=[_ACTION] * BATCH)
_CHUNK = echo_service_pb2.AssignStreamRequest(actions=[_ACTION] * STREAM_CHUNK)


def _many(stub: rpc.EchoServiceStub) -> int:
    return len(stub.AssignMany(_MANY, timeout=120).results)


def _chunks() -> Iterator[echo_service_pb2.AssignStreamRequest]:
    for _ in range(STREAM_MESSAGES):
        yield _CHUNK


def _stream(stub: rpc.EchoServiceStub) -> int:
    return len(stub.AssignStream(_chunks(), timeout=120).results)


def _measure(address: str, *, actions: int, limit: timedelta) -> tuple[float, float]:
    many = calls_per_second(
        address,
        _many,
        threads=THREADS,
        calls=max(THREADS, actions // BATCH),
        limit=limit,
        warmup=2,
    )
    streamed = calls_per_second(
        address,
        _stream,
        threads=THREADS,
        calls=max(THREADS, actions // (STREAM_CHUNK * STREAM_MESSAGES)),
        limit=limit,
        warmup=2,
    )
    return many, streamed


def run(quick: bool) -> list[Record]:
    actions = 4_000 if quick else 200_000
    limit = timedelta(seconds=5 if quick else 20)
    repeats = 1 if quick else 2
    echo = [0.0, 0.0]
    base = [0.0, 0.0]
    for _ in range(repeats):
        with echo_server(store="sqlite") as server:
            answer = capture_assign(server.address)
            got = _measure(server.address, actions=actions, limit=limit)
            echo = [max(a, b) for a, b in zip(echo, got, strict=True)]
        with raw_server(style=SERVER_STYLE, assign_response=answer) as raw:
            got = _measure(raw.address, actions=actions, limit=limit)
            base = [max(a, b) for a, b in zip(base, got, strict=True)]
    name = RAW_NAME(SERVER_STYLE)
    return [
        record(
            "bulk",
            "actions_per_s",
            echo=echo[0],
            baseline=base[0],
            baseline_name=f"{name}, AssignMany of {BATCH}",
        ),
        record(
            "bulk",
            "stream_actions_per_s",
            echo=echo[1],
            baseline=base[1],
            baseline_name=f"{name}, AssignStream of {STREAM_MESSAGES}x{STREAM_CHUNK}",
        ),
    ]
