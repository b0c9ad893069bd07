"""Health, reflection, the admin Shutdown, and the drain order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from echo_client import (
    Client,
    InvalidArgumentError,
    PermissionDeniedError,
    State,
    UnauthenticatedError,
    UnavailableError,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from echo_service._proto.echo.v1 import echo_service_pb2, echo_service_pb2_grpc
from echo_service.server import SERVICE_NAME, EchoServer
from echo_service.store import MemoryStore, open_store
from echo_service.store import State as JournalState
from tests.conftest import WAIT, Gates, wait_until

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)
TOKEN = "s3cret-admin-token"


def _health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        return stub.Check(request, timeout=WAIT).status  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", ["", SERVICE_NAME])
def test_health_reports_serving_then_not_serving_when_draining(
    make_server: Callable[..., EchoServer], service: str
) -> None:
    server = make_server()
    assert _health(server.address, service) == health_pb2.HealthCheckResponse.SERVING
    server.drain(timedelta(milliseconds=50))
    assert (
        _health(server.address, service) == health_pb2.HealthCheckResponse.NOT_SERVING
    )


def test_reflection_lists_the_services(server: EchoServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [answer] = list(stub.ServerReflectionInfo(iter([request]), timeout=WAIT))
    names = {s.name for s in answer.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_shutdown_is_disabled_without_a_configured_token(client: Client) -> None:
    with pytest.raises(PermissionDeniedError, match="disabled"):
        client.shutdown("anything")


@pytest.mark.parametrize(
    "metadata",
    [(), (("x-echo-admin-token", "wrong"),), (("authorization", "Bearer wrong"),)],
    ids=["no token", "wrong token", "wrong bearer"],
)
def test_shutdown_without_the_right_token_is_permission_denied(
    make_server: Callable[..., EchoServer], metadata: tuple[tuple[str, str], ...]
) -> None:
    server = make_server(admin_token=TOKEN)
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Shutdown(echo_service_pb2.ShutdownRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not server.wait(timedelta(0))
    assert _health(server.address) == health_pb2.HealthCheckResponse.SERVING


def test_the_admin_token_is_never_logged(
    make_server: Callable[..., EchoServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    server = make_server(admin_token=TOKEN)
    with Client(server.address, timeout=WAIT_TD) as client:
        with pytest.raises(PermissionDeniedError):
            client.shutdown("not-it")
        client.shutdown(TOKEN)
    assert server.wait(WAIT_TD)
    assert TOKEN not in caplog.text
    assert "not-it" not in caplog.text
    assert TOKEN not in repr(server.config)


def test_shutdown_with_the_right_token_drains_and_stops_the_server(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server(admin_token=TOKEN)
    with Client(server.address, timeout=WAIT_TD) as client:
        client.assign("Block", "shut")
        assert gates.wait_entered("shut")
        report = client.shutdown(TOKEN, grace=timedelta(seconds=5))
        assert report.running == 1
        assert wait_until(
            lambda: (
                _health(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
            )
        )
        with pytest.raises(UnavailableError):
            client.assign("Add", 1, 1)
        gates.open("shut")
    assert server.wait(WAIT_TD)
    assert server.engine.stats.running == 0


def test_running_work_finishes_within_the_grace_and_is_recorded_finished(
    make_server: Callable[..., EchoServer], gates: Gates, tmp_path: Path
) -> None:
    journal = open_store(
        "sqlite", data_dir=tmp_path / "j", key_retention=timedelta(hours=1)
    )
    try:
        server = make_server(journal=journal)
        with Client(server.address, timeout=WAIT_TD) as client:
            action_id = client.assign("Block", "grace").action.id
            assert gates.wait_entered("grace")
        stopper = threading.Thread(target=server.stop, args=(timedelta(seconds=5),))
        stopper.start()
        assert wait_until(
            lambda: server.engine.stats.running == 1 and not _serving(server)
        )
        gates.open("grace")
        stopper.join()
        record = journal.get(action_id)
        assert record is not None
        assert record.state is JournalState.SUCCEEDED
    finally:
        journal.close()


def _serving(server: EchoServer) -> bool:
    try:
        return _health(server.address) == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def test_work_past_the_grace_is_interrupted_and_left_to_run_again(
    make_server: Callable[..., EchoServer], gates: Gates, tmp_path: Path
) -> None:
    journal = open_store(
        "sqlite", data_dir=tmp_path / "j", key_retention=timedelta(hours=1)
    )
    try:
        server = make_server(journal=journal)
        with Client(server.address, timeout=WAIT_TD) as client:
            action_id = client.assign("Block", "late").action.id
            assert gates.wait_entered("late")
        report = server.drain(timedelta(milliseconds=100))
        assert report.interrupted == 1
        server.stop()
        record = journal.get(action_id)
        assert record is not None
        assert not record.state.finished
    finally:
        journal.close()


def test_stop_is_idempotent_and_joins_its_threads(
    make_server: Callable[..., EchoServer],
) -> None:
    before = set(threading.enumerate())
    server = make_server()
    with Client(server.address, timeout=WAIT_TD) as client:
        assert (
            client.wait(client.assign("Add", 1, 1).action.id).state is State.SUCCEEDED
        )
    server.stop()
    server.stop()
    leftover = [
        t.name
        for t in set(threading.enumerate()) - before
        if not t.name.startswith(("grpc", "Thread-"))
    ]
    assert leftover == []


class _FlakyJournal(MemoryStore):
    """A journal whose health a test switches."""

    ok = True

    def healthy(self) -> bool:
        return self.ok and super().healthy()


def test_health_follows_the_engine_and_recovers(
    make_server: Callable[..., EchoServer],
) -> None:
    journal = _FlakyJournal(key_retention=timedelta(hours=1))
    server = make_server(
        journal=journal, health_check_interval=timedelta(milliseconds=20)
    )
    try:
        journal.ok = False
        assert wait_until(lambda: not _serving(server))
        assert (
            _health(server.address, SERVICE_NAME)
            == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        journal.ok = True
        assert wait_until(lambda: _serving(server))
    finally:
        server.stop()
        journal.close()


def test_with_bearer_tokens_calls_need_one_but_health_stays_open(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(auth_token="alpha,beta", admin_token=TOKEN)
    assert _serving(server)
    with (
        Client(server.address, timeout=WAIT_TD) as anonymous,
        pytest.raises(UnauthenticatedError),
    ):
        anonymous.list_signatures()
    bearer = [("authorization", "Bearer beta")]
    with Client(server.address, timeout=WAIT_TD, metadata=bearer) as client:
        assert client.list_signatures()
    admin = [("authorization", f"Bearer {TOKEN}")]
    with Client(server.address, timeout=WAIT_TD, metadata=admin) as client:
        client.shutdown(TOKEN)
    assert server.wait(WAIT_TD)


def test_a_shutdown_grace_of_zero_means_zero(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server(admin_token=TOKEN, drain_grace=timedelta(seconds=30))
    with Client(server.address, timeout=WAIT_TD) as client:
        client.assign("Block", "never")
        assert gates.wait_entered("never")
        started = time.monotonic()
        client.shutdown(TOKEN, grace=timedelta(0))
    assert server.wait(WAIT_TD)
    assert time.monotonic() - started < 10  # not the configured 30s


def test_a_shutdown_grace_too_long_to_mean_anything_is_refused(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(admin_token=TOKEN)
    with Client(server.address, timeout=WAIT_TD) as client:
        with pytest.raises(InvalidArgumentError) as refused:
            client.shutdown(TOKEN, grace=timedelta(days=3650))

        assert [v.field for v in refused.value.field_violations] == ["grace"]
        assert client.list_signatures()
