"""A live ``echo-service serve`` for the interop suite, and its toolchains.

The server is the real command line, started as a subprocess on port 0 with
the interop plan (``tests.interop.plan:plan``) and a journal in a temporary
directory; its address comes from the line it prints on stderr. One server
serves the whole module: the runners of three languages, the clients' own
test suites and the third-party tools.

A missing toolchain (node, npm, go, ghz, or the clients' installed
dependencies) skips its tests on a developer's machine and fails them under
``CI=true``, where ``make test`` is meant to have installed everything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
NODE_CLIENT = ROOT / "clients" / "node"
GO_CLIENT = ROOT / "clients" / "go"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"echo-service listening on (\S+)")


def need(tool: str, *, where: Path | None = None) -> str:
    """The path of ``tool`` (on PATH, or in ``where``); skip or fail without it."""
    found = shutil.which(tool, path=str(where)) if where else shutil.which(tool)
    if found is None:
        missing(f"{tool} is not installed (run: bash scripts/install_tools.sh)")
    return str(found)


def missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; under CI every interop toolchain is required")
    pytest.skip(why)


@dataclass
class LiveServer:
    """A running ``echo-service serve``; ``log`` collects its stderr."""

    target: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)


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
