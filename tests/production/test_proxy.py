"""gRPC through a real nginx configured with the shipped location snippet.

The upstream is a trivial ``grpc.aio`` server with the health service; the
same harness carries a real Echo client in the integration tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from echo_service.server._security import BearerAuthInterceptor
from tests.production._servers import (
    ABORT,
    COLLECT,
    COUNT,
    ECHO,
    GATE,
    TICK,
    WAIT,
    AioServer,
    health_check,
)
from tests.production.proxy import SNIPPET, NginxProxy

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream() -> Iterator[AioServer]:
    with AioServer() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(upstream: AioServer) -> Iterator[NginxProxy]:
    with NginxProxy(upstream.port) as running:
        yield running


@pytest.fixture
def channel(proxy: NginxProxy) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(proxy.target) as opened:
        yield opened


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped snippet with one setting changed, readable by workers."""
    text = SNIPPET.read_text()
    assert old in text
    tmp_path.chmod(0o755)
    path = tmp_path / "echo-grpc.conf"
    path.write_text(text.replace(old, new))
    path.chmod(0o644)
    return path


def test_the_shipped_snippet_passes_nginx_config_check(upstream: AioServer) -> None:
    proxy = NginxProxy(upstream.port)
    try:
        proxy.check()
    finally:
        proxy.stop()


def test_unary_calls_and_health_checks_pass_through(channel: grpc.Channel) -> None:
    assert channel.unary_unary(ECHO)(b"through", timeout=WAIT) == b"through"
    assert health_check(channel) == 1


def test_a_server_stream_passes_through_complete(channel: grpc.Channel) -> None:
    messages = list(channel.unary_stream(COUNT)(b"50", timeout=WAIT))

    assert messages == [str(i).encode() for i in range(50)]


def test_a_server_stream_is_relayed_message_by_message_not_buffered(
    channel: grpc.Channel, upstream: AioServer
) -> None:
    upstream.run(_reset_gate(upstream))
    stream = channel.unary_stream(GATE)(b"", timeout=WAIT)

    # The server holds the second message until the first one arrived here.
    assert next(stream) == b"first"
    upstream.open_gate()
    assert next(stream) == b"second"


async def _reset_gate(server: AioServer) -> None:
    server.probe.gate = asyncio.Event()


def test_status_codes_and_details_pass_through(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(ABORT)(b"NOT_FOUND", timeout=WAIT)

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "aborted with NOT_FOUND"


def test_a_client_stream_larger_than_nginxs_default_body_limit_passes(
    channel: grpc.Channel,
) -> None:
    chunks = [b"x" * (64 * 1024)] * 40  # 2.5 MiB in one call, 64 KiB messages

    total = channel.stream_unary(COLLECT)(iter(chunks), timeout=WAIT)

    assert int(total) == 40 * 64 * 1024


def test_without_the_body_limit_setting_nginx_cuts_long_client_streams(
    upstream: AioServer, tmp_path: Path
) -> None:
    snippet = _variant(tmp_path, "client_max_body_size 0;", "")
    with (
        NginxProxy(upstream.port, snippet=snippet) as limited,
        grpc.insecure_channel(limited.target) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.stream_unary(COLLECT)(iter([b"x" * (64 * 1024)] * 40), timeout=WAIT)

    assert "413" in (caught.value.details() or "")


def test_heartbeats_keep_a_stream_alive_past_the_proxys_read_timeout(
    upstream: AioServer, tmp_path: Path
) -> None:
    # The read timeout shortened to 1s: a stream that sends something every
    # 0.25s lives for 1.5s, while a silent one is cut after 1s.
    snippet = _variant(tmp_path, "grpc_read_timeout 10m;", "grpc_read_timeout 1s;")
    with (
        NginxProxy(upstream.port, snippet=snippet) as strict,
        grpc.insecure_channel(strict.target) as channel,
    ):
        ticking = list(channel.unary_stream(TICK)(b"6:0.25", timeout=WAIT))
        upstream.run(_reset_gate(upstream))
        silent = channel.unary_stream(GATE)(b"", timeout=WAIT)
        assert next(silent) == b"first"
        with pytest.raises(grpc.RpcError) as caught:
            next(silent)

    assert len(ticking) == 6
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "upstream timed out" in strict.error_log()


def test_bearer_tokens_pass_through_to_an_authenticating_upstream() -> None:
    interceptor = BearerAuthInterceptor(["proxy-token"])
    with (
        AioServer(interceptors=[interceptor]) as server,
        NginxProxy(server.port) as proxied,
        grpc.insecure_channel(proxied.target) as channel,
    ):
        echo = channel.unary_unary(ECHO)
        with pytest.raises(grpc.RpcError) as caught:
            echo(b"x", timeout=WAIT)
        token = (("authorization", "Bearer proxy-token"),)
        assert echo(b"x", timeout=WAIT, metadata=token) == b"x"
        assert health_check(channel) == 1

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("max_streams", "answered"), [(None, True), (128, False)])
def test_open_streams_do_not_starve_new_calls_on_the_same_connection(
    upstream: AioServer, max_streams: int | None, answered: bool
) -> None:
    # nginx's default of 128 streams per client connection: with 128 streams
    # open, a client's next call (an Assign) waits silently for a free slot
    # until its deadline. The shipped site raises the limit.
    upstream.run(_reset_gate(upstream))
    with (
        NginxProxy(upstream.port, max_streams=max_streams) as proxied,
        grpc.insecure_channel(proxied.target) as channel,
    ):
        streams = [channel.unary_stream(GATE)(b"", timeout=WAIT) for _ in range(128)]
        for stream in streams:
            assert next(stream) == b"first"
        try:
            reply: bytes | None = channel.unary_unary(ECHO)(b"next", timeout=1.5)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            reply = None
        for stream in streams:
            stream.cancel()

    assert (reply == b"next") is answered
