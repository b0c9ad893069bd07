"""The engine end to end on a real MemoryStore, with a manual clock."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest

from echo_service import errors
from echo_service.engine import (
    ActionOptions,
    ActionSpec,
    ErrorKind,
    ExecutionContext,
    Hook,
    ManualClock,
    NonRetryable,
    PlanBuilder,
    Retry,
    RetryPolicy,
    State,
    ValueType,
)

from .conftest import WAIT, events_until, finished, state_is

FAST = RetryPolicy(initial_interval=timedelta(seconds=1), jitter=0, maximum_attempts=3)


def opts(**kw: object) -> ActionOptions:
    kw.setdefault("retry_policy", FAST)
    return ActionOptions(**kw)  # type: ignore[arg-type]


def flaky_plan(
    fail_times: dict[str, int] | None = None, exc: type[Exception] = ValueError
):
    """``flaky(key)`` fails ``fail_times[key]`` times, then returns its attempt."""
    b = PlanBuilder()
    counts: dict[str, int] = {}
    lock = threading.Lock()

    @b.action(inputs=[ValueType.STRING], output=ValueType.INT)
    def flaky(ctx: ExecutionContext, key: str) -> int:
        with lock:
            counts[key] = counts.get(key, 0) + 1
            n = counts[key]
        if n <= (fail_times or {}).get(key, 10**9):
            raise exc(f"{key} failed try {n}")
        return ctx.attempt

    return b


def advance_through_retries(clock: ManualClock, sub, action_id: str):
    """Advance time by each retry's delay until the action finishes."""
    seen = []
    while True:
        ev = events_until(
            sub,
            lambda e: (
                e.action_id == action_id
                and (e.state.finished or e.state is State.RETRYING)
            ),
        )
        seen.extend(ev)
        last = ev[-1]
        if last.state.finished:
            return seen
        clock.advance(last.retry_delay)


def test_a_failing_action_retries_after_the_policys_delays_then_succeeds(
    make_engine, clock
) -> None:
    engine = make_engine(flaky_plan({"a": 2}).build())
    sub = engine.subscribe()
    [a] = engine.assign([ActionSpec("flaky", ("a",), opts())])
    events = advance_through_retries(clock, sub, a.action.id)
    retries = [e for e in events if e.state is State.RETRYING]
    assert [e.retry_delay for e in retries] == [
        timedelta(seconds=1),
        timedelta(seconds=2),
    ]
    assert [e.attempt for e in retries] == [1, 2]
    assert events[-1].state is State.SUCCEEDED and events[-1].result == 3


def test_retries_stop_at_the_limit_and_the_final_error_is_the_handlers_own(
    make_engine, clock
) -> None:
    engine = make_engine(flaky_plan().build())
    sub = engine.subscribe()
    [a] = engine.assign([ActionSpec("flaky", ("x",), opts())])
    events = advance_through_retries(clock, sub, a.action.id)
    last = events[-1]
    assert last.state is State.FAILED and last.attempt == 3
    assert last.error is not None
    assert (last.error.type, last.error.message, last.error.kind) == (
        "ValueError",
        "x failed try 3",
        ErrorKind.HANDLER,
    )
    view = engine.get(a.action.id)
    assert view.state is State.FAILED and view.error == last.error


def test_retry_delays_with_jitter_stay_within_bounds(make_engine, clock) -> None:
    engine = make_engine(flaky_plan().build())
    sub = engine.subscribe()
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=10), jitter=0.5, maximum_attempts=4
    )
    [a] = engine.assign(
        [ActionSpec("flaky", ("j",), ActionOptions(retry_policy=policy))]
    )
    events = advance_through_retries(clock, sub, a.action.id)
    delays = [
        e.retry_delay.total_seconds() for e in events if e.state is State.RETRYING
    ]
    assert len(delays) == 3
    for delay, base in zip(delays, (10, 20, 40), strict=True):
        assert base * 0.5 <= delay <= base * 1.5


