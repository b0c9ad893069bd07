"""The deployment files parse and keep the promises their comments make."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from echo_service._proto.echo.v1 import echo_service_pb2
from echo_service.engine._engine import _SETTLE as ENGINE_SETTLE
from echo_service.server._mesh import KNOWN_SETTINGS, parse_duration

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
NGINX = ROOT / "deploy" / "nginx"
SERVICE = echo_service_pb2.DESCRIPTOR.services_by_name["EchoService"].full_name
TELEMETRY_FLUSH = timedelta(seconds=5)
MAX_HEARTBEAT = timedelta(minutes=5)  # the server clamps heartbeat intervals here


def _documents() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), path
            found[f"{document['kind']}/{document.get('metadata', {}).get('name')}"] = (
                document
            )
    return found


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return _documents()


@pytest.fixture(scope="module")
def pod(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = docs["Deployment/echo"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    [echo] = pod["containers"]
    assert isinstance(echo, dict)
    return echo


@pytest.fixture(scope="module")
def settings(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = docs["ConfigMap/echo-config"]["data"]
    return data


def test_every_manifest_parses_and_kustomize_lists_each_one() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    manifests = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}

    assert set(kustomization["resources"]) == manifests
    assert _documents()


def test_probes_are_native_grpc_on_the_grpc_port(container: dict[str, Any]) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}

    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE


def test_the_pod_outlives_its_own_drain(
    pod: dict[str, Any], settings: dict[str, str]
) -> None:
    # Cancelled attempts settle, and a handler deaf to its token is waited
    # for, one engine settling period each (docs/operators.md, Deployment).
    stop = (
        parse_duration(settings["ECHO_DRAIN_GRACE"])
        + 2 * ENGINE_SETTLE
        + parse_duration(settings["ECHO_STOP_TIMEOUT"])
        + TELEMETRY_FLUSH
    )

    assert timedelta(seconds=pod["terminationGracePeriodSeconds"]) > stop


def test_liveness_never_restarts_a_pod_in_the_middle_of_its_drain(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    liveness = container["livenessProbe"]
    patience = liveness["periodSeconds"] * liveness["failureThreshold"]

    assert patience > pod["terminationGracePeriodSeconds"]


def test_the_drain_needs_no_pre_stop_hook(container: dict[str, Any]) -> None:
    assert "lifecycle" not in container


def test_one_replica_owns_the_sqlite_journal_even_during_a_rollout(
    docs: dict[str, dict[str, Any]], pod: dict[str, Any], settings: dict[str, str]
) -> None:
    deployment = docs["Deployment/echo"]["spec"]
    claim = docs["PersistentVolumeClaim/echo-journal"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert settings["ECHO_STORE"] == "sqlite"
    assert deployment["replicas"] == 1
    assert deployment["strategy"]["type"] == "Recreate"
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "echo-journal"
    assert settings["ECHO_DATA_DIR"].startswith("/var/lib/echo/")


def test_the_service_declares_cleartext_http2_on_the_containers_ports(
    docs: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    service = docs["Service/echo"]["spec"]
    ports = {port["name"]: port for port in service["ports"]}
    names = {port["name"] for port in container["ports"]}

    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert {port["targetPort"] for port in service["ports"]} <= names
    assert (
        service["selector"]
        == docs["Deployment/echo"]["spec"]["selector"]["matchLabels"]
    )


def test_resources_are_requested_and_memory_is_bounded(
    container: dict[str, Any],
) -> None:
    resources = container["resources"]

    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_the_container_runs_unprivileged_with_a_read_only_root(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert f"USER {pod['securityContext']['runAsUser']}" in dockerfile


def test_every_echo_variable_names_a_setting(
    settings: dict[str, str], container: dict[str, Any]
) -> None:
    names = [*settings, *(item["name"] for item in container["env"])]
    echo = [name for name in names if name.startswith("ECHO_")]

    unknown = [n for n in echo if n.removeprefix("ECHO_").lower() not in KNOWN_SETTINGS]
    assert not unknown


def test_secrets_come_from_a_secret_and_are_optional(container: dict[str, Any]) -> None:
    tokens = {item["name"]: item for item in container["env"]}

    for name in ("ECHO_AUTH_TOKEN", "ECHO_ADMIN_TOKEN"):
        reference = tokens[name]["valueFrom"]["secretKeyRef"]
        assert reference["optional"] is True


# --- nginx ---------------------------------------------------------------------


def _directive(text: str, name: str) -> str:
    found = re.search(rf"^\s*{name}\s+([^;]+);", text, re.MULTILINE)
    assert found is not None, name
    return found[1].strip()


def test_the_proxy_outwaits_the_longest_heartbeat_and_any_quiet_client() -> None:
    snippet = (NGINX / "snippets" / "echo-grpc.conf").read_text()

    assert parse_duration(_directive(snippet, "grpc_read_timeout")) > MAX_HEARTBEAT
    assert parse_duration(_directive(snippet, "client_body_timeout")) >= timedelta(
        minutes=10
    )
    assert _directive(snippet, "client_max_body_size") == "0"
    assert _directive(snippet, "grpc_pass") == "grpc://echo_backend"


def test_the_example_site_raises_nginxs_stream_limit_and_uses_the_snippet() -> None:
    site = (NGINX / "echo.conf").read_text()

    assert int(_directive(site, "http2_max_concurrent_streams")) >= 1000
    assert _directive(site, "include") == "snippets/echo-grpc.conf"
    assert "upstream echo_backend" in site
