"""End to end: assign a no-op, see it finish; Echo beside Celery and Dramatiq.

Every system runs the same no-op task on the same machine, one system at a
time, each stopped before the next starts:

* Echo: its server with the durable default store (SQLite, a sync per
  commit); completions are seen on one ``Stream`` of events, as a client
  would watch them.
* Celery: Redis broker and result backend, one worker with the thread pool
  at concurrency 8; completions through ``AsyncResult.get``.
* Dramatiq: the same Redis, 2 worker processes of 8 threads; completions
  through the results middleware.

Redis keeps nothing on disk (see ``bench._servers.redis_server``), so both
baselines run without the durability Echo pays for.

Two measurements per system, each bounded in count and time:

* throughput: one client thread submits ``n`` tasks as fast as the system's
  client allows, then waits for all; tasks per second from the first submit
  to the last completion. ``throughput_per_s`` is each system's own way to
  submit many tasks: ``AssignMany`` of 100 for Echo, one message per task
  for the baselines (their clients have no batch message; their figure is
  bounded by their workers, not by submitting). ``unary_throughput_per_s``
  is Echo submitting one ``Assign`` per task, like for like with the
  baselines' one message each; every answer waits for its durable commit,
  which is what bounds it.
  Echo's listener asks for the final states only (``StreamRequest.states``),
  as a client waiting for results does.
* round trip: one client submits a task and waits for its completion, ``m``
  times in a row; p50 and p99 in milliseconds.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any

import grpc

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

from ._echo import assign_request, echo_server, require_echo
from ._harness import (
    Child,
    Missing,
    Record,
    bounded,
    percentile,
    python_env,
    record,
    tool,
)
from ._servers import redis_server, require_redis

__all__ = ["run"]

_BATCH = 100
_FINAL = frozenset(
    {
        action_pb2.ACTION_STATE_SUCCEEDED,
        action_pb2.ACTION_STATE_FAILED,
        action_pb2.ACTION_STATE_CANCELLED,
    }
)


@dataclass
class _Result:
    throughput: float
    """Tasks per second, submitted the system's own way for many."""
    rtts_ms: list[float]
    unary_throughput: float | None = None
    """Echo only: one ``Assign`` per task."""


@dataclass(frozen=True)
class _Plan:
    n: int
    m: int
    limit: timedelta