@pytest.mark.parametrize("how", ["signal", "listed type"])
def test_non_retryable_errors_stop_at_once(make_engine, how: str) -> None:
    b = PlanBuilder()

    @b.action(output=ValueType.NONE)
    def bad(ctx: ExecutionContext) -> None:
        if how == "signal":
            raise NonRetryable("no point") from KeyError("missing")
        raise LookupError("gone")

    engine = make_engine(b.build())
    sub = engine.subscribe()
    policy = RetryPolicy(non_retryable_error_types=frozenset({"LookupError"}))
    [a] = engine.assign([ActionSpec("bad", options=ActionOptions(retry_policy=policy))])
    last = events_until(sub, finished(a.action.id))[-1]
    assert last.state is State.FAILED and last.attempt == 1
    assert last.error.type == ("KeyError" if how == "signal" else "LookupError")
    assert last.error.non_retryable == (how == "signal")


def test_a_handlers_retry_signal_sets_the_next_delay(make_engine, clock) -> None:
    b = PlanBuilder()

    @b.action(output=ValueType.INT)
    def later(ctx: ExecutionContext) -> int:
        if ctx.attempt == 1:
            raise Retry(next_delay=timedelta(seconds=7))
        return ctx.attempt

    engine = make_engine(b.build())
    sub = engine.subscribe()
    [a] = engine.assign([ActionSpec("later", options=opts())])
    events = advance_through_retries(clock, sub, a.action.id)
    assert [e.retry_delay for e in events if e.state is State.RETRYING] == [
        timedelta(seconds=7)
    ]
    assert events[-1].result == 2


def test_concurrent_failing_actions_each_get_their_own_attempt_count(
    make_engine, clock
) -> None:
    engine = make_engine(flaky_plan().build(), workers=2)
    sub = engine.subscribe()
    keys = [f"k{i}" for i in range(8)]
    assigned = engine.assign([ActionSpec("flaky", (k,), opts()) for k in keys])
    ids = {a.action.id for a in assigned}
    done: dict[str, int] = {}
    while len(done) < len(ids):
        e = sub.get(WAIT)
        assert e is not None
        if e.action_id in ids and e.state is State.FAILED:
            done[e.action_id] = e.attempt
        if e.state is State.RETRYING:
            clock.advance(e.retry_delay)
    assert set(done.values()) == {3}
    assert all(engine.get(i).attempt == 3 for i in ids)


def test_a_retry_keeps_the_priority_and_every_option(make_engine, clock) -> None:
    engine = make_engine(flaky_plan({"p": 1}).build())
    sub = engine.subscribe()
    options = opts(
        priority=7,
        attempt_timeout=timedelta(minutes=5),
        deadline=datetime(2100, 1, 1, tzinfo=UTC),
        idempotency_key="keep-me",
    )
    [a] = engine.assign([ActionSpec("flaky", ("p",), options, metadata={"m": "1"})])
    events_until(sub, state_is(a.action.id, State.RETRYING))
    view = engine.get(a.action.id)
    assert view.options == engine.get(a.action.id).options == a.action.options
    assert view.options.priority == 7 and view.metadata == {"m": "1"}
    # the journal row itself keeps the priority, so the re-claim honours it
    assert engine._store.get(a.action.id).priority == 7
    clock.advance(timedelta(seconds=1))
    assert events_until(sub, finished(a.action.id))[-1].state is State.SUCCEEDED


class Recorder(Hook):
    def __init__(self, name: str, log: list[str], fail_before: bool = False) -> None:
        self.name, self.log, self.fail_before = name, log, fail_before

    def before_attempt(self, ctx: ExecutionContext) -> None:
        self.log.append(f"before:{self.name}")
        if self.fail_before:
            raise PermissionError(f"{self.name} says no")

    def after_attempt(self, ctx, result, error) -> None:
        self.log.append(f"after:{self.name}:{'err' if error else 'ok'}")

    def on_retry(self, ctx, error, delay) -> None:
        self.log.append(f"retry:{self.name}")

    def on_failure(self, ctx, error) -> None:
        self.log.append(f"failure:{self.name}")


