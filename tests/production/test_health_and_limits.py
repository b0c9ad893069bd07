"""Health follows the executor and the journal; limits refuse cleanly.

Servers come from the production factory (``make_server``) on port 0.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import timedelta

import grpc
import pytest
from echo_client import Client, ResourceExhaustedError, State
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from echo_service._proto.echo.v1 import echo_service_pb2, echo_service_pb2_grpc
from echo_service.engine import ExecutionContext, PlanBuilder, ValueType
from echo_service.server import SERVICE_NAME, EchoServer
from echo_service.store import MemoryStore
from tests.conftest import WAIT, Gates, wait_until

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class SwitchableStore(MemoryStore):
    """A memory journal whose health the test turns off and on."""

    def __init__(self) -> None:
        super().__init__()
        self.well = threading.Event()
        self.well.set()

    def healthy(self) -> bool:
        return self.well.is_set() and super().healthy()


def _status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=WAIT
        )
        return int(answer.status)


def _both(address: str) -> tuple[int, int]:
    return _status(address), _status(address, SERVICE_NAME)


def test_a_journal_turning_unhealthy_turns_health_not_serving_and_back(
    make_server: Callable[..., EchoServer],
) -> None:
    store = SwitchableStore()
    try:
        server = make_server(
            journal=store,
            health_check_interval=timedelta(milliseconds=50),
            health_port=0,
        )
        assert _both(server.address) == (SERVING, SERVING)

        store.well.clear()
        assert wait_until(lambda: _both(server.address) == (NOT_SERVING, NOT_SERVING))

        store.well.set()
        assert wait_until(lambda: _both(server.address) == (SERVING, SERVING))
        server.stop()
    finally:
        store.close()


def test_the_probe_port_reports_what_the_main_port_reports(
    make_server: Callable[..., EchoServer],
) -> None:
    store = SwitchableStore()
    try:
        # Port 0 means off in the config, so ask for a concrete free port.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free = int(sock.getsockname()[1])
        server = make_server(
            journal=store,
            health_check_interval=timedelta(milliseconds=50),
            health_port=free,
        )
        assert server.health_port == free
        probe = f"127.0.0.1:{free}"
        assert _both(probe) == (SERVING, SERVING)
        store.well.clear()
        assert wait_until(lambda: _both(probe) == (NOT_SERVING, NOT_SERVING))
        store.well.set()
        assert wait_until(lambda: _both(probe) == (SERVING, SERVING))
        server.drain(timedelta(milliseconds=50))
        assert _status(probe, SERVICE_NAME) == NOT_SERVING
        server.stop()
    finally:
        store.close()


def test_an_oversize_request_is_refused_before_anything_is_journaled(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(max_message_bytes=1 << 20)
    with Client(server.address, timeout=WAIT_TD) as client:
        with pytest.raises(ResourceExhaustedError, match="larger than max"):
            client.assign("Echo", "x" * (2 << 20))
        assert server.store.last_sequence() == 0
        assigned = client.assign("Echo", "small")
        assert client.wait(assigned.action.id).result == "small"


def test_a_request_just_under_the_limit_gets_its_answer_and_its_action(
    make_server: Callable[..., EchoServer],
) -> None:
    limit = 1 << 20
    server = make_server(max_message_bytes=limit)
    with Client(server.address, timeout=WAIT_TD) as client:
        text = "y" * (limit - 256)

        assigned = client.assign("Echo", text)

        assert assigned.action.args == (text,)
        assert client.get(assigned.action.id).args == (text,)


def _big_plan() -> PlanBuilder:
    builder = PlanBuilder()

    @builder.action("Big", inputs=[("n", ValueType.INT)], output=ValueType.STRING)
    def big(ctx: ExecutionContext, n: int) -> str:
        return "z" * n

    return builder


def test_an_oversize_result_fails_the_action_and_streams_go_on(
    make_server: Callable[..., EchoServer],
) -> None:
    limit = 1 << 20
    server = make_server(plan=_big_plan().build(), max_message_bytes=limit)
    with Client(server.address, timeout=WAIT_TD) as client:
        too_big = client.assign("Big", limit + 1)
        done = client.wait(too_big.action.id, timeout=WAIT_TD)
        assert done.state is State.FAILED
        assert done.error is not None
        assert (done.error.type, done.error.kind) == (
            "ResultTooLarge",
            "invalid_result",
        )
        assert done.error.non_retryable
        assert done.attempt == 1
        assert client.get(too_big.action.id).state is State.FAILED

        at_limit = client.assign("Big", limit)
        assert client.wait(at_limit.action.id).result == "z" * limit
        assert client.get(at_limit.action.id).result == "z" * limit

        # A stream replaying the journal passes the failure and reaches the
        # success after it, instead of ending RESOURCE_EXHAUSTED.
        seen: list[tuple[str, State]] = []
        with client.stream(after=0, reconnect=False, timeout=WAIT_TD) as events:
            for event in events:
                seen.append((event.action_id, event.state))
                if event.action_id == at_limit.action.id and event.state.finished:
                    break
        assert (too_big.action.id, State.FAILED) in seen
        assert seen[-1] == (at_limit.action.id, State.SUCCEEDED)


def test_a_full_queue_answers_resource_exhausted_with_a_retry_delay(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server(max_waiting=2, workers=2)
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        with Client(server.address, timeout=WAIT_TD) as client:
            first = client.assign("Block", "a")
            client.assign("Block", "b")
            assert gates.wait_entered("a")

            request = echo_service_pb2.AssignRequest()
            request.action.name = "Echo"
            request.action.args.add().string_value = "over"
            with pytest.raises(grpc.RpcError) as caught:
                stub.Assign(request, timeout=WAIT)
            error = caught.value
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            status = rpc_status.from_call(error)
            assert status is not None
            infos = []
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    infos.append(info)
            assert infos and infos[0].retry_delay.ToTimedelta() > timedelta(0)

            # Room again once work finishes.
            gates.open("a")
            assert client.wait(first.action.id).state is State.SUCCEEDED
            assert wait_until(lambda: _assigns(stub, request))
            gates.open("b")


def _assigns(stub: echo_service_pb2_grpc.EchoServiceStub, request: object) -> bool:
    try:
        stub.Assign(request, timeout=WAIT)
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return False
        raise
    return True
