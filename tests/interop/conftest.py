"""A live ``echo-service serve`` for the interop suite.

The server is the real command line, started as a subprocess on port 0 with
the interop plan (``tests.interop.plan:plan``) and a journal in a temporary
directory; its address comes from the line it prints on stderr. One server
serves the whole module: the runners of three languages, the clients' own
test suites and the third-party tools.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop._support import ROOT, LiveServer

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"echo-service listening on (\S+)")


def _read_stderr(
    process: subprocess.Popen[str], log: list[str], ready: threading.Event
) -> None:
    """Collect the server's stderr until it closes; set ``ready`` at the
    listening line (or at the end, when the server died first)."""
    assert process.stderr is not None
    for line in process.stderr:
        log.append(line)
        if _LISTENING.search(line):
            ready.set()
    ready.set()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("journal")
    command = [
        str(Path(sys.executable).with_name("echo-service")),
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data),
        "--plan",
        "tests.interop.plan:plan",
    ]
    # The plan module is imported from the repository root.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    log: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_stderr, args=(process, log, ready))
    reader.start()
    try:
        ready.wait(START_TIMEOUT)
        match = next(filter(None, map(_LISTENING.search, log)), None)
        if match is None:
            pytest.fail(f"echo-service did not start:\n{''.join(log)}")
        yield LiveServer(match.group(1), process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join()
        if process.stderr is not None:
            process.stderr.close()
