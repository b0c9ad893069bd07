"""``--metrics-port`` serves Prometheus metrics, RPC timings included."""

from __future__ import annotations

import socket
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from echo_client import Client

from tests.conftest import wait_until
from tests.e2e._service import Service

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_metrics_endpoint_shows_rpc_timings_and_the_engine(tmp_path: Path) -> None:
    port = _free_port()
    args = ["--port", "0", "--store", "memory", "--root", str(tmp_path)]
    args += ["--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    with Service(tmp_path, *args) as service:
        with Client(service.address, timeout=timedelta(seconds=10)) as client:
            assert client.list_signatures()
        url = f"http://127.0.0.1:{port}/metrics"

        def scraped() -> str:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())

        assert wait_until(lambda: "echo_rpc_seconds" in scraped())
        text = scraped()
        assert 'rpc_method="ListSignatures"' in text
        assert "echo_queue_depth" in text
        assert service.terminate() == 0
