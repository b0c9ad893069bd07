"""An event stream's decisions between calls, shared by both clients: where
to resume, which events were seen, when to reconnect and when to give up."""

from __future__ import annotations

import logging
from datetime import timedelta

import grpc
import pytest
from echo_client import (
    Backoff,
    EchoError,
    InvalidArgumentError,
    StreamEnd,
    UnavailableError,
)
from echo_client import _requests as requests
from echo_client._call import Deadline
from echo_client._cursor import Reopen, Step, StreamCursor
from echo_client._proto.echo.v1 import action_pb2, echo_service_pb2

from tests.clients.python._status import FailedCall

pytestmark = pytest.mark.timeout(30)


def _cursor(
    *,
    after: int | None = None,
    reconnect: bool = True,
    timeout: timedelta | None = None,
    backoff: Backoff | None = None,
) -> StreamCursor:
    return StreamCursor(
        requests.stream(after=after, action_ids=["a"], names=(), heartbeat=None),
        reconnect=reconnect,
        deadline=Deadline(timeout),
        backoff=backoff,
    )


def _heartbeat(sequence: int) -> echo_service_pb2.StreamResponse:
    return echo_service_pb2.StreamResponse(
        heartbeat=echo_service_pb2.Heartbeat(last_sequence=sequence)
    )


def _event(sequence: int) -> echo_service_pb2.StreamResponse:
    event = action_pb2.ActionEvent(sequence=sequence, action_id="a", action_name="Echo")
    event.time.GetCurrentTime()
    return echo_service_pb2.StreamResponse(event=event)


def _end(*, retryable: bool, last: int) -> echo_service_pb2.StreamResponse:
    return echo_service_pb2.StreamResponse(
        end=echo_service_pb2.StreamEnd(
            reason="draining", retryable=retryable, last_sequence=last
        )
    )


def test_a_reopened_call_resumes_after_the_last_sequence_seen() -> None:
    cursor = _cursor()
    assert not cursor._resume_request().HasField("after_sequence")
    assert cursor._received(_heartbeat(4)) is not None
    assert cursor.last_sequence == 4
    event = cursor._event(_event(5))
    assert event is not None
    assert event.sequence == 5
    again = cursor._resume_request()
    assert again.after_sequence == 5
    assert list(again.action_ids) == ["a"]


def test_a_heartbeat_never_moves_the_resume_point_back() -> None:
    cursor = _cursor(after=10)
    cursor._received(_heartbeat(3))
    assert cursor.last_sequence == 10


def test_events_a_resumed_call_delivers_again_are_skipped() -> None:
    cursor = _cursor(after=0)
    handed = [cursor._event(_event(n)) for n in (1, 2, 1, 2, 3)]
    assert [e.sequence if e else None for e in handed] == [1, 2, None, None, 3]
    assert cursor._event(_heartbeat(9)) is None


def test_messages_before_the_first_heartbeat_are_kept_for_the_iteration() -> None:
    cursor = _cursor(after=0)
    early = _event(1)
    assert not cursor._started(early)
    assert cursor._started(_heartbeat(1))
    assert list(cursor._pending) == [early]


def test_a_retryable_end_reopens_and_a_final_end_stops() -> None:
    cursor = _cursor(backoff=Backoff(initial=timedelta(milliseconds=10)))
    step = cursor._received(_end(retryable=True, last=6))
    assert isinstance(step, Reopen)
    assert 0 < step.delay < 0.02
    assert cursor.last_sequence == 6
    assert cursor.reconnects == 1
    assert cursor._received(_end(retryable=False, last=8)) is None
    assert cursor.end == StreamEnd("draining", False, 8)
    assert cursor.reconnects == 1


def test_without_reconnect_even_a_retryable_end_stops_the_stream() -> None:
    cursor = _cursor(reconnect=False)
    assert cursor._received(_end(retryable=True, last=2)) is None
    assert cursor.end is not None and cursor.end.retryable


def test_a_break_worth_retrying_reopens_and_others_are_the_answer() -> None:
    cursor = _cursor()
    assert isinstance(cursor._broken(FailedCall(grpc.StatusCode.UNAVAILABLE)), Reopen)
    assert isinstance(cursor._broken(None), Reopen)
    refused = cursor._broken(FailedCall(grpc.StatusCode.INVALID_ARGUMENT, "bad"))
    assert isinstance(refused, InvalidArgumentError)
    assert cursor.reconnects == 2


def test_without_reconnect_a_cut_is_an_error() -> None:
    cursor = _cursor(reconnect=False)
    cut = cursor._broken(None)
    assert isinstance(cut, EchoError)
    assert "cut" in cut.message
    assert isinstance(
        cursor._broken(FailedCall(grpc.StatusCode.UNAVAILABLE)), UnavailableError
    )


