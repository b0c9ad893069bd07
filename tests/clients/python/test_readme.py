"""The Python client's README example runs as it stands and prints what its
comments say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from echo_service.server import EchoServer

README = Path(__file__).parents[3] / "clients" / "python" / "README.md"


def _example() -> str:
    found = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert found, "the README has no python example"
    return found.group(1)


def test_the_readme_example_prints_what_it_promises(server: EchoServer) -> None:
    code = _example()
    promised = re.findall(r"# ((?:sum|refused): [^\s,]+)", code)
    assert len(promised) == 2, promised

    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "ECHO_TARGET": server.address},
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == promised
