"""A listener that does not read: its stream ends with a final message that
says where to resume, then RESOURCE_EXHAUSTED; memory stays bounded."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from echo_service._proto.echo.v1 import (
    action_pb2,
    echo_service_pb2,
    echo_service_pb2_grpc,
)
from echo_service.server import EchoServer
from tests.conftest import WAIT, wait_until

pytestmark = pytest.mark.timeout(60)

_ACTIONS = 400  # four events each: more than the feed window and HTTP/2's


def _add(a: int, b: int) -> action_pb2.Action:
    return action_pb2.Action(
        name="Add", args=[action_pb2.Value(int_value=a), action_pb2.Value(int_value=b)]
    )


def test_a_listener_that_falls_behind_gets_a_final_message_then_resource_exhausted(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(stream_buffer=1)
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        slow = stub.Stream(echo_service_pb2.StreamRequest(), timeout=WAIT)
        opening = next(slow)  # subscribed; now it stops reading
        assert opening.WhichOneof("kind") == "heartbeat"
        batch = stub.AssignMany(
            echo_service_pb2.AssignManyRequest(
                actions=[_add(i, 1) for i in range(_ACTIONS)]
            ),
            timeout=WAIT,
        )
        last_id = batch.results[-1].action.id

        def all_ran() -> bool:
            got = stub.GetAction(echo_service_pb2.GetActionRequest(id=last_id))
            return bool(got.action.state == action_pb2.ACTION_STATE_SUCCEEDED)

        assert wait_until(all_ran)
        sequences: list[int] = []
        end = None
        with pytest.raises(grpc.RpcError) as status:
            for message in slow:
                kind = message.WhichOneof("kind")
                if kind == "event":
                    sequences.append(message.event.sequence)
                elif kind == "end":
                    end = message.end
        assert status.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert end is not None and end.retryable
        assert end.reason == "listener too slow"
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        assert end.last_sequence == sequences[-1]
        # Resuming from there picks up the very next event.
        resumed = stub.Stream(
            echo_service_pb2.StreamRequest(after_sequence=end.last_sequence),
            timeout=WAIT,
        )
        next(resumed)  # its opening heartbeat
        assert next(resumed).event.sequence == end.last_sequence + 1
        resumed.cancel()
