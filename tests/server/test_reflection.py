"""Server reflection resolves methods by full name, under v1 and v1alpha."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from echo_service.server import SERVICE_NAME, EchoServer
from tests.conftest import WAIT

pytestmark = pytest.mark.timeout(60)

TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"
PATHS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}


def _ask(
    address: str, version: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    # v1 and v1alpha share their messages on the wire.
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            PATHS[version],
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        [answer] = list(call(iter([request]), timeout=WAIT))
        return answer


def _services_in(answer: reflection_pb2.ServerReflectionResponse) -> set[str]:
    found = set()
    for raw in answer.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        found |= {f"{proto.package}.{s.name}" for s in proto.service}
    return found


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_a_methods_full_name_resolves_to_the_file_of_its_service(
    server: EchoServer, version: str
) -> None:
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol=f"{SERVICE_NAME}.Assign"
    )
    answer = _ask(server.address, version, request)
    assert not answer.HasField("error_response"), answer.error_response
    assert SERVICE_NAME in _services_in(answer)


@pytest.mark.parametrize(
    "symbol", [f"{SERVICE_NAME}.NoSuchMethod", "echo.v1.NoSuchService.Assign", "x"]
)
def test_names_that_are_not_there_are_still_not_found(
    server: EchoServer, symbol: str
) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    answer = _ask(server.address, "v1alpha", request)
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_both_reflection_services_list_every_service(
    server: EchoServer, version: str
) -> None:
    answer = _ask(
        server.address,
        version,
        reflection_pb2.ServerReflectionRequest(list_services=""),
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {
        SERVICE_NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


def test_grpcurl_describes_a_method_without_proto_files(server: EchoServer) -> None:
    grpcurl = shutil.which("grpcurl", path=str(TOOLS)) or shutil.which("grpcurl")
    if grpcurl is None:
        pytest.skip("grpcurl is not installed (make tools installs it)")
    done = subprocess.run(
        [grpcurl, "-plaintext", server.address, "describe", f"{SERVICE_NAME}.Assign"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rpc Assign" in done.stdout
