"""What every scenario shares: records, child processes, ports and percentiles.

Every process a scenario starts runs in its own session (process group) and
is stopped by the ``with`` block that started it, whatever happens inside:
SIGTERM to the whole group, then SIGKILL after a grace. A reader thread per
child drains its output into a bounded buffer so a chatty child never blocks
on a full pipe; the buffer is shown when a child fails to start.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

__all__ = [
    "REPO",
    "Child",
    "Missing",
    "Record",
    "bounded",
    "free_port",
    "percentile",
    "python_env",
    "record",
    "tool",
]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
"""The project's root: children run with it on their import path."""

Record = dict[str, object]


class Missing(Exception):  # a condition to report, not a failure
    """A scenario cannot run here; the message says how to make it possible."""


def record(
    scenario: str,
    metric: str,
    *,
    echo: float | None,
    baseline: float | None,
    baseline_name: str,
    lower_is_better: bool = False,
) -> Record:
    """One comparison, with ``ratio`` above 1 when Echo is better.

    Throughputs compare as echo/baseline; latencies and memory (where lower
    is better) as baseline/echo. A missing or zero side gives no ratio.
    """
    ratio: float | None = None
    if echo and baseline:
        ratio = baseline / echo if lower_is_better else echo / baseline
    return {
        "scenario": scenario,
        "metric": metric,
        "echo": _round(echo),
        "baseline": _round(baseline),
        "baseline_name": baseline_name,
        "ratio": None if ratio is None else round(ratio, 3),
    }


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    if abs(value) >= 100:
        return round(value, 1)
    return float(f"{value:.4g}")  # four significant digits, however small


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def free_port() -> int:
    """A loopback port free right now (for children that cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tool(name: str) -> str | None:
    """Path of a command-line tool: the project's own ``.tools/bin`` first."""
    local = REPO / ".tools" / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    venv = Path(sys.executable).parent / name
    if venv.is_file() and os.access(venv, os.X_OK):
        return str(venv)
    return shutil.which(name)


def python_env(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """The environment for a Python child: this repo importable, quiet."""
    env = dict(os.environ)
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Child:
    """A child process in its own process group, stopped when the block ends.

    ``ready`` is a pattern searched in each line the child writes (stdout and
    stderr together); entering the block waits for it for at most
    ``start_timeout`` and exposes the match as ``self.match``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout: timedelta = timedelta(seconds=30),
        stop_grace: timedelta = timedelta(seconds=10),
    ) -> None:
        self.argv = list(argv)
        self._ready = re.compile(ready) if ready else None
        self._env = dict(env) if env is not None else None
        self._cwd = cwd or REPO
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self.match: re.Match[str] | None = None
        # The reader thread appends to _lines and sets _matched; both are
        # read by the owner only after _matched is set or the reader ended.
        self._lines: deque[str] = deque(maxlen=200)
        self._matched = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("not started")
        return self._proc.pid

    def output(self) -> str:
        return "".join(self._lines)

    def __enter__(self) -> Child:
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self._env,
            cwd=self._cwd,
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, name=f"bench-child-{self._proc.pid}", daemon=True
        )
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.append(line)
            if self._ready and not self._matched.is_set():
                found = self._ready.search(line)
                if found:
                    self.match = found
                    self._matched.set()
        self._matched.set()  # end of output: wake the waiter either way

    def _wait_ready(self) -> None:
        if self._ready is None:
            return
        if not self._matched.wait(self._start_timeout.total_seconds()):
            raise RuntimeError(
                f"{self.argv[0]} not ready after {self._start_timeout}:\n"
                + self.output()
            )
        if self.match is None:
            raise RuntimeError(f"{self.argv[0]} exited early:\n{self.output()}")

    def interrupt(self, *, wait: timedelta) -> bool:
        """Send SIGINT to the leader alone and wait for it to exit.

        For a leader that must finish its own work first (a profiler writing
        its report); the rest of the group is left to ``stop``.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(wait.total_seconds())
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        """Stop the whole process group: TERM, then KILL after the grace."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self._stop_grace.total_seconds())
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM; killing it", self.argv[0])
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # Workers the child forked may outlive it in the group: end them too,
        # and wait until they are really gone (or left as zombies to reap).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        give_up = time.monotonic() + 10
        while _group_alive(proc.pid) and time.monotonic() < give_up:
            time.sleep(0.02)
        if self._reader is not None:
            self._reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def bounded(count: int, seconds: float) -> Iterator[int]:
    """``range(count)`` that also stops once ``seconds`` have passed."""
    end = time.perf_counter() + seconds
    for i in range(count):
        if time.perf_counter() > end:
            return
        yield i