def test_hooks_run_in_the_documented_order(make_engine, clock) -> None:
    log: list[str] = []
    b = flaky_plan({"h": 1})
    b.global_hooks([Recorder("g1", log), Recorder("g2", log)])
    b.hook("a", Recorder("a", log)).hook("b", Recorder("b", log))
    engine = make_engine(b.build())
    sub = engine.subscribe()
    [x] = engine.assign(
        [ActionSpec("flaky", ("h",), opts(), metadata={"hooks": "a, b"})]
    )
    advance_through_retries(clock, sub, x.action.id)
    assert log == [
        "before:g1",
        "before:g2",
        "before:a",
        "before:b",
        "after:b:err",
        "after:a:err",
        "after:g2:err",
        "after:g1:err",
        "retry:g1",
        "retry:g2",
        "retry:a",
        "retry:b",
        "before:g1",
        "before:g2",
        "before:a",
        "before:b",
        "after:b:ok",
        "after:a:ok",
        "after:g2:ok",
        "after:g1:ok",
    ]


def test_a_failing_before_hook_fails_the_attempt_with_kind_hook(make_engine) -> None:
    log: list[str] = []
    b = flaky_plan()
    b.hook("deny", Recorder("deny", log, fail_before=True))
    engine = make_engine(b.build())
    sub = engine.subscribe()
    policy = RetryPolicy(maximum_attempts=1)
    [x] = engine.assign(
        [
            ActionSpec(
                "flaky",
                ("z",),
                ActionOptions(retry_policy=policy),
                metadata={"hooks": "deny"},
            )
        ]
    )
    last = events_until(sub, finished(x.action.id))[-1]
    assert last.error.kind is ErrorKind.HOOK and last.error.type == "PermissionError"
    assert log == ["before:deny", "failure:deny"]


def test_unknown_hook_names_are_refused_at_assign(make_engine) -> None:
    engine = make_engine(flaky_plan().build())
    with pytest.raises(errors.InvalidArgument) as err:
        engine.assign([ActionSpec("flaky", ("a",), metadata={"hooks": "nope"})])
    assert err.value.violations[0].field == "actions[0].metadata.hooks"


def test_a_plain_handler_past_its_timeout_is_told_and_recorded_timed_out(
    make_engine, clock
) -> None:
    b = PlanBuilder()
    started = threading.Event()
    told = threading.Event()

    @b.action(output=ValueType.STRING)
    def slow(ctx: ExecutionContext) -> str:
        started.set()
        assert ctx.cancellation.wait(WAIT)
        told.set()
        return "finished anyway"

    engine = make_engine(b.build())
    sub = engine.subscribe()
    options = ActionOptions(
        attempt_timeout=timedelta(seconds=5),
        retry_policy=RetryPolicy(maximum_attempts=1),
    )
    [x] = engine.assign([ActionSpec("slow", options=options)])
    assert started.wait(WAIT)
    clock.advance(timedelta(seconds=5))
    last = events_until(sub, finished(x.action.id))[-1]
    assert told.is_set()
    assert last.state is State.FAILED and last.error.kind is ErrorKind.TIMEOUT


def test_a_coroutine_handler_is_cancelled_at_its_timeout(make_engine, clock) -> None:
    b = PlanBuilder()
    started = threading.Event()
    cancelled = threading.Event()

    @b.action(output=ValueType.NONE)
    async def sleeper(ctx: ExecutionContext) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    engine = make_engine(b.build())
    sub = engine.subscribe()
    policy = RetryPolicy(
        maximum_attempts=2, initial_interval=timedelta(seconds=1), jitter=0
    )
    options = ActionOptions(attempt_timeout=timedelta(seconds=2), retry_policy=policy)
    [x] = engine.assign([ActionSpec("sleeper", options=options)])
    assert started.wait(WAIT)
    clock.advance(timedelta(seconds=2))
    retry = events_until(sub, state_is(x.action.id, State.RETRYING))[-1]
    assert cancelled.is_set() and retry.error.kind is ErrorKind.TIMEOUT


