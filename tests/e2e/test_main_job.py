"""The main job, end to end: hash every file of the Python standard library
through ``echo-service serve`` and ``echoctl assign --from FILE --wait``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.e2e._service import BIN, Service

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

_SKIPPED_DIRS = {"site-packages", "__pycache__"}


def _stdlib_files(root: Path) -> list[str]:
    """Regular files of the standard library, relative to it. Installed
    packages and byte-code caches are left out: they change under our feet."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append(str(path.relative_to(root)))
    return found


def test_every_stdlib_file_is_hashed_once_and_correctly(tmp_path: Path) -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = _stdlib_files(root)
    assert len(files) > 1000
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "".join(json.dumps({"name": "Hash", "args": [f]}) + "\n" for f in files)
    )
    with Service(
        tmp_path,
        "--port",
        "0",
        "--root",
        str(root),
        "--data-dir",
        str(tmp_path / "data"),
        "--log-level",
        "WARNING",
    ) as service:
        done = subprocess.run(
            [
                str(BIN / "echoctl"),
                "--target",
                service.address,
                "assign",
                "--from",
                str(jobs),
                "--wait",
            ],
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert service.terminate() == 0
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(outcomes) == len(files)
    by_line = {o["line"]: o for o in outcomes}
    assert len(by_line) == len(files)  # none duplicated
    assert len({o["id"] for o in outcomes}) == len(files)
    for number, relative in enumerate(files, 1):
        outcome = by_line[number]  # none lost
        assert outcome["state"] == "succeeded", outcome
        expected = hashlib.sha256((root / relative).read_bytes()).hexdigest()
        assert outcome["result"] == expected, relative
