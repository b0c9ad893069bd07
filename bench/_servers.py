"""The baselines' servers: a bare grpcio server and a private Redis.

Both listen on loopback only and live exactly as long as the ``with`` block
that started them.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from ._harness import Child, Missing, free_port, python_env, tool

__all__ = ["RAW_NAME", "RawServer", "raw_server", "redis_server"]

_INSTALL_REDIS = "apt-get install -y redis-server"


def RAW_NAME(style: str) -> str:  # noqa: N802 - reads as a constant's name
    """The baseline's name in records: which server style it runs."""
    return f"raw grpcio ({style})"


@dataclass(frozen=True)
class RawServer:
    address: str
    pid: int
    style: str


@contextlib.contextmanager
def raw_server(
    *,
    style: str,
    assign_response: bytes | None = None,
    stream_response: bytes | None = None,
    threads: int = 16,
) -> Iterator[RawServer]:
    """The bare grpcio server (see ``bench._raw_server``) in its own process."""
    with tempfile.TemporaryDirectory(prefix="echo-bench-raw-") as tmp:
        argv = [
            sys.executable,
            "-m",
            "bench._raw_server",
            "--port",
            "0",
            "--style",
            style,
            "--threads",
            str(threads),
        ]
        if assign_response is not None:
            path = Path(tmp) / "assign.bin"
            path.write_bytes(assign_response)
            argv += ["--assign-response", str(path)]
        if stream_response is not None:
            path = Path(tmp) / "stream.bin"
            path.write_bytes(stream_response)
            argv += ["--stream-response", str(path)]
        with Child(
            argv, ready=r"raw-grpc listening on (\S+):(\d+)", env=python_env()
        ) as child:
            assert child.match is not None
            address = f"127.0.0.1:{child.match.group(2)}"
            with grpc.insecure_channel(address) as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
            yield RawServer(address, child.pid, style)


def require_redis() -> str:
    """The redis-server command, or ``Missing`` saying how to install it."""
    path = tool("redis-server")
    if path is None:
        raise Missing(
            f"redis-server is not installed; install it with: {_INSTALL_REDIS}"
        )
    return path


@dataclass(frozen=True)
class RedisServer:
    url: str
    pid: int


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private Redis on a free loopback port, without persistence.

    Snapshots and the append-only file are off: the baselines get their
    fastest broker, which makes the comparison conservative for Echo, whose
    journal syncs every commit.
    """
    command = require_redis()
    with tempfile.TemporaryDirectory(prefix="echo-bench-redis-") as tmp:
        port = free_port()
        argv = [
            command,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ]
        with Child(argv, ready=r"[Rr]eady to accept connections") as child:
            yield RedisServer(f"redis://127.0.0.1:{port}/0", child.pid)
