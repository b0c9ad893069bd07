"""Connect sessions: answers and events tied to request ids, per-request
errors that leave the session open, subscriptions, flow control, endings."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from echo_client import (
    Client,
    InvalidArgumentError,
    NotFoundError,
    Session,
    SessionMessage,
    State,
    UnavailableError,
)

from echo_service._proto.echo.v1 import (
    action_pb2,
    echo_service_pb2,
    echo_service_pb2_grpc,
)
from echo_service.server import EchoServer
from echo_service.server._servicer import EchoServicer
from tests.conftest import WAIT, Gates

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)


@pytest.fixture
def session(client: Client) -> Iterator[Session]:
    with client.connect() as found:
        yield found


def _until(
    session: Session, done: Callable[[SessionMessage], bool]
) -> list[SessionMessage]:
    """Messages up to and including the first for which ``done`` holds."""
    seen: list[SessionMessage] = []
    for message in session:
        seen.append(message)
        if done(message):
            return seen
    raise AssertionError(f"the session ended first: {seen}")


def _finished(rid: str) -> Callable[[SessionMessage], bool]:
    return lambda m: (
        m.request_id == rid
        and m.kind == "event"
        and m.event is not None
        and m.event.finished
    )


def test_an_assign_is_answered_then_its_events_follow_under_its_request_id(
    session: Session,
) -> None:
    rid = session.assign("Add", 20, 22, request_id="sum")
    messages = _until(session, _finished(rid))
    mine = [m for m in messages if m.request_id == rid]
    assert mine[0].kind == "assigned"
    assert mine[0].assigned is not None
    action_id = mine[0].assigned.action.id
    events = [m.event for m in mine[1:] if m.event is not None]
    assert {e.action_id for e in events} == {action_id}
    assert events[-1].state is State.SUCCEEDED
    assert events[-1].result == 42
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences)


def test_a_bad_request_gets_an_error_and_the_session_goes_on(session: Session) -> None:
    bad = session.assign("Add", "one", 2)
    [error] = [m for m in _until(session, lambda m: m.request_id == bad)]
    assert error.kind == "error"
    assert isinstance(error.error, InvalidArgumentError)
    assert [v.field for v in error.error.field_violations] == ["action.args[0]"]
    missing = session.cancel("no-such-action")
    [answer] = _until(session, lambda m: m.request_id == missing)
    assert isinstance(answer.error, NotFoundError)
    good = session.assign("Add", 1, 2)
    assert _until(session, _finished(good))[-1].event.result == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (echo_service_pb2.ConnectRequest(ack=echo_service_pb2.Ack()), "request_id"),
        (echo_service_pb2.ConnectRequest(request_id="r"), "kind"),
        (
            echo_service_pb2.ConnectRequest(
                request_id="r", assign=echo_service_pb2.AssignRequest()
            ),
            "action",
        ),
        (
            echo_service_pb2.ConnectRequest(
                request_id="r", cancel=echo_service_pb2.CancelRequest()
            ),
            "cancel.id",
        ),
    ],
    ids=["no request id", "no kind", "assign without action", "cancel without id"],
)
def test_malformed_requests_name_the_field(
    session: Session, request_: echo_service_pb2.ConnectRequest, field: str
) -> None:
    session.send_raw(request_)
    [answer] = _until(session, lambda m: m.kind == "error")
    assert answer.request_id == request_.request_id
    assert isinstance(answer.error, InvalidArgumentError)
    assert field in [v.field for v in answer.error.field_violations]


def _refused(message: SessionMessage, code: grpc.StatusCode, field: str) -> str:
    """The error's message, once its code and field violation are checked."""
    assert message.kind == "error", message
    assert message.error is not None
    assert message.error.code is code
    assert field in [v.field for v in message.error.field_violations]
    return message.error.message


def test_a_request_id_in_use_is_refused(session: Session, gates: Gates) -> None:
    session.assign("Block", "dup", request_id="same")
    first = _until(session, lambda m: m.request_id == "same")
    assert first[-1].kind == "assigned"
    session.assign("Add", 1, 1, request_id="same")
    again = _until(session, lambda m: m.kind == "error")
    assert again[-1].request_id == "same"
    _refused(again[-1], grpc.StatusCode.INVALID_ARGUMENT, "request_id")
    # The first request is untouched: its action's events still carry the id.
    gates.open("dup")
    final = _until(session, _finished("same"))[-1]
    assert final.event is not None and final.event.state is State.SUCCEEDED
    # Once its action finished, the id is free again.
    session.assign("Add", 2, 2, request_id="same")
    reused = _until(session, _finished("same"))[-1]
    assert reused.event is not None and reused.event.result == 4