class _Completions:
    """Watches the event stream and notes when each action finished.

    When the server ends the stream because this listener fell behind its
    buffer (a retryable ``StreamEnd``), the watcher resumes after the last
    sequence it saw, as any Echo client must; ``resumes`` counts that.

    The reader thread alone writes ``_done``, ``_call`` and ``resumes``;
    the waiter reads them under ``_cond``. One waiter at a time: it leaves
    the ids it still waits for in ``_pending``, and the reader wakes it only
    when that set empties (or on an error), so waiting for n actions costs
    O(n) on the client, not a scan and a thread switch per event; the client
    shares the machine's cores with the server it measures. ``close``
    cancels the current call and joins the reader.
    """

    def __init__(self, stub: rpc.EchoServiceStub) -> None:
        self._stub = stub
        self._cond = threading.Condition()
        self._done: dict[str, float] = {}
        self._failed: list[str] = []
        self._pending: set[str] = set()
        self._error: BaseException | None = None
        self._closing = False
        self.resumes = 0
        # Replaying from 0 on a fresh server: nothing is missed however soon
        # the first assign comes after the stream is opened.
        self._last = 0
        self._call = self._open()
        self._thread = threading.Thread(
            target=self._read, name="bench-e2e-events", daemon=True
        )
        self._thread.start()

    def _open(self) -> Any:
        # Only the final events: what a client waiting for results needs.
        request = echo_service_pb2.StreamRequest(
            action_names=["Noop"], after_sequence=self._last, states=sorted(_FINAL)
        )
        return self._stub.Stream(request)

    def _read(self) -> None:
        try:
            while True:
                ended = self._read_call()
                with self._cond:
                    if self._closing:
                        return
                    if ended is None or not ended.retryable:
                        why = "closed" if ended is None else ended.reason
                        raise RuntimeError(f"event stream ended: {why}")
                    self.resumes += 1
                    self._call = self._open()
        except grpc.RpcError as exc:
            with self._cond:
                if not self._closing:
                    self._error = exc
                self._cond.notify_all()
        except RuntimeError as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _read_call(self) -> Any:
        """Reads one call to its end; returns its StreamEnd, if it sent one."""
        for message in self._call:
            kind = message.WhichOneof("kind")
            if kind == "end":
                return message.end
            if kind != "event":
                continue
            event = message.event
            self._last = max(self._last, event.sequence)
            if event.state not in _FINAL:
                continue
            now = time.perf_counter()
            with self._cond:
                self._done[event.action_id] = now
                pending = self._pending
                if event.state != action_pb2.ACTION_STATE_SUCCEEDED:
                    self._failed.append(event.action_id)
                    self._cond.notify_all()
                elif pending:
                    pending.discard(event.action_id)
                    if not pending:
                        self._cond.notify_all()
        return None

    def wait(self, ids: Sequence[str], timeout: float) -> float:
        """Wait until every id finished; returns when the last one did."""
        with self._cond:
            pending = self._pending = {i for i in ids if i not in self._done}
            ok = self._cond.wait_for(
                lambda: self._error is not None or bool(self._failed) or not pending,
                timeout,
            )
            self._pending = set()
            if self._error is not None:
                raise RuntimeError(f"event stream failed: {self._error!r}")
            if not ok:
                missing = sum(1 for i in ids if i not in self._done)
                raise RuntimeError(f"{missing} actions did not finish in {timeout}s")
            if self._failed:
                raise RuntimeError(f"actions failed: {self._failed[:5]}")
            return max(self._done[i] for i in ids)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            call = self._call
        call.cancel()
        self._thread.join(10)
        if self._thread.is_alive():  # it opened a new call just before
            self._call.cancel()
            self._thread.join(10)


