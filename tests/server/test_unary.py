"""Unary RPCs over a real socket: the happy paths, every refusal with its code
and field violation, and errors nobody expected."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import grpc
import pytest
from echo_client import (
    ActionRequest,
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    Json,
    NotFoundError,
    Options,
    ResourceExhaustedError,
    RetryPolicy,
    State,
    UnavailableError,
)
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from echo_service._proto.echo.v1 import (
    action_pb2,
    echo_service_pb2,
    echo_service_pb2_grpc,
)
from echo_service.server import EchoServer
from echo_service.store import MemoryStore
from echo_service.telemetry import RpcTelemetryInterceptor, setup_telemetry
from tests.conftest import WAIT, Gates

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)


@pytest.fixture
def stub(server: EchoServer) -> Iterator[echo_service_pb2_grpc.EchoServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield echo_service_pb2_grpc.EchoServiceStub(channel)


def _details(error: grpc.RpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no google.rpc details")


def _violations(error: grpc.RpcError) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in _details(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def _retry_delay(error: grpc.RpcError) -> timedelta | None:
    for detail in _details(error).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta()
    return None


def _v(**kind: object) -> action_pb2.Value:
    return action_pb2.Value(**kind)  # type: ignore[arg-type]


def _add(a: int = 1, b: int = 2, **fields: object) -> action_pb2.Action:
    return action_pb2.Action(
        name="Add", args=[_v(int_value=a), _v(int_value=b)], **fields
    )  # type: ignore[arg-type]


def _with_options(**options: object) -> action_pb2.Action:
    action = _add()
    action.options.CopyFrom(action_pb2.ActionOptions(**options))  # type: ignore[arg-type]
    return action


def _retry(**policy: object) -> action_pb2.Action:
    return _with_options(retry_policy=action_pb2.RetryPolicy(**policy))  # type: ignore[arg-type]


NEGATIVE = duration_pb2.Duration(seconds=-1)
ZERO = duration_pb2.Duration()


BAD_ASSIGNS: list[tuple[str, echo_service_pb2.AssignRequest, str]] = [
    ("no action", echo_service_pb2.AssignRequest(), "action"),
    (
        "no name",
        echo_service_pb2.AssignRequest(action=action_pb2.Action()),
        "action.name",
    ),
    (
        "unknown name",
        echo_service_pb2.AssignRequest(action=action_pb2.Action(name="Nope")),
        "action.name",
    ),
    ("id set", echo_service_pb2.AssignRequest(action=_add(id="mine")), "action.id"),
    (
        "output field set",
        echo_service_pb2.AssignRequest(
            action=_add(state=action_pb2.ACTION_STATE_RUNNING)
        ),
        "action.state",
    ),
    (
        "wrong type",
        echo_service_pb2.AssignRequest(
            action=action_pb2.Action(
                name="Add", args=[_v(string_value="1"), _v(int_value=2)]
            )
        ),
        "action.args[0]",
    ),
    (
        "wrong arity",
        echo_service_pb2.AssignRequest(
            action=action_pb2.Action(name="Add", args=[_v(int_value=1)])
        ),
        "action.args",
    ),
    (
        "value without a kind",
        echo_service_pb2.AssignRequest(
            action=action_pb2.Action(
                name="Add", args=[action_pb2.Value(), _v(int_value=2)]
            )
        ),
        "action.args[0]",
    ),
    (
        "bad JSON text",
        echo_service_pb2.AssignRequest(
            action=action_pb2.Action(name="Json", args=[_v(json_value="{nope")])
        ),
        "action.args[0].json_value",
    ),
    (
        "NaN is not JSON",
        echo_service_pb2.AssignRequest(
            action=action_pb2.Action(name="Json", args=[_v(json_value="NaN")])
        ),
        "action.args[0].json_value",
    ),
    (
        "negative delay",
        echo_service_pb2.AssignRequest(action=_with_options(delay=NEGATIVE)),
        "action.options.delay",
    ),
    (
        "zero attempt timeout",
        echo_service_pb2.AssignRequest(action=_with_options(attempt_timeout=ZERO)),
        "action.options.attempt_timeout",
    ),
    (
        "backoff below one",
        echo_service_pb2.AssignRequest(action=_retry(backoff_coefficient=0.5)),
        "action.options.retry_policy.backoff_coefficient",
    ),
    (
        "negative attempts",
        echo_service_pb2.AssignRequest(action=_retry(maximum_attempts=-1)),
        "action.options.retry_policy.maximum_attempts",
    ),
    (
        "jitter above one",
        echo_service_pb2.AssignRequest(action=_retry(jitter=2.0)),
        "action.options.retry_policy.jitter",
    ),
    (
        "negative initial interval",
        echo_service_pb2.AssignRequest(action=_retry(initial_interval=NEGATIVE)),
        "action.options.retry_policy.initial_interval",
    ),
    (
        "maximum below initial interval",
        echo_service_pb2.AssignRequest(
            action=_retry(
                initial_interval=duration_pb2.Duration(seconds=10),
                maximum_interval=duration_pb2.Duration(seconds=1),
            )
        ),
        "action.options.retry_policy.maximum_interval",
    ),
    (
        "oversize idempotency key",
        echo_service_pb2.AssignRequest(action=_with_options(idempotency_key="k" * 257)),
        "action.options.idempotency_key",
    ),
    (
        "oversize metadata value",
        echo_service_pb2.AssignRequest(action=_add(metadata={"k": "v" * 4097})),
        "action.metadata['k']",
    ),
    (
        "next action without a name",
        echo_service_pb2.AssignRequest(
            action=_with_options(next_action=action_pb2.Action())
        ),
        "action.options.next_action.name",
    ),
    (
        "unknown hook",
        echo_service_pb2.AssignRequest(action=_add(metadata={"hooks": "nope"})),
        "action.metadata.hooks",
    ),
]


@pytest.mark.parametrize(
    ("request_", "field"),
    [(r, f) for _, r, f in BAD_ASSIGNS],
    ids=[name for name, _, _ in BAD_ASSIGNS],
)
def test_a_bad_assign_is_invalid_argument_naming_the_field(
    stub: echo_service_pb2_grpc.EchoServiceStub,
    request_: echo_service_pb2.AssignRequest,
    field: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Assign(request_, timeout=WAIT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(caught.value), _violations(caught.value)


def test_every_problem_of_a_request_is_reported_at_once(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    action = _retry(jitter=5.0, maximum_attempts=-2)
    action.args[0].CopyFrom(_v(string_value="x"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Assign(echo_service_pb2.AssignRequest(action=action), timeout=WAIT)
    assert set(_violations(caught.value)) >= {
        "action.args[0]",
        "action.options.retry_policy.jitter",
        "action.options.retry_policy.maximum_attempts",
    }


def test_delay_and_not_before_cannot_both_be_sent(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    options = action_pb2.ActionOptions(delay=duration_pb2.Duration(seconds=5))
    options.not_before.GetCurrentTime()
    assert options.WhichOneof("schedule") == "not_before"
    assert not options.HasField("delay")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (echo_service_pb2.AssignManyRequest, "actions"),
        (
            lambda: echo_service_pb2.AssignManyRequest(
                actions=[
                    _add(),
                    action_pb2.Action(name="Add", args=[_v(bool_value=True)]),
                ]
            ),
            "actions[1].args",
        ),
        (
            lambda: echo_service_pb2.AssignManyRequest(actions=[_add()] * 6),
            "actions",
        ),
    ],
    ids=["empty batch", "bad second action", "too many actions"],
)
def test_a_bad_batch_is_refused_whole(
    make_server: Callable[..., EchoServer],
    make: Callable[[], echo_service_pb2.AssignManyRequest],
    field: str,
) -> None:
    server = make_server(max_batch=5)
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.AssignMany(make(), timeout=WAIT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(caught.value)
    assert server.engine.stats.waiting == 0


def test_assign_stream_refuses_a_bad_action_by_its_arrival_index(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    messages = [
        echo_service_pb2.AssignStreamRequest(actions=[_add(), _add()]),
        echo_service_pb2.AssignStreamRequest(actions=[action_pb2.Action(name="")]),
    ]
    with pytest.raises(grpc.RpcError) as caught:
        stub.AssignStream(iter(messages), timeout=WAIT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "actions[2].name" in _violations(caught.value)
    with pytest.raises(grpc.RpcError) as caught:
        stub.AssignStream(iter([]), timeout=WAIT)
    assert "actions" in _violations(caught.value)


@pytest.mark.parametrize("rpc", ["GetAction", "Cancel"])
def test_an_empty_id_is_invalid_argument(
    stub: echo_service_pb2_grpc.EchoServiceStub, rpc: str
) -> None:
    request = (
        echo_service_pb2.GetActionRequest()
        if rpc == "GetAction"
        else echo_service_pb2.CancelRequest()
    )
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, rpc)(request, timeout=WAIT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "id" in _violations(caught.value)


def test_list_signatures_describes_the_plan_sorted_by_name(client: Client) -> None:
    signatures = client.list_signatures()
    names = [s.name for s in signatures]
    assert names == sorted(names)
    add = next(s for s in signatures if s.name == "Add")
    assert [(p.name, p.type) for p in add.inputs] == [("a", "int"), ("b", "int")]
    assert add.output == "int"


def test_assign_answers_with_a_journaled_action_that_runs(client: Client) -> None:
    assigned = client.assign("Add", 2, 40)
    assert assigned.action.id
    assert not assigned.duplicate
    assert assigned.action.state in (State.ACCEPTED, State.QUEUED, State.RUNNING)
    done = client.wait(assigned.action.id, timeout=WAIT_TD)
    assert done.state is State.SUCCEEDED
    assert done.result == 42
    assert type(done.result) is int
    assert client.get(assigned.action.id).result == 42


def test_integers_stay_integers_through_json(client: Client) -> None:
    value = {"small": 1, "big": 2**62 + 1, "huge": 10**30, "float": 1.5, "list": [1, 2]}
    assigned = client.assign("Json", Json(value))
    done = client.wait(assigned.action.id, timeout=WAIT_TD)
    assert done.result == value
    assert type(done.result["small"]) is int
    assert done.result["huge"] == 10**30


def test_a_result_of_no_value_comes_back_as_none(client: Client) -> None:
    done = client.wait(client.assign("Nothing").action.id, timeout=WAIT_TD)
    assert done.state is State.SUCCEEDED
    assert done.result is None


def test_a_failing_action_carries_the_handlers_error(client: Client) -> None:
    done = client.wait(client.assign("Fail", "bad input").action.id, timeout=WAIT_TD)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.type == "ValueError"
    assert "bad input" in done.error.message


def test_assign_many_and_assign_stream_keep_request_order(client: Client) -> None:
    requests = [ActionRequest("Add", (i, i)) for i in range(5)]
    many = client.assign_many(requests)
    streamed = client.assign_stream(requests, chunk=2)
    for batch in (many, streamed):
        assert [a.action.args for a in batch] == [(i, i) for i in range(5)]
        results = [client.wait(a.action.id, timeout=WAIT_TD).result for a in batch]
        assert results == [2 * i for i in range(5)]


def test_a_repeated_idempotency_key_returns_the_first_action(client: Client) -> None:
    options = Options(idempotency_key="once")
    first = client.assign("Add", 1, 1, options=options)
    second = client.assign("Add", 1, 1, options=options)
    assert second.duplicate
    assert second.action.id == first.action.id


def test_explicit_zeros_are_kept_apart_from_unset(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    action = _with_options(
        priority=0,
        delay=duration_pb2.Duration(),
        retry_policy=action_pb2.RetryPolicy(maximum_attempts=0),
    )
    answer = stub.Assign(echo_service_pb2.AssignRequest(action=action), timeout=WAIT)
    options = answer.action.options
    assert options.HasField("delay")
    assert options.retry_policy.HasField("maximum_attempts")
    assert options.retry_policy.maximum_attempts == 0
    unset = stub.Assign(echo_service_pb2.AssignRequest(action=_add()), timeout=WAIT)
    assert not unset.action.options.HasField("retry_policy")
    assert not unset.action.options.HasField("delay")


def test_a_zero_initial_interval_round_trips_and_retries_at_once(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    policy = action_pb2.RetryPolicy(
        initial_interval=ZERO, maximum_attempts=3, jitter=0.0
    )
    action = action_pb2.Action(
        name="Flaky",
        args=[_v(string_value="zero-interval"), _v(int_value=2)],
        options=action_pb2.ActionOptions(retry_policy=policy),
    )
    answer = stub.Assign(echo_service_pb2.AssignRequest(action=action), timeout=WAIT)
    sent = answer.action.options.retry_policy
    assert sent.HasField("initial_interval")
    assert sent.initial_interval.ToTimedelta() == timedelta(0)
    action_id = answer.action.id
    got = stub.GetAction(echo_service_pb2.GetActionRequest(id=action_id), timeout=WAIT)
    kept = got.action.options.retry_policy
    assert kept.HasField("initial_interval")
    assert kept.initial_interval.ToTimedelta() == timedelta(0)
    # Honoured: both retries are scheduled with no delay (the default would
    # have waited 1s, then 2s).
    request = echo_service_pb2.StreamRequest(action_ids=[action_id], after_sequence=0)
    delays: list[timedelta] = []
    for message in stub.Stream(request, timeout=WAIT):
        if message.WhichOneof("kind") != "event":
            continue
        event = message.event
        if event.state == action_pb2.ACTION_STATE_RETRYING:
            delays.append(event.retry_delay.ToTimedelta())
        if event.state == action_pb2.ACTION_STATE_SUCCEEDED:
            assert event.result.int_value == 3
            break
    assert delays == [timedelta(0), timedelta(0)]


def test_get_and_cancel_of_an_unknown_id_are_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.get("no-such-action")
    with pytest.raises(NotFoundError):
        client.cancel("no-such-action")


@pytest.mark.parametrize(
    "bad_id",
    ["x" * 1_000_000, "x" * 129, "line\nbreak", "nul\x00"],
    ids=["one megabyte", "129 bytes", "newline", "nul"],
)
def test_an_unreasonable_id_is_invalid_and_never_echoed(
    stub: echo_service_pb2_grpc.EchoServiceStub, bad_id: str
) -> None:
    calls: list[Callable[[], object]] = [
        lambda: stub.GetAction(
            echo_service_pb2.GetActionRequest(id=bad_id), timeout=WAIT
        ),
        lambda: stub.Cancel(echo_service_pb2.CancelRequest(id=bad_id), timeout=WAIT),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        error = raised.value
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "id" in _violations(error)
        assert bad_id not in (error.details() or "")


def test_an_id_of_128_bytes_is_looked_up(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetAction(echo_service_pb2.GetActionRequest(id="x" * 128), timeout=WAIT)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


def test_an_error_quoting_huge_input_is_cut_to_fit_the_trailers(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    name = "N" * 200_000
    actions = [action_pb2.Action(name=name + str(i)) for i in range(3)]
    with pytest.raises(grpc.RpcError) as raised:
        stub.AssignMany(
            echo_service_pb2.AssignManyRequest(actions=actions), timeout=WAIT
        )
    error = raised.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len((error.details() or "").encode()) <= 512
    violations = _violations(error)
    assert "actions[0].name" in violations
    assert all(len(v.encode()) <= 256 for v in violations.values())


def test_cancelling_a_running_action_ends_it_cancelled(
    client: Client, gates: Gates
) -> None:
    assigned = client.assign("Block", "c1")
    assert gates.wait_entered("c1")
    client.cancel(assigned.action.id, "changed my mind")
    done = client.wait(assigned.action.id, timeout=WAIT_TD)
    assert done.state is State.CANCELLED
    with pytest.raises(FailedPreconditionError):
        client.cancel(assigned.action.id)


def test_a_waiting_action_is_cancelled_at_once(client: Client) -> None:
    assigned = client.assign("Add", 1, 2, options=Options(delay=timedelta(hours=1)))
    cancelled = client.cancel(assigned.action.id)
    assert cancelled.state is State.CANCELLED


def test_a_full_queue_is_resource_exhausted_with_a_retry_hint(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server(max_waiting=1)
    with Client(server.address, timeout=WAIT_TD) as client:
        client.assign("Block", "full")
        with pytest.raises(ResourceExhaustedError) as caught:
            client.assign("Add", 1, 2)
    assert caught.value.retry_delay is not None
    assert caught.value.retry_delay > timedelta(0)


def test_a_batch_larger_than_the_queue_is_invalid_not_a_full_queue(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(max_waiting=3)
    with Client(server.address, timeout=WAIT_TD) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            client.assign_many([ActionRequest("Add", (1, i)) for i in range(4)])
        assert caught.value.retry_delay is None
        [violation] = caught.value.field_violations
        assert violation.field == "actions"
        assert "at most 3" in violation.description
        # A batch that fits is taken.
        assert len(client.assign_many([ActionRequest("Add", (1, 2))] * 3)) == 3


def test_assigns_while_draining_are_unavailable_with_a_retry_hint(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server()
    server.drain(timedelta(milliseconds=100))
    with Client(server.address, timeout=WAIT_TD) as client:
        with pytest.raises(UnavailableError) as caught:
            client.assign("Add", 1, 2)
        assert caught.value.retry_delay is not None
        assert client.list_signatures()  # reads still work while draining


def test_retry_policy_options_reach_the_engine(client: Client) -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(milliseconds=10),
        maximum_attempts=3,
        jitter=0.0,
    )
    done = client.wait(
        client.assign("Flaky", "k", 2, options=Options(retry_policy=policy)).action.id,
        timeout=WAIT_TD,
    )
    assert done.state is State.SUCCEEDED
    assert done.result == 3


def test_the_call_trace_context_is_kept_when_the_action_has_none(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    answer = stub.Assign(
        echo_service_pb2.AssignRequest(action=_add()),
        metadata=[("traceparent", parent)],
        timeout=WAIT,
    )
    assert answer.action.trace_context["traceparent"] == parent
    got = stub.GetAction(echo_service_pb2.GetActionRequest(id=answer.action.id))
    assert got.action.trace_context["traceparent"] == parent


class _BrokenStore(MemoryStore):
    """A journal whose ``get`` fails for one id the way a bug would."""

    def get(self, action_id: str):  # type: ignore[no-untyped-def]
        if action_id == "boom":
            raise RuntimeError("a bug")
        return super().get(action_id)


def test_an_unexpected_error_is_internal_logged_and_the_server_goes_on(
    make_server: Callable[..., EchoServer], caplog: pytest.LogCaptureFixture
) -> None:
    store = _BrokenStore(key_retention=timedelta(hours=1))
    server = make_server(journal=store)
    caplog.set_level(logging.ERROR, logger="echo_service.server._status")
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetAction(echo_service_pb2.GetActionRequest(id="boom"), timeout=WAIT)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert "a bug" not in (caught.value.details() or "")
        assert stub.ListSignatures(echo_service_pb2.ListSignaturesRequest()).signatures
    assert any("a bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    server.stop()
    store.close()


def test_an_actions_spans_nest_under_the_calls_server_span(
    make_server: Callable[..., EchoServer],
) -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(span_exporters=[exporter])
    try:
        server = make_server(
            interceptors=[
                RpcTelemetryInterceptor(tracer_provider=telemetry.tracer_provider)
            ],
            tracer_provider=telemetry.tracer_provider,
        )
        caller = telemetry.tracer_provider.get_tracer("test")
        with (
            Client(server.address, timeout=WAIT_TD) as client,
            caller.start_as_current_span("caller") as span,
        ):
            action_id = client.assign("Add", 1, 2).action.id
            assert client.wait(action_id, timeout=WAIT_TD).result == 3
        trace_id = span.get_span_context().trace_id
        spans = {s.name: s for s in exporter.get_finished_spans()}
        rpc = spans["echo.v1.EchoService/Assign"]
        assign = next(s for name, s in spans.items() if name.startswith("echo.assign"))
        assert rpc.context.trace_id == trace_id
        assert assign.context.trace_id == trace_id
        assert assign.parent is not None
        assert assign.parent.span_id == rpc.context.span_id
    finally:
        telemetry.shutdown()
