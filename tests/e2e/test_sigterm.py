"""SIGTERM with an open stream and running work: the process turns
NOT_SERVING, lets the work finish, ends the stream with a final message,
records the work finished, and exits 0."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from echo_client import Client
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo_service._proto.echo.v1 import (
    action_pb2,
    echo_service_pb2,
    echo_service_pb2_grpc,
)
from echo_service.store import State, open_store
from tests.conftest import WAIT, wait_until
from tests.e2e._service import Service

pytestmark = pytest.mark.timeout(120)


def _status(address: str) -> int | None:
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.RpcError:
        return None
    status: int = answer.status
    return status


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gate = tmp_path / "go"
    args = ["--port", "0", "--plan", "tests.e2e._plans:plan"]
    args += ["--data-dir", str(data), "--drain-grace", "20s"]
    # module=True also proves `python -m echo_service serve`.
    with (
        Service(tmp_path, *args, module=True) as service,
        grpc.insecure_channel(service.address) as channel,
    ):
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        stream = stub.Stream(
            echo_service_pb2.StreamRequest(after_sequence=0), timeout=60
        )
        assert next(stream).WhichOneof("kind") == "heartbeat"
        with Client(service.address, timeout=timedelta(seconds=WAIT)) as client:
            action_id = client.assign("Gate", str(gate)).action.id
        assert wait_until(Path(f"{gate}.started").exists)

        messages: list[echo_service_pb2.StreamResponse] = []
        reader = threading.Thread(target=lambda: messages.extend(stream))
        reader.start()
        service.process.send_signal(signal.SIGTERM)
        assert wait_until(
            lambda: (
                _status(service.address) == health_pb2.HealthCheckResponse.NOT_SERVING
            )
        )
        assert service.process.poll() is None  # still draining
        gate.touch()  # the running action may now finish
        assert service.process.wait(60) == 0
        reader.join(30)
        assert not reader.is_alive()
    assert messages[-1].WhichOneof("kind") == "end"
    assert messages[-1].end.retryable
    finished = [
        m.event
        for m in messages
        if m.WhichOneof("kind") == "event"
        and m.event.action_id == action_id
        and m.event.state == action_pb2.ACTION_STATE_SUCCEEDED
    ]
    assert len(finished) == 1
    journal = open_store("sqlite", data_dir=data, key_retention=timedelta(hours=1))
    try:
        record = journal.get(action_id)
        assert record is not None
        assert record.state is State.SUCCEEDED
    finally:
        journal.close()
    assert "drained" in service.log.read_text()
