"""The contract in proto/ is linted, formatted, compatible, and its stubs fresh."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _buf() -> str:
    found = shutil.which("buf", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("the buf CLI is missing; `make setup` installs it (buf-bin)")
    return found


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_generated_python_stubs_match_the_contract() -> None:
    result = _run(sys.executable, "scripts/generate.py", "--check")

    assert result.returncode == 0, result.stdout + result.stderr


def test_contract_passes_buf_lint() -> None:
    result = _run(_buf(), "lint")

    assert result.returncode == 0, result.stdout + result.stderr


def test_contract_is_formatted_by_buf() -> None:
    result = _run(_buf(), "format", "--diff", "--exit-code")

    assert result.returncode == 0, result.stdout + result.stderr


def test_contract_has_no_breaking_change_against_the_previous_commit() -> None:
    previous = _run("git", "rev-parse", "--verify", "--quiet", "HEAD~1:proto")
    if previous.returncode != 0:
        pytest.skip("no previous commit with a proto/ folder to compare against")

    result = _run(_buf(), "breaking", "--against", ".git#ref=HEAD~1,subdir=proto")

    assert result.returncode == 0, result.stdout + result.stderr
