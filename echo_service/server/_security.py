"""Who may call Echo: bearer tokens, the admin token, TLS and mutual TLS.

Authentication runs as a ``grpc.aio`` server interceptor so that it sees every
call before any request bytes are deserialized: a caller without a valid token
never reaches a servicer, nor the protobuf parser. The health and reflection
services stay open, because load balancers and kubelet probes carry no token.

Tokens are secrets: they are compared in constant time and never logged, not
even in part.
"""

from __future__ import annotations

import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable
from pathlib import Path
from typing import Any, NoReturn

import grpc
import grpc.aio

from echo_service import errors

__all__ = [
    "EXEMPT_METHOD_PREFIXES",
    "BearerAuthInterceptor",
    "TLSConfigError",
    "bearer_token",
    "channel_credentials",
    "check_admin",
    "parse_tokens",
    "server_credentials",
]

logger = logging.getLogger(__name__)

#: Services reachable without a token: probes and balancers must see health,
#: and reflection only describes the public contract.
EXEMPT_METHOD_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

_AUTHORIZATION = "authorization"
_ADMIN_HEADER = "x-echo-admin-token"

Metadata = Iterable[tuple[str, str | bytes]]


class TLSConfigError(ValueError):
    """A certificate, key or CA file cannot be used; raised at start, not later.

    A ``ValueError`` because it is bad configuration, caught by the CLI; it
    never crosses the wire, so it has no place in ``echo_service.errors``.
    """


def parse_tokens(value: str | None) -> tuple[str, ...]:
    """Split a configured token list: comma separated, blanks dropped.

    Several tokens let operators rotate one without downtime: add the new
    token, move the clients, drop the old one. Bearer tokens (RFC 6750) never
    contain commas, so the separator is safe.
    """
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def bearer_token(metadata: Metadata | None) -> str | None:
    """The token of the call's ``authorization: Bearer <token>``, if any.

    The scheme is matched without regard to case (RFC 7235); a value with
    another scheme, or none, gives ``None``.
    """
    for key, value in metadata or ():
        if key.lower() != _AUTHORIZATION:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _matches(presented: str | None, accepted: Collection[str]) -> bool:
    """Whether ``presented`` equals one of ``accepted``, in constant time.

    Every accepted token is compared, whatever the earlier results, so the
    time taken does not tell which one (if any) was close.
    """
    if presented is None:
        return False
    candidate = presented.encode()
    found = False
    for token in accepted:
        found |= hmac.compare_digest(candidate, token.encode())
    return found


