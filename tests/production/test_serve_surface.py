"""``echo-service serve`` as a process: TLS, mutual TLS, bearer tokens, the
config file and its precedence, the health-only probe port, and ``--help``.

Certificates are made by the test; clients are the real ones (``echoctl``
and the Python client).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from echo_client import Client, State, UnauthenticatedError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo_service.config import Config
from echo_service.server._security import channel_credentials
from tests.e2e._service import BIN, REPO, Service
from tests.production._certs import Authority, Issued

pytestmark = pytest.mark.timeout(90)

WAIT = timedelta(seconds=15)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Authority, Issued, Issued]:
    """A CA, a server certificate for 127.0.0.1, a client certificate."""
    authority = Authority.create(tmp_path)
    server = authority.issue(tmp_path, "server", server=True)
    client = authority.issue(tmp_path, "client", server=False)
    return authority, server, client


def _environ(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    environ["PYTHONPATH"] = str(REPO)
    environ.update(extra)
    return environ


def _echoctl(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "echoctl"), "--timeout", "10", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_environ(**(env or {})),
        check=False,
    )


def _serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``serve`` expecting exit status 2; its stderr."""
    done = subprocess.run(
        [str(BIN / "echo-service"), "serve", "--store", "memory", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_environ(**(env or {})),
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    return done.stderr


def _health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(answer.status)


def test_echoctl_assigns_and_gets_over_tls_when_it_trusts_the_ca(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, cert, _ = pki
    with Service(
        tmp_path,
        "--store",
        "memory",
        "--port",
        "0",
        env={"ECHO_TLS_CERT": str(cert.cert), "ECHO_TLS_KEY": str(cert.key)},
    ) as service:
        target = f"127.0.0.1:{service.port}"
        assigned = _echoctl(
            "--target", target, "--tls-ca", str(authority.path), "assign", "Stat", "."
        )
        assert assigned.returncode == 0, assigned.stderr
        action_id = json.loads(assigned.stdout.splitlines()[0])["id"]
        got = _echoctl(
            "--target", target, "--tls-ca", str(authority.path), "get", action_id
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["id"] == action_id

        plaintext = _echoctl("--target", target, "signatures")
        assert plaintext.returncode != 0
        untrusted = _echoctl("--target", target, "--tls", "signatures")
        assert untrusted.returncode != 0
        assert "Traceback" not in untrusted.stderr


def test_mutual_tls_serves_only_clients_with_a_certificate_from_the_ca(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, cert, client_cert = pki
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    foreign = Authority.create(elsewhere, "Other CA").issue(
        elsewhere, "foreign", server=False
    )
    with Service(
        tmp_path,
        "--store",
        "memory",
        "--port",
        "0",
        "--tls-cert",
        str(cert.cert),
        "--tls-key",
        str(cert.key),
        "--tls-client-ca",
        str(authority.path),
    ) as service:
        target = f"127.0.0.1:{service.port}"
        ca = str(authority.path)
        without = _echoctl("--target", target, "--tls-ca", ca, "signatures")
        assert without.returncode != 0
        wrong = _echoctl(
            "--target", target, "--tls-ca", ca,
            "--tls-cert", str(foreign.cert), "--tls-key", str(foreign.key),
            "signatures",
        )  # fmt: skip
        assert wrong.returncode != 0
        right = _echoctl(
            "--target", target, "--tls-ca", ca,
            "--tls-cert", str(client_cert.cert), "--tls-key", str(client_cert.key),
            "signatures",
        )  # fmt: skip
        assert right.returncode == 0, right.stderr
        assert any(
            json.loads(line)["name"] == "Stat" for line in right.stdout.splitlines()
        )

        credentials = channel_credentials(
            authority.path, cert=client_cert.cert, key=client_cert.key
        )
        with Client(target, credentials=credentials, timeout=WAIT) as client:
            assigned = client.assign("Stat", ".")
            done = client.wait(assigned.action.id, timeout=WAIT)
            assert done.state is State.SUCCEEDED


def test_a_key_that_does_not_match_the_certificate_stops_serve_with_status_2(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    _, cert, client_cert = pki
    stderr = _serve_fails(
        tmp_path, "--tls-cert", str(cert.cert), "--tls-key", str(client_cert.key)
    )
    assert "does not match" in stderr or "not belong" in stderr or "key" in stderr
    assert "Traceback" not in stderr


def test_a_certificate_without_its_key_is_a_configuration_error(tmp_path: Path) -> None:
    stderr = _serve_fails(tmp_path, "--tls-cert", str(tmp_path / "c.pem"))
    assert "--tls-key" in stderr


def test_the_probe_port_answers_health_in_plaintext_while_the_main_port_is_tls(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, cert, _ = pki
    probe_port = _free_port()
    with Service(
        tmp_path,
        "--store", "memory", "--port", "0",
        "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
        "--health-port", str(probe_port),
    ) as service:  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{probe_port}") as channel:
            serving = health_pb2.HealthCheckResponse.SERVING
            assert _health(channel) == serving
            assert _health(channel, "echo.v1.EchoService") == serving
            # Nothing but health is reachable without TLS.
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary("/echo.v1.EchoService/ListSignatures")(
                    b"", timeout=10
                )
            assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
        secure = grpc.ssl_channel_credentials(authority.path.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{service.port}", secure) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert service.terminate() == 0


def test_bearer_tokens_guard_every_call_of_serve_but_health(tmp_path: Path) -> None:
    with Service(
        tmp_path,
        "--store", "memory", "--port", "0",
        env={"ECHO_AUTH_TOKEN": "old-token,new-token"},
    ) as service:  # fmt: skip
        with (
            Client(service.address, timeout=WAIT) as anonymous,
            pytest.raises(UnauthenticatedError),
        ):
            anonymous.assign("Stat", ".")
        with grpc.insecure_channel(service.address) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        for token in ("old-token", "new-token"):
            with Client(
                service.address,
                metadata=[("authorization", f"Bearer {token}")],
                timeout=WAIT,
            ) as client:
                assigned = client.assign("Stat", ".")
                assert client.wait(assigned.action.id).state is State.SUCCEEDED
        refused = _echoctl("--target", service.address, "signatures")
        assert refused.returncode != 0
        allowed = _echoctl(
            "--target",
            service.address,
            "signatures",
            env={"ECHO_AUTH_TOKEN": "new-token"},
        )
        assert allowed.returncode == 0, allowed.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_config_file_sits_below_the_environment_and_the_flags(
    tmp_path: Path,
) -> None:
    file_port, env_port, flag_port = _free_port(), _free_port(), _free_port()
    config = tmp_path / "echo.toml"
    config.write_text(
        f'port = {file_port}\nstore = "memory"\ndrain-grace = 2\nretention = "7d"\n'
    )
    with Service(tmp_path, "--config", str(config)) as service:
        assert service.port == file_port
    with Service(
        tmp_path, env={"ECHO_CONFIG": str(config), "ECHO_PORT": str(env_port)}
    ) as service:
        assert service.port == env_port
    with Service(
        tmp_path,
        "--config", str(config), "--port", str(flag_port),
        env={"ECHO_PORT": str(env_port)},
    ) as service:  # fmt: skip
        assert service.port == flag_port


def test_an_unknown_key_in_the_config_file_stops_serve_naming_the_closest(
    tmp_path: Path,
) -> None:
    config = tmp_path / "echo.toml"
    config.write_text('max-conection-age = "10m"\n')
    stderr = _serve_fails(tmp_path, "--config", str(config))
    assert "max-conection-age" in stderr
    assert "max-connection-age" in stderr


def test_serve_help_documents_every_production_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "echo_service", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_environ(COLUMNS="200"),
        check=True,
    )
    for flag in (
        "--config", "--tls-cert", "--tls-key", "--tls-client-ca", "--health-port",
        "--retention", "--key-retention", "--lease", "--auth-token", "--store",
        "--metrics-port", "--max-connection-age", "--max-waiting",
    ):  # fmt: skip
        assert flag in done.stdout, flag
    assert "ECHO_STORE" in done.stdout
    assert "ECHO_CONFIG" in done.stdout


def test_every_flag_and_variable_the_operators_guide_names_exists() -> None:
    guide = (REPO / "docs" / "operators.md").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "echo_service", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_environ(COLUMNS="200"),
        check=True,
    )
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", guide))
    assert flags
    assert {f for f in flags if f not in done.stdout} == set()
    fields = {f.name for f in dataclasses.fields(Config)}
    variables = set(re.findall(r"\bECHO_[A-Z_]+\b", guide)) - {"ECHO_CONFIG"}
    assert {
        v for v in variables if v.removeprefix("ECHO_").lower() not in fields
    } == set()


def test_with_json_logs_every_line_on_stderr_is_json(tmp_path: Path) -> None:
    with Service(tmp_path, "--store", "memory", "--port", "0", "--log-json") as service:
        assert service.terminate() == 0
    lines = service.log.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(
        r["message"] == f"echo-service listening on {service.address}" for r in records
    )
