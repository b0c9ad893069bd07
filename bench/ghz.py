"""A standard load report: ghz against ``Assign``, Echo beside raw grpcio.

ghz is the usual gRPC load tool; its report is comparable with what others
publish. It runs with ``CONCURRENCY`` concurrent calls on one connection,
limited to one CPU so it leaves the other to the server, for a bounded
count of calls. The baseline is the bare grpcio server (same style) answering
with Echo's real Assign answer. ghz comes from ``scripts/install_tools.sh``
(into ``.tools/bin``); without it the scenario is skipped.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from ._echo import SERVER_STYLE, capture_assign, echo_server
from ._harness import REPO, Missing, Record, record, tool
from ._servers import RAW_NAME, raw_server

__all__ = ["CONCURRENCY", "run"]

CONCURRENCY = 8
_NS_PER_MS = 1_000_000


def _ghz(command: str, address: str, calls: int) -> dict[str, float]:
    argv = [
        command,
        "--insecure",
        "--proto",
        str(REPO / "proto" / "echo" / "v1" / "echo_service.proto"),
        "--import-paths",
        str(REPO / "proto"),
        "--call",
        "echo.v1.EchoService.Assign",
        "--data",
        json.dumps({"action": {"name": "Noop"}}),
        "--concurrency",
        str(CONCURRENCY),
        "--connections",
        "1",
        "--cpus",
        "1",
        "--total",
        str(calls),
        "--timeout",
        "20s",
        "--format",
        "json",
        address,
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, check=False, cwd=REPO
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"ghz failed ({done.returncode}): {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    codes = report.get("statusCodeDistribution") or {}
    if set(codes) - {"OK"}:
        raise RuntimeError(f"ghz saw errors: {codes} {report.get('errorDistribution')}")
    latency = {
        int(row["percentage"]): row["latency"] / _NS_PER_MS
        for row in report.get("latencyDistribution") or []
    }
    return {"rps": float(report["rps"]), "p50": latency[50], "p99": latency[99]}


def run(quick: bool) -> list[Record]:
    command = tool("ghz")
    if command is None:
        raise Missing("ghz is not installed (make tools, or scripts/install_tools.sh)")
    calls = 200 if quick else 20_000
    with echo_server(store="sqlite") as server:
        answer = capture_assign(server.address)
        echo = _ghz(command, server.address, calls)
    with raw_server(style=SERVER_STYLE, assign_response=answer) as raw:
        base = _ghz(command, raw.address, calls)
    name = f"{RAW_NAME(SERVER_STYLE)}, ghz c={CONCURRENCY}"
    return [
        record(
            "ghz",
            "assign_rps",
            echo=echo["rps"],
            baseline=base["rps"],
            baseline_name=name,
        ),
        record(
            "ghz",
            "assign_p50_ms",
            echo=echo["p50"],
            baseline=base["p50"],
            baseline_name=name,
            lower_is_better=True,
        ),
        record(
            "ghz",
            "assign_p99_ms",
            echo=echo["p99"],
            baseline=base["p99"],
            baseline_name=name,
            lower_is_better=True,
        ),
    ]
