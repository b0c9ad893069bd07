"""Echo's own server, started as a user starts it, for one measurement.

Each measurement gets a fresh server and a fresh data directory, so journal
growth from one scenario never slows the next, and the server is stopped
(its whole process group) before a baseline is measured, so an Echo server
still busy running assigned actions never steals the baseline's CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

from ._harness import Child, Missing, python_env
from ._profile import profile_argv, summarize

__all__ = [
    "PLAN",
    "SERVER_STYLE",
    "EchoServer",
    "assign_request",
    "capture_assign",
    "echo_server",
    "require_echo",
]

SERVER_STYLE = "aio"
"""How Echo's gRPC server runs (``sync`` thread pool or ``aio``); the raw
baseline runs the same way so the comparison is like for like."""

PLAN = "bench._plan:plan"
"""The plan every Echo server of the benchmarks serves."""

_READY = r"echo-service listening on (\S+):(\d+)"


@dataclass(frozen=True)
class EchoServer:
    address: str
    """``127.0.0.1:PORT``, loopback only."""
    pid: int
    data_dir: Path
    child: Child


def _executable() -> Path:
    return Path(sys.executable).parent / "echo-service"


def require_echo() -> None:
    """Raise ``Missing`` unless Echo's server and engine can run here."""
    for module in ("echo_service.server", "echo_service.engine", "echo_service.cli"):
        if importlib.util.find_spec(module) is None:
            raise Missing(f"{module} is not built yet")
    if not hasattr(importlib.import_module("echo_service.engine"), "PlanBuilder"):
        raise Missing("the engine has no PlanBuilder yet")
    if not _executable().exists():
        raise Missing("the echo-service command is not installed (run make setup)")


@contextlib.contextmanager
def echo_server(
    *,
    store: str = "sqlite",
    extra: Sequence[str] = (),
    start_timeout: timedelta = timedelta(seconds=60),
) -> Iterator[EchoServer]:
    """A running Echo server on a loopback port; stopped when the block ends."""
    require_echo()
    with tempfile.TemporaryDirectory(prefix="echo-bench-") as data:
        argv = [
            str(_executable()),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            data,
            "--store",
            store,
            "--plan",
            PLAN,
            *extra,
        ]
        argv, samples = profile_argv(argv)
        with Child(
            argv, ready=_READY, env=python_env(), start_timeout=start_timeout
        ) as child:
            assert child.match is not None
            address = f"127.0.0.1:{child.match.group(2)}"
            _wait_serving(address)
            try:
                yield EchoServer(address, child.pid, Path(data), child)
            finally:
                if samples is not None:
                    # py-spy writes its samples when interrupted; the server
                    # itself is stopped with the group afterwards.
                    child.interrupt(wait=timedelta(seconds=30))
                    if samples.exists():
                        samples.with_suffix(".summary.txt").write_text(
                            summarize(samples)
                        )


def _wait_serving(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)


def assign_request(name: str = "Noop") -> echo_service_pb2.AssignRequest:
    return echo_service_pb2.AssignRequest(action=action_pb2.Action(name=name))


def capture_assign(address: str) -> bytes:
    """One real Assign answer, serialized, for the baseline to mimic in size."""
    with grpc.insecure_channel(address) as channel:
        response = rpc.EchoServiceStub(channel).Assign(assign_request(), timeout=10)
    data: bytes = response.SerializeToString()
    return data
