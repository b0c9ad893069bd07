"""Memory: a million waiting actions, and what each open stream costs.

``rss_1m_queued_mb``: Echo's server (durable default store) is handed a
million no-op actions delayed by an hour, in ``AssignMany`` calls of 10,000;
the figure is the server's peak resident memory while it takes them and
just after. The waiting actions belong in the journal, not in memory. The
baseline is the usual alternative's queue: a private Redis holding the same
count of real Celery task messages (one captured from Celery's own client,
copied with fresh ids), measured the same way. It is skipped, with the
command that installs Redis, when redis-server is missing.

``rss_per_stream_kb``: the growth of the server's resident memory per open
idle ``Stream``, with ``streams`` of them open at once; the baseline is the
bare grpcio server (same style) holding as many idle streams.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import grpc

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

from ._echo import SERVER_STYLE, echo_server
from ._harness import Missing, Record, record
from ._servers import RAW_NAME, raw_server, redis_server, require_redis

__all__ = ["run"]

_MB = 1024 * 1024
_CHUNK = 10_000


def _psutil() -> object:
    try:
        import psutil  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
    except ImportError as exc:
        raise Missing("psutil is not installed (pip install -e '.[bench]')") from exc
    return psutil


def rss(pid: int) -> int:
    """Resident bytes of a process and its children."""
    psutil = _psutil()
    process = psutil.Process(pid)  # type: ignore[attr-defined]
    total: int = process.memory_info().rss
    for child in process.children(recursive=True):
        total += child.memory_info().rss
    return total


@contextmanager
def _peak(pid: int) -> Iterator[list[int]]:
    """Samples ``pid``'s RSS every 50 ms; the list holds the peak seen."""
    peak = [rss(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss(pid))

    sampler = threading.Thread(target=sample, name="bench-rss", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join(5)
        peak[0] = max(peak[0], rss(pid))


def _delayed_many(count: int) -> echo_service_pb2.AssignManyRequest:
    action = action_pb2.Action(name="Noop")
    action.options.delay.FromTimedelta(timedelta(hours=1))
    return echo_service_pb2.AssignManyRequest(actions=[action] * count)


def _echo_queued(total: int, limit: float) -> tuple[float, int]:
    with (
        echo_server(store="sqlite") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = rpc.EchoServiceStub(channel)
        request = _delayed_many(_CHUNK)
        done = 0
        deadline = time.perf_counter() + limit
        with _peak(server.pid) as peak:
            while done < total and time.perf_counter() < deadline:
                if total - done < _CHUNK:
                    request = _delayed_many(total - done)
                done += len(stub.AssignMany(request, timeout=120).results)
            # Let whatever the server keeps per action settle, then sample.
            time.sleep(1.0)
    return peak[0] / _MB, done


def _celery_message(url: str) -> bytes:
    from ._celery_app import make_app  # noqa: PLC0415 - optional dependency

    app = make_app(url)
    try:
        app.send_task("noop", countdown=3600, queue="bench-memory")
    finally:
        app.close()
    import redis  # noqa: PLC0415 - optional dependency

    client = redis.Redis.from_url(url)
    try:
        message = client.rpop("bench-memory")
    finally:
        client.close()
    if not isinstance(message, bytes):
        raise RuntimeError("Celery left no message in Redis")
    return message


def _redis_queued(total: int, limit: float) -> float:
    import redis  # noqa: PLC0415 - optional dependency

    with redis_server() as server:
        template = json.loads(_celery_message(server.url))
        old_id = template["headers"]["id"]
        text = json.dumps(template)
        client = redis.Redis.from_url(server.url)
        deadline = time.perf_counter() + limit
        try:
            with _peak(server.pid) as peak:
                done = 0
                while done < total and time.perf_counter() < deadline:
                    pipe = client.pipeline(transaction=False)
                    for i in range(done, min(total, done + _CHUNK)):
                        fresh = f"{i:08d}" + old_id[8:]
                        pipe.lpush("celery", text.replace(old_id, fresh))
                    pipe.execute()
                    done = min(total, done + _CHUNK)
                time.sleep(1.0)
        finally:
            client.close()
    if done < total:
        print(f"memory: Redis took {done} of {total} messages", file=sys.stderr)
    return peak[0] / _MB


async def _hold_streams(
    address: str, count: int, pid: int, raw: bool
) -> tuple[int, int]:
    """RSS before and with ``count`` idle streams open (each proven up)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpc.EchoServiceStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 30)
        await asyncio.sleep(0.5)
        before = rss(pid)
        if raw:
            calls = [
                stub.Stream(
                    echo_service_pb2.StreamRequest(),
                    metadata=(("x-bench-mode", "idle"),),
                )
                for _ in range(count)
            ]
        else:
            request = echo_service_pb2.StreamRequest(action_names=["Noop"])
            request.heartbeat_interval.FromTimedelta(timedelta(seconds=1))
            calls = [stub.Stream(request) for _ in range(count)]
        try:
            # The first message (a heartbeat for Echo) proves a stream is up.
            await asyncio.wait_for(asyncio.gather(*(call.read() for call in calls)), 60)
            await asyncio.sleep(0.5)
            with_streams = rss(pid)
        finally:
            for call in calls:
                call.cancel()
    return before, with_streams


def _per_stream_kb(address: str, pid: int, count: int, *, raw: bool) -> float:
    before, after = asyncio.run(_hold_streams(address, count, pid, raw))
    return max(0, after - before) / count / 1024


def run(quick: bool) -> list[Record]:
    _psutil()
    total = 20_000 if quick else 1_000_000
    streams = 20 if quick else 500
    limit = 30.0 if quick else 400.0
    echo_mb, done = _echo_queued(total, limit)
    if done < total:
        print(f"memory: Echo took {done} of {total} actions in time", file=sys.stderr)
    try:
        require_redis()
        base_mb: float | None = _redis_queued(done, limit)
        base_name = "Celery messages in Redis"
    except Missing as exc:
        print(f"memory: baseline skipped: {exc}", file=sys.stderr)
        base_mb, base_name = None, f"Celery messages in Redis (skipped: {exc})"
    with echo_server(store="sqlite") as server:
        echo_kb = _per_stream_kb(server.address, server.pid, streams, raw=False)
    with raw_server(style=SERVER_STYLE) as raw:
        base_kb = _per_stream_kb(raw.address, raw.pid, streams, raw=True)
    return [
        record(
            "memory",
            "rss_1m_queued_mb",
            echo=echo_mb,
            baseline=base_mb,
            baseline_name=base_name,
            lower_is_better=True,
        ),
        record(
            "memory",
            "rss_per_stream_kb",
            echo=echo_kb,
            baseline=base_kb,
            baseline_name=f"{RAW_NAME(SERVER_STYLE)} idle streams",
            lower_is_better=True,
        ),
    ]
