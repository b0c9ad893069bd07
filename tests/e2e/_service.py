"""Run ``echo-service serve`` as a real process for end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# A line of its own, or the message of a JSON log line (--log-json).
_LISTENING = re.compile(r"echo-service listening on ([^\s\"]+)")


class Service:
    """One ``echo-service serve`` process; its stderr goes to a file."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        module: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = tmp / "service.log"
        command: Sequence[str] = (
            [sys.executable, "-m", "echo_service", "serve", *args]
            if module
            else [str(BIN / "echo-service"), "serve", *args]
        )
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
        environ["PYTHONPATH"] = str(REPO)
        environ.update(env or {})
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, env=environ, cwd=tmp
            )
        self.address = self._wait_for_address()

    def _wait_for_address(self, timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = _LISTENING.search(self.log.read_text())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"the service did not start:\n{self.log.read_text()}")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tool(name: str) -> str:
    """A tool installed by scripts/install_tools.sh, or found on PATH.

    Missing, it skips the test, except under CI=true where it fails: CI must
    have run the installer.
    """
    for candidate in (REPO / ".tools" / "bin" / name, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    message = f"{name} is not installed (run scripts/install_tools.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
