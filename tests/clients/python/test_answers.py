"""What both clients make of the server's answers and failures."""

from __future__ import annotations

import grpc
import pytest
from echo_client import (
    CallCancelledError,
    EchoError,
    InvalidArgumentError,
    NotFoundError,
    SessionMessage,
    State,
    StreamEnd,
    UnavailableError,
)
from echo_client import _answers as answers
from echo_client._proto.echo.v1 import action_pb2, echo_service_pb2

from tests.clients.python._status import FailedCall

pytestmark = pytest.mark.timeout(30)


def _event(sequence: int) -> action_pb2.ActionEvent:
    event = action_pb2.ActionEvent(
        sequence=sequence,
        action_id="id-1",
        action_name="Echo",
        state=action_pb2.ACTION_STATE_SUCCEEDED,
        result=action_pb2.Value(string_value="done"),
    )
    event.time.GetCurrentTime()
    return event


def test_a_session_hands_out_each_kind_with_its_own_attribute() -> None:
    end = SessionMessage(
        echo_service_pb2.ConnectResponse(
            request_id="s",
            end=echo_service_pb2.StreamEnd(
                reason="draining", retryable=True, last_sequence=7
            ),
        )
    )
    assert end.kind == "end"
    assert end.end == StreamEnd("draining", True, 7)
    event = SessionMessage(
        echo_service_pb2.ConnectResponse(request_id="a", event=_event(3))
    )
    assert event.event is not None
    assert event.event.state is State.SUCCEEDED
    assert event.event.result == "done"
    refused = SessionMessage(
        echo_service_pb2.ConnectResponse(
            request_id="b",
            error=echo_service_pb2.RequestError(
                code=grpc.StatusCode.NOT_FOUND.value[0], message="no such action"
            ),
        )
    )
    assert isinstance(refused.error, NotFoundError)
    assert refused.error.message == "no such action"


def test_events_are_acknowledged_only_with_auto_ack() -> None:
    event = SessionMessage(
        echo_service_pb2.ConnectResponse(request_id="a", event=_event(5))
    )
    heartbeat = SessionMessage(
        echo_service_pb2.ConnectResponse(
            request_id="h", heartbeat=echo_service_pb2.Heartbeat(last_sequence=5)
        )
    )
    assert answers.ack_due(event, auto_ack=True) == 5
    assert answers.ack_due(event, auto_ack=False) is None
    assert answers.ack_due(heartbeat, auto_ack=True) is None


def test_a_cancelled_session_ends_quietly_and_other_failures_raise() -> None:
    assert answers.session_error(FailedCall(grpc.StatusCode.CANCELLED)) is None
    failure = answers.session_error(FailedCall(grpc.StatusCode.UNAVAILABLE, "gone"))
    assert isinstance(failure, UnavailableError)
    assert failure.message == "gone"
    assert isinstance(failure.__cause__, grpc.RpcError)


def test_a_stream_failure_keeps_the_calls_own_error_and_names_a_bare_cut() -> None:
    bad = answers.stream_cut(FailedCall(grpc.StatusCode.INVALID_ARGUMENT, "no"))
    assert isinstance(bad, InvalidArgumentError)
    cut = answers.stream_cut(None)
    assert type(cut) is EchoError
    assert "cut" in cut.message
    assert isinstance(
        answers.stream_gave_up(FailedCall(grpc.StatusCode.CANCELLED)),
        CallCancelledError,
    )
    assert "gave up" in answers.stream_gave_up(None).message


def test_batch_answers_keep_the_order_of_the_request() -> None:
    response = echo_service_pb2.AssignManyResponse(
        results=[
            echo_service_pb2.AssignResponse(
                action=action_pb2.Action(id=f"id-{i}", name="Add"), duplicate=i == 1
            )
            for i in range(3)
        ]
    )
    got = answers.assigned_all(response)
    assert [(a.action.id, a.duplicate) for a in got] == [
        ("id-0", False),
        ("id-1", True),
        ("id-2", False),
    ]


def test_a_shutdown_answer_reports_running_and_waiting_actions() -> None:
    report = answers.shutdown_report(
        echo_service_pb2.ShutdownResponse(running=2, waiting=5)
    )
    assert (report.running, report.waiting) == (2, 5)
    assert repr(report) == "ShutdownReport(running=2, waiting=5)"
