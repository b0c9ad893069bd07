"""The requests both clients send, built from Python values without I/O."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from echo_client import FINAL_STATES, ActionRequest, Options, RetryPolicy, State
from echo_client import _requests as requests
from echo_client._proto.echo.v1 import action_pb2

pytestmark = pytest.mark.timeout(30)


def test_explicit_zero_options_go_on_the_wire_and_unset_ones_do_not() -> None:
    zero = Options(
        delay=timedelta(0),
        priority=0,
        retry_policy=RetryPolicy(maximum_attempts=0, jitter=0.0),
    )
    sent = requests.assign("Add", (1, 2), zero, None).action.options
    assert sent.HasField("delay")
    assert sent.HasField("priority")
    assert sent.priority == 0
    assert sent.retry_policy.HasField("maximum_attempts")
    assert sent.retry_policy.HasField("jitter")
    assert not sent.HasField("attempt_timeout")
    assert not sent.HasField("not_before")
    assert not sent.retry_policy.HasField("backoff_coefficient")
    unset = requests.assign("Add", (1, 2), Options(), None).action
    assert not unset.options.HasField("priority")
    assert not unset.options.HasField("delay")


def test_an_action_carries_its_arguments_metadata_and_times() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5)
    action = requests.action(
        "Echo",
        ["text", 2**40],
        Options(not_before=moment, idempotency_key="k"),
        {"tenant": "a"},
    )
    assert [a.WhichOneof("kind") for a in action.args] == ["string_value", "int_value"]
    assert action.metadata == {"tenant": "a"}
    assert action.options.idempotency_key == "k"
    # A naive time is taken as UTC.
    assert action.options.not_before.ToDatetime(tzinfo=UTC) == moment.replace(
        tzinfo=UTC
    )


def test_an_assign_stream_refuses_a_bad_value_before_any_message_is_made() -> None:
    actions = [ActionRequest("Add", (1, 2)), ActionRequest("Add", ({1, 2}, 1))]
    with pytest.raises(TypeError, match="Json"):
        requests.assign_stream(actions, 2)


@pytest.mark.parametrize("chunk", [0, -1])
def test_an_assign_stream_refuses_a_chunk_below_one(chunk: int) -> None:
    with pytest.raises(ValueError, match="chunk"):
        requests.assign_stream([ActionRequest("Add", (1, 2))], chunk)


def test_an_assign_stream_sends_every_action_in_order_chunk_by_chunk() -> None:
    actions = [ActionRequest("Add", (i, 1)) for i in range(5)]
    messages = list(requests.assign_stream(actions, 2))
    assert [len(m.actions) for m in messages] == [2, 2, 1]
    sent = [a.args[0].int_value for m in messages for a in m.actions]
    assert sent == [0, 1, 2, 3, 4]


def test_a_stream_sends_only_the_filters_and_options_it_was_given() -> None:
    live = requests.stream(after=None, action_ids=(), names=(), heartbeat=None)
    assert not live.HasField("after_sequence")
    assert not live.HasField("heartbeat_interval")
    replay = requests.stream(
        after=0, action_ids=["a"], names=["Add"], heartbeat=timedelta(seconds=2)
    )
    assert replay.HasField("after_sequence")
    assert replay.after_sequence == 0
    assert list(replay.action_ids) == ["a"]
    assert list(replay.action_names) == ["Add"]
    assert replay.heartbeat_interval.ToTimedelta() == timedelta(seconds=2)


def test_a_resumed_stream_keeps_its_filters_and_asks_after_the_last_sequence() -> None:
    first = requests.wait_stream("id-1")
    again = requests.resume(first, 41)
    assert list(again.action_ids) == ["id-1"]
    assert again.after_sequence == 41
    assert not first.HasField("after_sequence")
    assert not requests.resume(first, None).HasField("after_sequence")


def test_a_state_is_sent_by_its_number_however_the_caller_names_it() -> None:
    named = [
        State.SUCCEEDED,
        "failed",
        "CANCELLED",
        "action_state_running",
        action_pb2.ACTION_STATE_PROGRESS,
    ]
    sent = requests.stream(
        after=None, action_ids=(), names=(), heartbeat=None, states=named
    )
    assert list(sent.states) == [
        action_pb2.ACTION_STATE_SUCCEEDED,
        action_pb2.ACTION_STATE_FAILED,
        action_pb2.ACTION_STATE_CANCELLED,
        action_pb2.ACTION_STATE_RUNNING,
        action_pb2.ACTION_STATE_PROGRESS,
    ]
    assert not requests.stream(
        after=None, action_ids=(), names=(), heartbeat=None
    ).states


def test_numbers_the_server_refuses_are_still_sent_for_it_to_judge() -> None:
    sent = requests.stream(
        after=None,
        action_ids=(),
        names=(),
        heartbeat=None,
        states=[State.UNSPECIFIED, 0, 99],
    )
    assert list(sent.states) == [0, 0, 99]


@pytest.mark.parametrize(
    ("state", "error"),
    [("done", ValueError), (2**31, ValueError), (True, TypeError), (7.0, TypeError)],
)
def test_a_state_that_is_no_state_is_refused_before_any_call(
    state: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="state"):
        requests.stream(
            after=None,
            action_ids=(),
            names=(),
            heartbeat=None,
            states=[state],  # type: ignore[list-item]
        )


def test_wait_asks_for_final_states_only_and_again_on_resume() -> None:
    first = requests.wait_stream("id-1")
    finals = [
        action_pb2.ACTION_STATE_SUCCEEDED,
        action_pb2.ACTION_STATE_FAILED,
        action_pb2.ACTION_STATE_CANCELLED,
    ]
    assert list(first.states) == finals
    assert set(FINAL_STATES) == {State.SUCCEEDED, State.FAILED, State.CANCELLED}
    assert list(requests.resume(first, 12).states) == finals


def test_a_subscribe_carries_its_states() -> None:
    sent = requests.connect_subscribe(
        "s", after=None, action_ids=(), names=(), heartbeat=None, states=["failed"]
    )
    assert list(sent.subscribe.states) == [action_pb2.ACTION_STATE_FAILED]


def test_shutdown_carries_its_grace_and_the_admin_token_as_metadata() -> None:
    assert not requests.shutdown(None).HasField("grace")
    assert requests.shutdown(timedelta(0)).HasField("grace")
    assert requests.admin_metadata("secret") == (("x-echo-admin-token", "secret"),)


def test_connect_requests_carry_their_request_id_and_one_kind_each() -> None:
    sent = [
        requests.connect_assign("a", "Echo", ("x",), None, None),
        requests.connect_cancel("c", "id-1", "why"),
        requests.connect_subscribe(
            "s", after=3, action_ids=(), names=("Echo",), heartbeat=None
        ),
        requests.connect_ack("k", 9),
    ]
    assert [(r.request_id, r.WhichOneof("kind")) for r in sent] == [
        ("a", "assign"),
        ("c", "cancel"),
        ("s", "subscribe"),
        ("k", "ack"),
    ]
    assert sent[2].subscribe.after_sequence == 3
    assert sent[3].ack.sequence == 9


def test_a_given_request_id_is_kept_and_others_are_numbered() -> None:
    ids = requests.RequestIds()
    assert [ids.take(None), ids.take("mine"), ids.take(""), ids.take(None)] == [
        "r1",
        "mine",
        "r2",
        "r3",
    ]


def test_request_ids_taken_from_many_threads_are_all_different() -> None:
    ids = requests.RequestIds()
    ready = threading.Barrier(4)

    def take() -> list[str]:
        ready.wait(timeout=10)
        return [ids.take(None) for _ in range(500)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        taken = [rid for batch in pool.map(lambda _: take(), range(4)) for rid in batch]
    assert len(set(taken)) == len(taken) == 2000
