"""Paths and toolchains of the interop suite.

A missing toolchain (node, npm, go, ghz, or the clients' installed
dependencies) skips its tests on a developer's machine and fails them under
``CI=true``, where ``make test`` is meant to have installed everything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
NODE_CLIENT = ROOT / "clients" / "node"
GO_CLIENT = ROOT / "clients" / "go"


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
