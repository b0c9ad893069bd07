"""Event fan-out: every listener gets every event, Echo beside raw streaming.

Echo: ``listeners`` ``Stream`` calls watch the no-op action's events while
one client assigns ``actions`` no-ops in batches; each listener is done when
it has seen every action succeed. The figure is events delivered per second,
summed over the listeners, from the first assign to the last listener done;
it includes producing the events (the actions really run and are
journaled), as a user watching a busy server sees it.

Baseline: the bare grpcio server (same style) streaming a real Echo event
message (captured from the Echo run), the same count per listener, as fast
as the transport carries it. The listeners are one asyncio client in this
process for both.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import grpc

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

from ._echo import SERVER_STYLE, assign_request, echo_server
from ._harness import Record, record
from ._servers import RAW_NAME, raw_server

__all__ = ["LISTENERS", "run"]

LISTENERS = (1, 10, 100)
_BATCH = 500


@dataclass
class _Echoed:
    rate: float
    per_listener: int
    """Events each listener received, for the baseline to send as many."""
    sample: bytes
    """A serialized SUCCEEDED event message, for the baseline's size."""


async def _listen_echo(
    stub: rpc.EchoServiceStub,
    actions: int,
    got: list[int],
    resumed: list[int],
    slot: int,
) -> bytes:
    """Counts events until every action succeeded; returns a sample event.

    A listener that falls behind its server-side buffer gets a retryable
    ``StreamEnd`` and resumes after its last sequence, as Echo's clients do;
    the replayed events count like live ones.
    """
    last = 0
    succeeded = 0
    sample = b""
    while True:
        request = echo_service_pb2.StreamRequest(
            action_names=["Noop"], after_sequence=last
        )
        call = stub.Stream(request)
        ended = None
        try:
            async for message in call:
                kind = message.WhichOneof("kind")
                if kind == "end":
                    ended = message.end
                    break
                if kind != "event":
                    continue
                got[slot] += 1
                last = max(last, message.event.sequence)
                if message.event.state == action_pb2.ACTION_STATE_SUCCEEDED:
                    succeeded += 1
                    if not sample:
                        sample = message.SerializeToString()
                    if succeeded >= actions:
                        return sample
        finally:
            call.cancel()
        if ended is None or not ended.retryable:
            why = "closed" if ended is None else ended.reason
            raise RuntimeError(f"event stream ended: {why}")
        resumed[slot] += 1


async def _echo_run(
    address: str, listeners: int, actions: int, limit: float
) -> _Echoed:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpc.EchoServiceStub(channel)
        got = [0] * listeners
        resumed = [0] * listeners
        started = time.perf_counter()
        deadline = started + limit
        tasks = [
            asyncio.ensure_future(_listen_echo(stub, actions, got, resumed, i))
            for i in range(listeners)
        ]
        action = assign_request().action
        left = actions
        try:
            while left > 0:
                size = min(_BATCH, left)
                request = echo_service_pb2.AssignManyRequest(actions=[action] * size)
                await stub.AssignMany(request, timeout=60)
                left -= size
            samples = await asyncio.wait_for(
                asyncio.gather(*tasks), deadline - time.perf_counter()
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - started
    if sum(resumed):
        print(
            f"fanout: {listeners} listener(s) fell behind {sum(resumed)} time(s)"
            " in all and resumed from their last sequence",
            file=sys.stderr,
        )
    return _Echoed(sum(got) / elapsed, min(got), samples[0])


async def _listen_raw(
    stub: rpc.EchoServiceStub, count: int, got: list[int], slot: int
) -> None:
    metadata = (("x-bench-mode", "send"), ("x-bench-count", str(count)))
    call = stub.Stream(echo_service_pb2.StreamRequest(), metadata=metadata)
    async for message in call:
        if message.WhichOneof("kind") == "event":
            got[slot] += 1


async def _raw_run(address: str, listeners: int, count: int, limit: float) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpc.EchoServiceStub(channel)
        got = [0] * listeners
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(
                *(_listen_raw(stub, count, got, i) for i in range(listeners))
            ),
            limit,
        )
        elapsed = time.perf_counter() - started
    if min(got) < count:
        raise RuntimeError(f"raw listeners got {min(got)} of {count} events")
    return sum(got) / elapsed


def run(quick: bool) -> list[Record]:
    limit = timedelta(seconds=20 if quick else 120).total_seconds()
    records: list[Record] = []
    for listeners in LISTENERS:
        actions = max(20, (400 if quick else 10_000) // listeners)
        with echo_server(store="sqlite") as server:
            echoed = asyncio.run(_echo_run(server.address, listeners, actions, limit))
        with raw_server(style=SERVER_STYLE, stream_response=echoed.sample) as raw:
            base = asyncio.run(
                _raw_run(raw.address, listeners, echoed.per_listener, limit)
            )
        records.append(
            record(
                "fanout",
                f"events_per_s_{listeners}",
                echo=echoed.rate,
                baseline=base,
                baseline_name=f"{RAW_NAME(SERVER_STYLE)} server streaming",
            )
        )
    return records
