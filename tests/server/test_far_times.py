"""Times at the far edge of the contract's range neither crash nor disable the
engine: an action due in the year 9999 waits, and everything else runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from echo_client import Client, Options, State
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo_service.server import EchoServer

WAIT = timedelta(seconds=20)
LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.fixture
def health(server: EchoServer) -> Iterator[health_pb2_grpc.HealthStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield health_pb2_grpc.HealthStub(channel)


@pytest.mark.parametrize(
    "far",
    [
        Options(not_before=LAST_INSTANT),
        Options(delay=timedelta(days=3_000_000)),
        Options(deadline=LAST_INSTANT),
        Options(attempt_timeout=timedelta(days=3_000_000)),
    ],
    ids=["not_before", "delay", "deadline", "attempt_timeout"],
)
def test_a_far_time_leaves_the_engine_serving_every_other_action(
    client: Client, health: health_pb2_grpc.HealthStub, far: Options
) -> None:
    first = client.assign("Echo", "far", options=far).action

    after = client.assign("Add", 20, 22).action
    done = client.wait(after.id, timeout=WAIT)

    assert done.state is State.SUCCEEDED and done.result == 42
    assert client.get(first.id).state in {State.SCHEDULED, State.SUCCEEDED}
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
