"""Each unary call, as both clients run it, names a real RPC of the contract
and sends that RPC's own request type."""

from __future__ import annotations

from datetime import timedelta

import pytest
from echo_client import ActionRequest
from echo_client import _unary as unary
from echo_client._proto.echo.v1 import echo_service_pb2

pytestmark = pytest.mark.timeout(30)

_SERVICE = echo_service_pb2.DESCRIPTOR.services_by_name["EchoService"]


def _calls() -> dict[str, unary.UnaryCall[object]]:
    """Fresh calls: AssignStream's request is an iterator, read once."""
    return {
        "assign": unary.assign("Add", (1, 2), None, None),
        "assign_many": unary.assign_many([ActionRequest("Add", (1, 2))]),
        "assign_stream": unary.assign_stream([ActionRequest("Add", (1, 2))], 1),
        "get": unary.get("id-1"),
        "cancel": unary.cancel("id-1", "why"),
        "list_signatures": unary.list_signatures(),
        "shutdown": unary.shutdown("token", timedelta(seconds=1)),
    }


@pytest.mark.parametrize("name", sorted(_calls()))
def test_a_unary_call_sends_its_rpcs_own_request(name: str) -> None:
    call = _calls()[name]
    method = _SERVICE.methods_by_name[call.method]
    assert not method.server_streaming
    requests = list(call.request) if method.client_streaming else [call.request]
    assert requests
    assert all(r.DESCRIPTOR is method.input_type for r in requests)


def test_only_shutdown_sends_metadata_of_its_own() -> None:
    with_metadata = {name for name, call in _calls().items() if call.metadata}
    assert with_metadata == {"shutdown"}