def test_a_request_id_is_refused_while_its_assign_or_subscription_is_live(
    session: Session, gates: Gates
) -> None:
    # Sent back to back: the second arrives before the first is answered.
    session.assign("Block", "pending", request_id="twice")
    session.cancel("no-such-action", request_id="twice")
    messages = _until(session, lambda m: m.kind == "error")
    _refused(messages[-1], grpc.StatusCode.INVALID_ARGUMENT, "request_id")
    session.subscribe(names=["Echo"], request_id="watch")
    _until(session, lambda m: m.request_id == "watch")
    session.assign("Echo", "x", request_id="watch")
    clash = _until(session, lambda m: m.kind == "error")[-1]
    assert clash.request_id == "watch"
    _refused(clash, grpc.StatusCode.INVALID_ARGUMENT, "request_id")
    gates.open("pending")
    assert _until(session, _finished("twice"))[-1].event is not None


def test_an_empty_request_id_is_refused_and_the_session_goes_on(
    session: Session,
) -> None:
    session.send_raw(
        echo_service_pb2.ConnectRequest(
            assign=echo_service_pb2.AssignRequest(
                action=action_pb2.Action(
                    name="Add",
                    args=[action_pb2.Value(int_value=1), action_pb2.Value(int_value=1)],
                )
            )
        )
    )
    refused = _until(session, lambda m: m.kind == "error")[-1]
    assert refused.request_id == ""
    _refused(refused, grpc.StatusCode.INVALID_ARGUMENT, "request_id")
    good = session.assign("Add", 1, 2)
    assert _until(session, _finished(good))[-1].event.result == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("after", [2**63, 2**64 - 1])
def test_a_subscription_after_a_sequence_past_63_bits_is_invalid(
    session: Session, after: int
) -> None:
    sub = session.subscribe(after=after)
    refused = _until(session, lambda m: m.request_id == sub)[-1]
    _refused(refused, grpc.StatusCode.INVALID_ARGUMENT, "subscribe.after_sequence")
    good = session.assign("Add", 1, 2)
    assert _until(session, _finished(good))[-1].event.result == 3  # type: ignore[union-attr]


def test_a_subscription_beyond_the_head_is_out_of_range_and_the_head_is_fine(
    session: Session, client: Client
) -> None:
    done = client.assign("Add", 1, 1).action.id
    assert client.wait(done, timeout=WAIT_TD).finished
    live = session.subscribe()
    head = _until(session, lambda m: m.request_id == live)[-1].last_sequence
    assert head
    beyond = session.subscribe(after=head + 1)
    refused = _until(session, lambda m: m.request_id == beyond)[-1]
    text = _refused(refused, grpc.StatusCode.OUT_OF_RANGE, "subscribe.after_sequence")
    assert str(head) in text
    at_head = session.subscribe(after=head)
    answer = _until(session, lambda m: m.request_id == at_head)[-1]
    assert answer.kind == "subscribed"
    assert answer.last_sequence == head


def test_a_cancel_of_a_huge_id_is_refused_without_echoing_it(
    session: Session,
) -> None:
    huge = "x" * 1_000_000
    rid = session.cancel(huge)
    refused = _until(session, lambda m: m.request_id == rid)[-1]
    text = _refused(refused, grpc.StatusCode.INVALID_ARGUMENT, "cancel.id")
    assert len(text) < 1000
    good = session.assign("Add", 1, 2)
    assert _until(session, _finished(good))[-1].event.result == 3  # type: ignore[union-attr]


def test_a_cancel_answers_and_the_assign_sees_its_cancelled_event(
    session: Session, gates: Gates
) -> None:
    rid = session.assign("Block", "s1")
    assigned = _until(session, lambda m: m.kind == "assigned")[-1].assigned
    assert assigned is not None
    assert gates.wait_entered("s1")
    cancel = session.cancel(assigned.action.id, "stop")
    answers = _until(session, _finished(rid))
    assert any(m.request_id == cancel and m.kind == "cancelled" for m in answers)
    assert answers[-1].event is not None
    assert answers[-1].event.state is State.CANCELLED


def test_a_subscription_tags_events_with_its_request_id(
    session: Session, client: Client
) -> None:
    sub = session.subscribe(names=["Echo"])
    subscribed = _until(session, lambda m: m.request_id == sub)[-1]
    assert subscribed.kind == "subscribed"
    assert subscribed.last_sequence is not None
    action_id = client.assign("Echo", "from elsewhere").action.id
    client.assign("Add", 1, 1)  # filtered out
    events = _until(
        session,
        lambda m: m.event is not None and m.event.finished and m.request_id == sub,
    )
    tagged = [m for m in events if m.kind == "event"]
    assert all(m.request_id == sub for m in tagged)
    assert {m.event.action_id for m in tagged if m.event} == {action_id}