def test_a_reconnect_never_waits_past_the_streams_deadline() -> None:
    cursor = _cursor(
        timeout=timedelta(milliseconds=50),
        backoff=Backoff(initial=timedelta(seconds=30)),
    )
    step = cursor._broken(FailedCall(grpc.StatusCode.UNAVAILABLE))
    assert isinstance(step, Reopen)
    assert step.delay <= 0.05


def test_after_the_deadline_the_last_error_is_the_answer() -> None:
    cursor = _cursor(timeout=timedelta(0))
    failure = cursor._broken(FailedCall(grpc.StatusCode.UNAVAILABLE, "gone"))
    assert isinstance(failure, UnavailableError)
    assert failure.message == "gone"
    assert cursor.reconnects == 0


def test_a_retryable_end_after_the_deadline_gives_up() -> None:
    cursor = _cursor(timeout=timedelta(0))
    gave_up = cursor._received(_end(retryable=True, last=1))
    assert isinstance(gave_up, EchoError)
    assert "gave up" in gave_up.message
    assert cursor.last_sequence == 1


def test_failures_in_a_row_past_the_backoffs_limit_give_up() -> None:
    cursor = _cursor(
        backoff=Backoff(
            initial=timedelta(milliseconds=1), give_up_after=timedelta(seconds=-1)
        )
    )
    assert isinstance(cursor._broken(None), Reopen)
    # A negative limit is passed by the second failure, whatever the clock.
    gave_up = cursor._broken(FailedCall(grpc.StatusCode.UNAVAILABLE, "gone"))
    assert isinstance(gave_up, UnavailableError)


def _delays(cursor: StreamCursor, steps: list[Step]) -> list[float]:
    assert all(isinstance(step, Reopen) for step in steps), steps
    return [step.delay for step in steps if isinstance(step, Reopen)]


def _ended_at_once(cursor: StreamCursor, after: int) -> Step:
    """A call that brought its opening heartbeat and then a retryable end."""
    assert cursor._received(_heartbeat(after)) is not None
    return cursor._received(_end(retryable=True, last=after))


def test_a_server_that_ends_every_stream_at_once_is_reconnected_ever_slower() -> None:
    cursor = _cursor(
        backoff=Backoff(
            initial=timedelta(milliseconds=10), maximum=timedelta(seconds=10)
        )
    )
    delays = _delays(cursor, [_ended_at_once(cursor, 0) for _ in range(5)])
    # 10, 20, 40, 80, 160ms, each scaled by [0.5, 1.5): every range is apart
    # from the one two steps on, and the last is beyond the first's.
    assert all(
        later > earlier for earlier, later in zip(delays, delays[2:], strict=False)
    )
    assert delays[0] < 0.015
    assert delays[-1] >= 0.08
    assert cursor.reconnects == 5


def test_an_event_resets_the_backoff_and_a_heartbeat_does_not() -> None:
    cursor = _cursor(
        backoff=Backoff(
            initial=timedelta(milliseconds=10), maximum=timedelta(seconds=10)
        )
    )
    delays = _delays(cursor, [cursor._broken(None) for _ in range(4)])
    assert delays[-1] >= 0.04  # 80ms scaled by [0.5, 1.5)
    cursor._received(_heartbeat(1))
    [grown] = _delays(cursor, [cursor._broken(None)])
    assert grown >= 0.08  # 160ms scaled
    cursor._received(_event(2))
    [reset] = _delays(cursor, [cursor._broken(None)])
    assert reset < 0.015


def test_a_heartbeat_restarts_the_give_up_clock() -> None:
    """A quiet stream that is cut now and then, with no event between the
    cuts, goes on: the server answered in between."""
    cursor = _cursor(
        backoff=Backoff(
            initial=timedelta(milliseconds=1), give_up_after=timedelta(seconds=-1)
        )
    )
    # A negative limit gives up at the second failure in a row, whatever
    # the clock; a heartbeat between failures keeps each one the first.
    for sequence in range(3):
        assert isinstance(_ended_at_once(cursor, sequence), Reopen)
    # No heartbeat since the last end: this cut is the second in a row.
    gave_up = cursor._broken(None)
    assert isinstance(gave_up, EchoError)
    assert "gave up" in gave_up.message


def test_each_reconnect_is_logged_at_info_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="echo_client._cursor")
    cursor = _cursor(after=3)
    cursor._broken(FailedCall(grpc.StatusCode.UNAVAILABLE))
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "UNAVAILABLE" in record.getMessage()
    assert getattr(record, "echo.last_sequence") == 3
