"""A real Echo server behind a real nginx, with the shipped gRPC location.

The proxy's read timeout is shortened, so that a stream with nothing to
say is cut within the test unless Echo's heartbeats keep it alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from echo_client import Client, State

from echo_service._proto.echo.v1 import echo_service_pb2, echo_service_pb2_grpc
from echo_service.server import EchoServer
from tests.conftest import WAIT
from tests.production.proxy import SNIPPET, NginxProxy

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)
READ_TIMEOUT = 1.5  # seconds nginx waits between two upstream messages


def _snippet(tmp_path: Path) -> Path:
    text = SNIPPET.read_text()
    old = "grpc_read_timeout 10m;"
    assert old in text
    tmp_path.chmod(0o755)
    path = tmp_path / "echo-grpc.conf"
    path.write_text(
        text.replace(old, f"grpc_read_timeout {round(READ_TIMEOUT * 1000)}ms;")
    )
    path.chmod(0o644)
    return path


@pytest.fixture
def proxied(
    make_server: Callable[..., EchoServer], tmp_path: Path
) -> Iterator[tuple[EchoServer, NginxProxy]]:
    server = make_server()
    with NginxProxy(server.port, snippet=_snippet(tmp_path)) as proxy:
        yield server, proxy


def _stream(channel: grpc.Channel, heartbeat: timedelta) -> Any:
    """A raw Stream call (an iterator of responses that can be cancelled)."""
    stub = echo_service_pb2_grpc.EchoServiceStub(channel)
    request = echo_service_pb2.StreamRequest(action_names=["Echo"])
    request.heartbeat_interval.FromTimedelta(heartbeat)
    return stub.Stream(request, timeout=WAIT)


def test_the_client_assigns_and_waits_through_the_proxy(
    proxied: tuple[EchoServer, NginxProxy],
) -> None:
    _, proxy = proxied
    with Client(proxy.target, timeout=WAIT_TD) as client:
        assigned = client.assign("Echo", "through nginx")
        done = client.wait(assigned.action.id, timeout=WAIT_TD)
        assert done.state is State.SUCCEEDED
        assert done.result == "through nginx"
        assert [s.name for s in client.list_signatures()]


def test_heartbeats_keep_an_idle_stream_open_past_the_proxys_read_timeout(
    proxied: tuple[EchoServer, NginxProxy],
) -> None:
    _, proxy = proxied
    with (
        grpc.insecure_channel(proxy.target) as channel,
        Client(proxy.target, timeout=WAIT_TD) as client,
    ):
        call = _stream(channel, timedelta(milliseconds=300))
        began = time.monotonic()
        beats = 0
        # Idle for twice the read timeout: only heartbeats flow.
        while time.monotonic() - began < 2 * READ_TIMEOUT:
            message = next(call)
            assert message.WhichOneof("kind") == "heartbeat"
            beats += 1
        assigned = client.assign("Echo", "after the quiet")
        states = []
        for message in call:
            if message.WhichOneof("kind") == "event":
                assert message.event.action_id == assigned.action.id
                states.append(message.event.state)
                if len(states) >= 2 and message.event.result.string_value:
                    break
        call.cancel()
    assert beats >= 2 * READ_TIMEOUT / 0.3 - 2
    assert states, "no event arrived on the stream that stayed open"


def test_a_stream_whose_heartbeats_are_rarer_than_the_timeout_is_cut(
    proxied: tuple[EchoServer, NginxProxy],
) -> None:
    # The control: the same proxy cuts a stream that stays silent too long.
    _, proxy = proxied
    with grpc.insecure_channel(proxy.target) as channel:
        call = _stream(channel, timedelta(seconds=30))
        assert next(call).WhichOneof("kind") == "heartbeat"
        with pytest.raises(grpc.RpcError) as caught:
            next(call)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "upstream timed out" in proxy.error_log()


def test_the_python_client_stream_stays_on_one_call_through_quiet_spells(
    proxied: tuple[EchoServer, NginxProxy],
) -> None:
    _, proxy = proxied
    with Client(proxy.target, timeout=WAIT_TD) as client:
        events = client.stream(names=["Echo"], heartbeat=timedelta(milliseconds=300))
        with events:
            events.start()
            # The quiet spell is the subject of the test: longer than the
            # proxy's read timeout, bridged by heartbeats alone.
            time.sleep(2 * READ_TIMEOUT)
            assigned = client.assign("Echo", "still connected")
            first = next(events)
        assert first.action_id == assigned.action.id
        assert events.reconnects == 0


def test_a_connect_session_assigns_and_receives_events_through_the_proxy(
    proxied: tuple[EchoServer, NginxProxy],
) -> None:
    _, proxy = proxied
    with Client(proxy.target, timeout=WAIT_TD) as client, client.connect() as session:
        rid = session.assign("Echo", "over a session")
        session.close_send()
        kinds = []
        final: State | None = None
        for message in session:
            assert message.request_id in (rid, "")
            kinds.append(message.kind)
            if message.event is not None and message.event.state in (
                State.SUCCEEDED,
                State.FAILED,
            ):
                final = message.event.state
    assert "assigned" in kinds
    assert final is State.SUCCEEDED