def test_half_closing_ends_the_session_once_assigned_actions_finish(
    session: Session,
) -> None:
    rid = session.assign("Add", 2, 3)
    session.close_send()
    messages = list(session)
    assert messages[-1].kind == "end"
    assert messages[-1].end is not None and not messages[-1].end.retryable
    finals = [m for m in messages if _finished(rid)(m)]
    assert len(finals) == 1


def _held_at_a_window_of_two_until_acked(session: Session, rid: str) -> None:
    """Two events come, then only heartbeats (three of them), until an ack
    lets the rest through to the action's success."""
    events: list[int] = []
    beats_after_full = 0
    for message in session:
        if message.kind == "event" and message.event is not None:
            events.append(message.event.sequence)
            assert len(events) <= 2
        elif message.kind == "heartbeat" and len(events) == 2:
            beats_after_full += 1
            if beats_after_full == 3:
                break
    session.ack(events[-1])
    rest = _until(session, _finished(rid))
    assert [m.event.state for m in rest if m.event][-1] is State.SUCCEEDED


def test_unacknowledged_events_are_held_at_the_window(
    make_server: Callable[..., EchoServer],
) -> None:
    """With a window of 2 and no acks, heartbeats keep coming but a third
    event does not, until an ack opens the window."""
    server = make_server(
        session_window=2, heartbeat_interval=timedelta(milliseconds=30)
    )
    with Client(server.address, timeout=WAIT_TD) as client, client.connect() as session:
        session.auto_ack = False
        rid = session.assign("Add", 1, 1)
        _held_at_a_window_of_two_until_acked(session, rid)


def test_stopping_the_server_ends_sessions_with_a_retryable_end(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server()
    with Client(server.address, timeout=WAIT_TD) as client, client.connect() as session:
        rid = session.assign("Block", "bye")
        _until(session, lambda m: m.kind == "assigned")
        assert gates.wait_entered("bye")
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        gates.open("bye")
        rest = list(session)
        stopper.join()
    assert rest[-1].kind == "end"
    assert rest[-1].end is not None and rest[-1].end.retryable
    finals = [m.event for m in rest if _finished(rid)(m)]
    assert finals and finals[0] is not None and finals[0].state is State.SUCCEEDED


def test_connect_refuses_while_the_server_stops(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server()
    server.drain(timedelta(milliseconds=50))
    with (
        Client(server.address, timeout=WAIT_TD) as client,
        client.connect() as session,
        pytest.raises(UnavailableError),
    ):
        next(session)


def test_events_released_by_a_late_answer_wait_behind_the_window(
    make_server: Callable[..., EchoServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events that reach the session before their assign is answered are held,
    then released with the answer; the window still bounds what is sent."""
    finished = threading.Event()
    original = EchoServicer.assign_one

    async def answer_late(
        self: EchoServicer, *args: Any, **kwargs: Any
    ) -> echo_service_pb2.AssignResponse:
        response = await original(self, *args, **kwargs)
        await asyncio.to_thread(finished.wait, WAIT)
        return response

    monkeypatch.setattr(EchoServicer, "assign_one", answer_late)
    server = make_server(
        session_window=2, heartbeat_interval=timedelta(milliseconds=30)
    )
    with (
        Client(server.address, timeout=WAIT_TD) as client,
        client.connect() as session,
    ):
        session.auto_ack = False
        rid = session.assign("Add", 2, 2)
        with client.stream(after=0) as watched:
            assert any(event.state.finished for event in watched)
        finished.set()
        _held_at_a_window_of_two_until_acked(session, rid)


def test_a_session_subscription_with_a_state_filter_gets_only_those_states(
    server: EchoServer, client: Client
) -> None:
    done = threading.Event()

    def requests() -> Iterator[echo_service_pb2.ConnectRequest]:
        yield echo_service_pb2.ConnectRequest(
            request_id="finals",
            subscribe=echo_service_pb2.StreamRequest(
                after_sequence=0, states=[action_pb2.ACTION_STATE_SUCCEEDED]
            ),
        )
        done.wait(WAIT)

    action_id = client.assign("Add", 3, 4).action.id
    with grpc.insecure_channel(server.address) as channel:
        call = echo_service_pb2_grpc.EchoServiceStub(channel).Connect(
            requests(), timeout=WAIT
        )
        assert next(call).WhichOneof("kind") == "subscribed"
        message = next(call)
        assert message.request_id == "finals"
        assert (message.event.action_id, message.event.state) == (
            action_id,
            action_pb2.ACTION_STATE_SUCCEEDED,
        )
        call.cancel()
        done.set()
