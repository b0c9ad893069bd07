"""An ``echo-service`` in a process of its own, started and killed by a test.

The server is the real command line on port 0; it says where it listens on
stderr. A reader thread drains stderr for the whole life of the process (a
full pipe would stall the server) and keeps the last lines for failure
messages.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc

from echo_service._proto.echo.v1 import echo_service_pb2, echo_service_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
SERVE = Path(sys.executable).with_name("echo-service")
PLAN = "tests.durability.crash_plan:plan"
START_TIMEOUT = 20.0
_LISTENING = re.compile(r"^echo-service listening on (\S+)$")


class ServerProcess:
    """One data directory served by a succession of processes, one at a time."""

    def __init__(self, data_dir: Path, *, env: Mapping[str, str]) -> None:
        self.data_dir = data_dir
        self._env = {**os.environ, "PYTHONPATH": str(REPO), **env}
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._lines: collections.deque[str] = collections.deque(maxlen=200)
        self.address = ""
        self.pids: list[int] = []
        """Every process started, in order."""

    def start(self) -> str:
        """Start a process on the data directory; returns ``host:port``."""
        self.spawn()
        if not self._ready.wait(START_TIMEOUT) or not self.address:
            self.kill()
            raise AssertionError(f"echo-service did not start:\n{self.log()}")
        return self.address

    def spawn(self) -> None:
        """Start a process without waiting for it to listen."""
        assert self._proc is None, "a process is running already"
        self._ready.clear()
        self.address = ""
        self._proc = subprocess.Popen(
            [
                str(SERVE),
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(self.data_dir),
                "--store",
                "sqlite",
                "--plan",
                PLAN,
                "--workers",
                "2",
                "--log-level",
                "WARNING",
            ],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.pids.append(self._proc.pid)
        self._reader = threading.Thread(
            target=self._read, args=(self._proc,), name="echo-test-stderr"
        )
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._lines.append(f"[{proc.pid}] {line}")
            found = _LISTENING.match(line)
            if found:
                self.address = found.group(1)
                self._ready.set()
        self._ready.set()  # the process ended: whoever waits learns now

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, nothing the process could do about it."""
        self._end(signal.SIGKILL)

    def stop(self) -> int:
        """SIGTERM (the documented drain), or SIGKILL if it hangs; exit code."""
        return self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> int:
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        proc.send_signal(how)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        assert self._reader is not None
        self._reader.join()
        assert proc.stderr is not None
        proc.stderr.close()
        return code

    def log(self) -> str:
        return "\n".join(self._lines)


def stub(channel: grpc.Channel) -> echo_service_pb2_grpc.EchoServiceStub:
    return echo_service_pb2_grpc.EchoServiceStub(channel)


def journal_history(
    address: str, *, until: int
) -> Iterator[echo_service_pb2.StreamResponse]:
    """Every journaled event with sequence 1 to ``until``, as one replay."""
    with grpc.insecure_channel(address) as channel:
        call = stub(channel).Stream(
            echo_service_pb2.StreamRequest(after_sequence=0), timeout=60
        )
        try:
            for message in call:
                if message.HasField("event"):
                    yield message
                    if message.event.sequence >= until:
                        return
        finally:
            call.cancel()
