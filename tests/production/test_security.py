"""Bearer tokens, the admin token, TLS and mutual TLS against a real server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from echo_service import errors
from echo_service.server._mesh import start_probe_server
from echo_service.server._security import (
    BearerAuthInterceptor,
    TLSConfigError,
    bearer_token,
    channel_credentials,
    check_admin,
    parse_tokens,
    server_credentials,
)
from tests.production._certs import Authority, Issued, write_encrypted_key
from tests.production._servers import (
    COLLECT,
    COUNT,
    ECHO,
    WAIT,
    AioServer,
    health_check,
)

TOKEN = "s3cr3t-token-value"
SERVING = 1
NOT_SERVING = 2


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Authority, Issued, Issued]:
    ca = Authority.create(tmp_path)
    server = ca.issue(tmp_path, "server", server=True)
    client = ca.issue(tmp_path, "client", server=False)
    return ca, server, client


@pytest.fixture
def auth_server() -> Iterator[AioServer]:
    with AioServer(interceptors=[BearerAuthInterceptor([TOKEN])]) as server:
        yield server


def _code(call: object) -> grpc.StatusCode:
    assert isinstance(call, grpc.RpcError)
    return call.code()


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- bearer authentication ---------------------------------------------------


def test_a_call_without_a_token_is_unauthenticated(auth_server: AioServer) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(ECHO)(b"hi", timeout=WAIT)

    assert _code(caught.value) == grpc.StatusCode.UNAUTHENTICATED
    assert "missing bearer token" in caught.value.details()


def test_a_call_with_a_wrong_token_is_unauthenticated_and_the_token_is_not_logged(
    auth_server: AioServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-token-that-must-not-appear-in-logs"
    caplog.set_level(logging.DEBUG)
    with (
        grpc.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(ECHO)(b"hi", timeout=WAIT, metadata=_bearer(wrong))

    assert _code(caught.value) == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid bearer token" in caught.value.details()
    assert "refused a call" in caplog.text
    assert wrong not in caplog.text
    assert TOKEN not in caplog.text


def test_a_call_with_the_token_reaches_the_handler(auth_server: AioServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        reply = channel.unary_unary(ECHO)(b"hi", timeout=WAIT, metadata=_bearer(TOKEN))

    assert reply == b"hi"


def test_the_bearer_scheme_is_matched_without_regard_to_case(
    auth_server: AioServer,
) -> None:
    metadata = (("authorization", f"bearer {TOKEN}"),)
    with grpc.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        assert channel.unary_unary(ECHO)(b"x", timeout=WAIT, metadata=metadata) == b"x"


def test_streaming_calls_are_checked_like_unary_ones(auth_server: AioServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        count = channel.unary_stream(COUNT)
        collect = channel.stream_unary(COLLECT)
        with pytest.raises(grpc.RpcError) as no_stream:
            list(count(b"3", timeout=WAIT))
        with pytest.raises(grpc.RpcError) as no_upload:
            collect(iter([b"ab", b"c"]), timeout=WAIT)
        streamed = list(count(b"3", timeout=WAIT, metadata=_bearer(TOKEN)))
        uploaded = collect(iter([b"ab", b"c"]), timeout=WAIT, metadata=_bearer(TOKEN))

    assert _code(no_stream.value) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(no_upload.value) == grpc.StatusCode.UNAUTHENTICATED
    assert streamed == [b"0", b"1", b"2"]
    assert uploaded == b"3"


def test_an_unknown_method_does_not_reveal_itself_without_a_token(
    auth_server: AioServer,
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        missing = channel.unary_unary("/echo.v1.Nothing/Here")
        with pytest.raises(grpc.RpcError) as anonymous:
            missing(b"", timeout=WAIT)
        with pytest.raises(grpc.RpcError) as known:
            missing(b"", timeout=WAIT, metadata=_bearer(TOKEN))

    assert _code(anonymous.value) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(known.value) == grpc.StatusCode.UNIMPLEMENTED


def test_health_stays_reachable_without_a_token(auth_server: AioServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        assert health_check(channel) == SERVING


def test_every_configured_token_is_accepted_so_tokens_rotate_without_downtime() -> None:
    tokens = parse_tokens(" old-token , new-token ,")
    with (
        AioServer(interceptors=[BearerAuthInterceptor(tokens)]) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        echo = channel.unary_unary(ECHO)
        assert echo(b"1", timeout=WAIT, metadata=_bearer("old-token")) == b"1"
        assert echo(b"2", timeout=WAIT, metadata=_bearer("new-token")) == b"2"

    assert tokens == ("old-token", "new-token")


def test_an_interceptor_without_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        BearerAuthInterceptor(parse_tokens(""))


def test_bearer_token_ignores_other_schemes_and_empty_tokens() -> None:
    assert bearer_token([("authorization", "Basic dXNlcjpwYXNz")]) is None
    assert bearer_token([("authorization", "Bearer ")]) is None
    assert bearer_token([("x-other", "Bearer abc")]) is None
    assert bearer_token(None) is None
    assert bearer_token([("authorization", "Bearer  abc ")]) == "abc"


# --- admin token ---------------------------------------------------------------


def test_admin_rpcs_are_disabled_when_no_admin_token_is_configured() -> None:
    with pytest.raises(errors.PermissionDenied, match="no admin token configured"):
        check_admin(_bearer("anything"), None)
    with pytest.raises(errors.PermissionDenied):
        check_admin((), "")


def test_admin_check_refuses_a_missing_or_wrong_token() -> None:
    with pytest.raises(errors.PermissionDenied, match="valid admin token"):
        check_admin((), "admin")
    with pytest.raises(errors.PermissionDenied):
        check_admin(_bearer("not-admin"), "admin")
    with pytest.raises(errors.PermissionDenied):
        check_admin([("x-echo-admin-token", "admi")], "admin")


def test_admin_check_accepts_the_token_as_bearer_or_in_its_own_header() -> None:
    check_admin(_bearer("admin"), "admin")
    check_admin([("x-echo-admin-token", "admin")], "admin")
    # A client authenticated with the ordinary token adds the admin header.
    check_admin((*_bearer(TOKEN), ("x-echo-admin-token", "admin")), "admin")


# --- TLS and mutual TLS --------------------------------------------------------


def test_tls_serves_a_client_that_trusts_the_ca(
    pki: tuple[Authority, Issued, Issued],
) -> None:
    ca, leaf, _ = pki
    creds = server_credentials(leaf.cert, leaf.key)
    with AioServer(credentials=creds) as server:
        target = f"127.0.0.1:{server.port}"
        with grpc.secure_channel(target, channel_credentials(ca.path)) as channel:
            assert channel.unary_unary(ECHO)(b"tls", timeout=WAIT) == b"tls"
            assert health_check(channel) == SERVING
        with (
            grpc.insecure_channel(target) as plain,
            pytest.raises(grpc.RpcError) as caught,
        ):
            plain.unary_unary(ECHO)(b"tls", timeout=WAIT)

    assert _code(caught.value) == grpc.StatusCode.UNAVAILABLE


def test_tls_refuses_a_client_that_does_not_trust_the_servers_ca(
    pki: tuple[Authority, Issued, Issued], tmp_path: Path
) -> None:
    _, leaf, _ = pki
    stranger = Authority.create(tmp_path, "Stranger CA")
    with AioServer(credentials=server_credentials(leaf.cert, leaf.key)) as server:
        target = f"127.0.0.1:{server.port}"
        with (
            grpc.secure_channel(target, channel_credentials(stranger.path)) as ch,
            pytest.raises(grpc.RpcError) as caught,
        ):
            ch.unary_unary(ECHO)(b"x", timeout=WAIT)

    assert _code(caught.value) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_accepts_a_client_certificate_signed_by_the_ca(
    pki: tuple[Authority, Issued, Issued],
) -> None:
    ca, leaf, client = pki
    creds = server_credentials(leaf.cert, leaf.key, client_ca=ca.path)
    with AioServer(credentials=creds) as server:
        client_creds = channel_credentials(ca.path, cert=client.cert, key=client.key)
        target = f"127.0.0.1:{server.port}"
        with grpc.secure_channel(target, client_creds) as channel:
            assert channel.unary_unary(ECHO)(b"mtls", timeout=WAIT) == b"mtls"


def test_mutual_tls_rejects_a_client_without_a_certificate(
    pki: tuple[Authority, Issued, Issued],
) -> None:
    ca, leaf, _ = pki
    creds = server_credentials(leaf.cert, leaf.key, client_ca=ca.path)
    with AioServer(credentials=creds) as server:
        target = f"127.0.0.1:{server.port}"
        with (
            grpc.secure_channel(target, channel_credentials(ca.path)) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            channel.unary_unary(ECHO)(b"x", timeout=WAIT)

    assert _code(caught.value) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_rejects_a_client_certificate_from_another_ca(
    pki: tuple[Authority, Issued, Issued], tmp_path: Path
) -> None:
    ca, leaf, _ = pki
    stranger = Authority.create(tmp_path, "Stranger CA")
    impostor = stranger.issue(tmp_path, "impostor", server=False)
    creds = server_credentials(leaf.cert, leaf.key, client_ca=ca.path)
    with AioServer(credentials=creds) as server:
        client_creds = channel_credentials(
            ca.path, cert=impostor.cert, key=impostor.key
        )
        target = f"127.0.0.1:{server.port}"
        with (
            grpc.secure_channel(target, client_creds) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            channel.unary_unary(ECHO)(b"x", timeout=WAIT)

    assert _code(caught.value) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_and_a_bearer_token_combine(
    pki: tuple[Authority, Issued, Issued],
) -> None:
    ca, leaf, client = pki
    creds = server_credentials(leaf.cert, leaf.key, client_ca=ca.path)
    interceptor = BearerAuthInterceptor([TOKEN])
    with AioServer(credentials=creds, interceptors=[interceptor]) as server:
        client_creds = channel_credentials(ca.path, cert=client.cert, key=client.key)
        target = f"127.0.0.1:{server.port}"
        with grpc.secure_channel(target, client_creds) as channel:
            echo = channel.unary_unary(ECHO)
            with pytest.raises(grpc.RpcError) as caught:
                echo(b"x", timeout=WAIT)
            assert echo(b"x", timeout=WAIT, metadata=_bearer(TOKEN)) == b"x"
            assert health_check(channel) == SERVING

    assert _code(caught.value) == grpc.StatusCode.UNAUTHENTICATED


def test_a_missing_certificate_file_is_reported_at_start(
    pki: tuple[Authority, Issued, Issued], tmp_path: Path
) -> None:
    _, leaf, _ = pki
    with pytest.raises(TLSConfigError, match=r"cannot read the TLS certificate"):
        server_credentials(tmp_path / "absent.crt", leaf.key)


def test_an_empty_key_file_is_reported_at_start(
    pki: tuple[Authority, Issued, Issued], tmp_path: Path
) -> None:
    _, leaf, _ = pki
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    with pytest.raises(TLSConfigError, match=r"TLS key .* is empty"):
        server_credentials(leaf.cert, empty)


def test_a_key_that_does_not_match_the_certificate_is_reported_at_start(
    pki: tuple[Authority, Issued, Issued],
) -> None:
    _, leaf, client = pki
    with pytest.raises(TLSConfigError, match="does not belong to the certificate"):
        server_credentials(leaf.cert, client.key)


def test_an_encrypted_key_is_reported_instead_of_prompting_for_a_passphrase(
    pki: tuple[Authority, Issued, Issued], tmp_path: Path
) -> None:
    _, leaf, _ = pki
    locked = write_encrypted_key(tmp_path / "locked.key", b"passphrase")
    with pytest.raises(TLSConfigError, match="is encrypted"):
        server_credentials(leaf.cert, locked)


def test_a_certificate_or_key_that_is_not_pem_is_named_at_start(
    pki: tuple[Authority, Issued, Issued], tmp_path: Path
) -> None:
    _, leaf, _ = pki
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not pem at all\n")
    with pytest.raises(TLSConfigError) as bad_cert:
        server_credentials(garbage, leaf.key)
    assert f"certificate {garbage} holds no PEM certificate" in str(bad_cert.value)
    with pytest.raises(TLSConfigError) as bad_key:
        server_credentials(leaf.cert, garbage)
    assert f"key {garbage} holds no PEM private key" in str(bad_key.value)
    assert "None" not in str(bad_cert.value) + str(bad_key.value)


def test_a_client_ca_file_that_is_not_pem_is_reported_at_start(
    pki: tuple[Authority, Issued, Issued], tmp_path: Path
) -> None:
    _, leaf, _ = pki
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TLSConfigError, match=r"client CA file .* no valid PEM"):
        server_credentials(leaf.cert, leaf.key, client_ca=garbage)


def test_a_client_certificate_without_its_key_is_refused(
    pki: tuple[Authority, Issued, Issued],
) -> None:
    ca, _, client = pki
    with pytest.raises(TLSConfigError, match="go together"):
        channel_credentials(ca.path, cert=client.cert)


def test_a_plaintext_probe_port_answers_health_and_nothing_else(
    pki: tuple[Authority, Issued, Issued],
) -> None:
    _, leaf, _ = pki
    with AioServer(credentials=server_credentials(leaf.cert, leaf.key)) as server:
        probe, port = server.run(
            start_probe_server(server.health, host="127.0.0.1", port=0)
        )
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert health_check(channel) == SERVING
                server.run(
                    server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
                )
                assert health_check(channel) == NOT_SERVING
                with pytest.raises(grpc.RpcError) as caught:
                    channel.unary_unary(ECHO)(b"x", timeout=WAIT)
        finally:
            server.run(probe.stop(None))

    assert _code(caught.value) == grpc.StatusCode.UNIMPLEMENTED
