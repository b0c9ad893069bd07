"""Standard gRPC tools against a running service: grpcurl through
reflection, and grpc_health_probe."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e._service import Service, tool

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    with Service(
        tmp_path,
        "--port",
        "0",
        "--root",
        str(root),
        "--store",
        "memory",
        "--log-level",
        "WARNING",
    ) as running:
        yield running
        assert running.terminate() == 0


def _run(*command: str) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_grpcurl_lists_describes_and_calls_through_reflection(service: Service) -> None:
    grpcurl = tool("grpcurl")
    listed = _run(grpcurl, "-plaintext", service.address, "list").split()
    assert "echo.v1.EchoService" in listed
    assert "grpc.health.v1.Health" in listed
    described = _run(
        grpcurl, "-plaintext", service.address, "describe", "echo.v1.EchoService"
    )
    for rpc in (
        "Assign",
        "AssignMany",
        "AssignStream",
        "Stream",
        "Connect",
        "GetAction",
        "Cancel",
        "ListSignatures",
        "Shutdown",
    ):
        assert f"rpc {rpc} " in described
    body = {"action": {"name": "Hash", "args": [{"stringValue": "notes.txt"}]}}
    answer = json.loads(
        _run(
            grpcurl,
            "-plaintext",
            "-d",
            json.dumps(body),
            service.address,
            "echo.v1.EchoService/Assign",
        )
    )
    assert answer["action"]["id"]
    assert answer["action"]["name"] == "Hash"


def test_grpc_health_probe_reports_serving(service: Service) -> None:
    probe = tool("grpc-health-probe")
    for name in ("", "echo.v1.EchoService"):
        args = [probe, f"-addr={service.address}"]
        if name:
            args.append(f"-service={name}")
        assert "status: SERVING" in _run(*args)