def check_admin(metadata: Metadata | None, configured_token: str | None) -> None:
    """Allow an admin RPC (Shutdown) or raise ``errors.PermissionDenied``.

    The admin token may come as ``x-echo-admin-token: <token>`` or as
    ``authorization: Bearer <token>``; the first lets a client send its
    ordinary bearer token alongside. With no admin token configured the admin
    RPCs are disabled for everyone: an open Shutdown is never a default.
    """
    if not configured_token:
        raise errors.PermissionDenied(
            "admin RPCs are disabled: the server has no admin token configured"
        )
    presented: list[str] = []
    for key, value in metadata or ():
        if key.lower() == _ADMIN_HEADER:
            text = (
                value.decode("ascii", "replace") if isinstance(value, bytes) else value
            )
            presented.append(text.strip())
    bearer = bearer_token(metadata)
    if bearer is not None:
        presented.append(bearer)
    allowed = False
    for candidate in presented:
        allowed |= _matches(candidate, (configured_token,))
    if not allowed:
        raise errors.PermissionDenied("a valid admin token is required")


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Reject every call without a valid ``authorization: Bearer`` token.

    A rejected call is answered UNAUTHENTICATED by a handler that reads no
    request message, whatever the method's shape, so unauthenticated bytes
    are never parsed and an unknown method does not reveal that it is unknown.
    """

    def __init__(
        self,
        tokens: Collection[str],
        *,
        exempt_prefixes: Iterable[str] = EXEMPT_METHOD_PREFIXES,
    ) -> None:
        accepted = tuple(token for token in tokens if token)
        if not accepted:
            raise ValueError("bearer authentication needs at least one token")
        self._tokens = accepted
        self._exempt = tuple(exempt_prefixes)
        self._reject = grpc.stream_stream_rpc_method_handler(self._unauthenticated)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        method: str = handler_call_details.method or ""
        if method.startswith(self._exempt):
            return await continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        if _matches(token, self._tokens):
            return await continuation(handler_call_details)
        return self._reject

    @staticmethod
    async def _unauthenticated(request_iterator: Any, context: Any) -> NoReturn:
        metadata = context.invocation_metadata()
        reason = "missing" if bearer_token(metadata) is None else "invalid"
        logger.info("refused a call from %s: %s bearer token", context.peer(), reason)
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"{reason} bearer token: send 'authorization: Bearer <token>'",
        )
        raise AssertionError("abort returned")  # pragma: no cover


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    if not data.strip():
        raise TLSConfigError(f"the {what} {path} is empty")
    return data


def _refuse_encrypted_key() -> NoReturn:
    # Called by the ssl module only when the key is encrypted; without this
    # callback it would prompt for a passphrase on the terminal.
    raise TLSConfigError("encrypted")


def _check_pair(cert: Path, key: Path) -> None:
    """Prove at start that the key belongs to the certificate.

    gRPC would accept the files and fail every handshake later with a vague
    error; the standard library's OpenSSL binding says what is wrong now.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_refuse_encrypted_key)
    except TLSConfigError as exc:
        raise TLSConfigError(
            f"the TLS key {key} is encrypted; gRPC needs an unencrypted PEM key"
        ) from exc
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TLSConfigError(
                f"the TLS key {key} does not belong to the certificate {cert}"
            ) from exc
        raise TLSConfigError(_which_pem_is_bad(cert, key, exc)) from exc


def _which_pem_is_bad(cert: Path, key: Path, exc: ssl.SSLError) -> str:
    """Name the file OpenSSL refused, by the PEM block each should hold."""
    why = exc.reason or exc.strerror or str(exc)
    if b"-----BEGIN CERTIFICATE-----" not in cert.read_bytes():
        return f"the TLS certificate {cert} holds no PEM certificate ({why})"
    if b"PRIVATE KEY-----" not in key.read_bytes():
        return f"the TLS key {key} holds no PEM private key ({why})"
    return f"the TLS certificate {cert} or key {key} is not valid PEM ({why})"


def _check_ca(path: Path, what: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"the {what} {path} holds no valid PEM certificate: {exc.reason}"
        ) from exc


def server_credentials(
    cert: Path, key: Path, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """TLS credentials for the server; mutual TLS when ``client_ca`` is given.

    With a client CA every client must present a certificate signed by it;
    the handshake fails otherwise, before any RPC. Raises ``TLSConfigError``
    at once for a file that is missing, unreadable, empty, not PEM, an
    encrypted key, or a key that does not match the certificate.
    """
    chain = _read(cert, "TLS certificate")
    private_key = _read(key, "TLS key")
    _check_pair(cert, key)
    root: bytes | None = None
    if client_ca is not None:
        root = _read(client_ca, "client CA file")
        _check_ca(client_ca, "client CA file")
    return grpc.ssl_server_credentials(
        [(private_key, chain)],
        root_certificates=root,
        require_client_auth=root is not None,
    )


def channel_credentials(
    ca: Path | None = None,
    *,
    cert: Path | None = None,
    key: Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials for a client; with ``cert`` and ``key`` for mutual TLS.

    ``ca`` is the CA that signed the server's certificate; ``None`` trusts the
    system roots. ``cert`` and ``key`` go together or not at all.
    """
    if (cert is None) != (key is None):
        raise TLSConfigError("a client certificate and its key go together")
    root = None
    if ca is not None:
        root = _read(ca, "CA file")
        _check_ca(ca, "CA file")
    chain = private_key = None
    if cert is not None and key is not None:
        chain = _read(cert, "client certificate")
        private_key = _read(key, "client key")
        _check_pair(cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=private_key, certificate_chain=chain
    )