def test_a_coroutine_handler_runs_and_returns(make_engine) -> None:
    b = PlanBuilder()

    @b.action(inputs=[ValueType.INT], output=ValueType.INT)
    async def double(ctx: ExecutionContext, n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    engine = make_engine(b.build())
    sub = engine.subscribe()
    [x] = engine.assign([ActionSpec("double", (21,))])
    assert events_until(sub, finished(x.action.id))[-1].result == 42


def test_a_wrong_result_fails_the_attempt_as_invalid_result(make_engine) -> None:
    b = PlanBuilder()

    @b.action(output=ValueType.INT)
    def liar(ctx: ExecutionContext) -> object:
        return True  # a bool is not an int

    engine = make_engine(b.build())
    sub = engine.subscribe()
    [x] = engine.assign(
        [
            ActionSpec(
                "liar",
                options=ActionOptions(retry_policy=RetryPolicy(maximum_attempts=1)),
            )
        ]
    )
    last = events_until(sub, finished(x.action.id))[-1]
    assert last.error.kind is ErrorKind.INVALID_RESULT


def test_cancelling_a_waiting_action_ends_it_at_once(make_engine) -> None:
    engine = make_engine(flaky_plan().build())
    sub = engine.subscribe()
    [x] = engine.assign(
        [ActionSpec("flaky", ("c",), ActionOptions(delay=timedelta(hours=1)))]
    )
    # SCHEDULED is journaled in the insert's own transaction.
    assert x.action.state is State.SCHEDULED
    view = engine.cancel(x.action.id, "changed my mind")
    assert view.state is State.CANCELLED
    events = events_until(sub, finished(x.action.id))
    assert [e.state for e in events] == [
        State.ACCEPTED,
        State.SCHEDULED,
        State.CANCELLED,
    ]
    assert events[-1].error.message == "changed my mind"
    with pytest.raises(errors.FailedPrecondition):
        engine.cancel(x.action.id)
    with pytest.raises(errors.NotFound):
        engine.cancel("no-such-id")


def test_cancelling_a_running_action_goes_through_its_token_and_never_retries(
    make_engine,
) -> None:
    b = PlanBuilder()
    started = threading.Event()

    @b.action(output=ValueType.NONE)
    def patient(ctx: ExecutionContext) -> None:
        started.set()
        assert ctx.cancellation.wait(WAIT)
        raise RuntimeError("stopped")

    engine = make_engine(b.build())
    sub = engine.subscribe()
    [x] = engine.assign(
        [
            ActionSpec(
                "patient",
                options=ActionOptions(retry_policy=RetryPolicy(maximum_attempts=0)),
            )
        ]
    )
    assert started.wait(WAIT)
    engine.cancel(x.action.id, "enough")
    events = events_until(sub, finished(x.action.id))
    assert events[-1].state is State.CANCELLED and events[-1].attempt == 1
    assert State.RETRYING not in [e.state for e in events]


def test_an_assign_answers_with_the_action_as_get_reads_it_back(
    make_engine, clock
) -> None:
    b = PlanBuilder()

    @b.action(inputs=[ValueType.INT, ValueType.ANY, ValueType.BYTES])
    def keep(ctx: ExecutionContext, a: object, b_: object, c: object) -> None:
        return None

    engine = make_engine(b.build())
    spec = ActionSpec(
        "keep",
        args=(1, [2.0, {"$b": "not bytes"}, {"n": None, "t": True}], b"raw"),
        options=ActionOptions(
            delay=timedelta(hours=1),
            priority=0,
            idempotency_key="k",
            next_action=ActionSpec("keep", args=(1, 2, b"3")),
        ),
        metadata={"tenant": "x"},
    )
    [assigned] = engine.assign([spec])

    stored = engine.get(assigned.action.id)
    assert (
        dataclasses.replace(
            stored, state=assigned.action.state, updated_at=assigned.action.updated_at
        )
        == assigned.action
    )
    assert len(assigned.action.id) == 32 and int(assigned.action.id, 16) >= 0
    [again] = engine.assign([spec])
    assert again.duplicate and again.action.id == assigned.action.id
    assert again.action.state is State.SCHEDULED


def test_the_actions_of_one_call_get_distinct_ids(make_engine) -> None:
    b = PlanBuilder()

    @b.action()
    def noop(ctx: ExecutionContext) -> None:
        return None

    engine = make_engine(b.build())
    ids = [
        a.action.id
        for a in engine.assign(
            [ActionSpec("noop", options=ActionOptions(delay=timedelta(hours=1)))] * 500
        )
    ]
    assert len(set(ids)) == 500