def _echo(plan: _Plan) -> _Result:
    request = assign_request()
    timeout = plan.limit.total_seconds()
    with (
        echo_server(store="sqlite") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = rpc.EchoServiceStub(channel)
        watch = _Completions(stub)
        try:
            warm = [stub.Assign(request, timeout=30).action.id for _ in range(20)]
            watch.wait(warm, 30)

            # Like for like: one call per task.
            started = time.perf_counter()
            ids = [
                stub.Assign(request, timeout=30).action.id
                for _ in bounded(plan.n, timeout)
            ]
            throughput = len(ids) / (watch.wait(ids, timeout) - started)

            # Echo's bulk path: many tasks per call.
            many = echo_service_pb2.AssignManyRequest(actions=[request.action] * _BATCH)
            started = time.perf_counter()
            ids = []
            for _ in bounded(max(1, plan.n // _BATCH), timeout):
                answer = stub.AssignMany(many, timeout=60)
                ids.extend(result.action.id for result in answer.results)
            batch = len(ids) / (watch.wait(ids, timeout) - started)

            rtts = []
            for _ in bounded(plan.m, timeout):
                sent = time.perf_counter()
                action_id = stub.Assign(request, timeout=30).action.id
                rtts.append((watch.wait([action_id], 30) - sent) * 1000)
        finally:
            watch.close()
            if watch.resumes:
                print(
                    f"e2e: Echo's listener fell behind {watch.resumes} time(s)"
                    " and resumed from its last sequence",
                    file=sys.stderr,
                )
    return _Result(batch, rtts, unary_throughput=throughput)


def _celery(url: str, plan: _Plan) -> _Result:
    command = tool("celery")
    if command is None:
        raise Missing("celery is not installed (pip install -e '.[bench]')")
    from ._celery_app import make_app  # noqa: PLC0415 - optional dependency

    timeout = plan.limit.total_seconds()
    argv = [
        command,
        "-A",
        "bench._celery_app",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        "8",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "WARNING",
        "--hostname",
        "bench@%h",
    ]
    env = python_env({"ECHO_BENCH_REDIS": url})
    app = make_app(url)
    with Child(argv, env=env):
        try:
            # The first result also proves the worker is up and consuming.
            for _ in range(20):
                app.send_task("noop").get(timeout=60)

            started = time.perf_counter()
            results = [app.send_task("noop") for _ in bounded(plan.n, timeout)]
            for result in results:
                result.get(timeout=timeout)
            throughput = len(results) / (time.perf_counter() - started)

            rtts = []
            for _ in bounded(plan.m, timeout):
                sent = time.perf_counter()
                app.send_task("noop").get(timeout=30)
                rtts.append((time.perf_counter() - sent) * 1000)
        finally:
            app.close()
    return _Result(throughput, rtts)


def _dramatiq_module(url: str) -> ModuleType:
    """The actor module, bound to ``url`` (Dramatiq binds at import)."""
    os.environ["ECHO_BENCH_REDIS"] = url
    name = "bench._dramatiq_app"
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def _dramatiq(url: str, plan: _Plan) -> _Result:
    command = tool("dramatiq")
    if command is None:
        raise Missing("dramatiq is not installed (pip install -e '.[bench]')")
    module = _dramatiq_module(url)
    noop = module.noop
    timeout = plan.limit.total_seconds()
    argv = [command, "bench._dramatiq_app", "--processes", "2", "--threads", "8"]
    env = python_env({"ECHO_BENCH_REDIS": url})
    wait_ms = int(timeout * 1000)
    with Child(argv, env=env):
        try:
            for _ in range(20):
                noop.send().get_result(block=True, timeout=60_000)

            started = time.perf_counter()
            messages = [noop.send() for _ in bounded(plan.n, timeout)]
            for message in messages:
                message.get_result(block=True, timeout=wait_ms)
            throughput = len(messages) / (time.perf_counter() - started)

            rtts = []
            for _ in bounded(plan.m, timeout):
                sent = time.perf_counter()
                noop.send().get_result(block=True, timeout=30_000)
                rtts.append((time.perf_counter() - sent) * 1000)
        finally:
            module.broker.close()
    return _Result(throughput, rtts)


def _flush(url: str) -> None:
    import redis  # noqa: PLC0415 - optional dependency

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


def _records(echo: _Result, base: _Result, name: str) -> list[Record]:
    return [
        record(
            "e2e",
            "throughput_per_s",
            echo=echo.throughput,
            baseline=base.throughput,
            baseline_name=name,
        ),
        record(
            "e2e",
            "unary_throughput_per_s",
            echo=echo.unary_throughput,
            baseline=base.throughput,
            baseline_name=name,
        ),
        record(
            "e2e",
            "rtt_p50_ms",
            echo=percentile(echo.rtts_ms, 0.5),
            baseline=percentile(base.rtts_ms, 0.5),
            baseline_name=name,
            lower_is_better=True,
        ),
        record(
            "e2e",
            "rtt_p99_ms",
            echo=percentile(echo.rtts_ms, 0.99),
            baseline=percentile(base.rtts_ms, 0.99),
            baseline_name=name,
            lower_is_better=True,
        ),
    ]


_BASELINES: dict[str, Callable[[str, _Plan], _Result]] = {
    "Celery (Redis, 8 threads)": _celery,
    "Dramatiq (Redis, 2 processes x 8 threads)": _dramatiq,
}


def run(quick: bool) -> list[Record]:
    require_echo()
    require_redis()  # its message says how to install it
    for command in ("celery", "dramatiq"):
        if tool(command) is None:
            raise Missing(f"{command} is not installed (pip install -e '.[bench]')")
    plan = (
        _Plan(n=100, m=20, limit=timedelta(seconds=20))
        if quick
        else _Plan(n=10_000, m=2_000, limit=timedelta(seconds=90))
    )
    echo = _echo(plan)
    records: list[Record] = []
    with redis_server() as redis:
        for name, measure in _BASELINES.items():
            _flush(redis.url)
            records.extend(_records(echo, measure(redis.url, plan), name))
    return records
