"""Assign rules, subscriptions, bounded memory, drain, close and recovery."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from echo_service import errors
from echo_service.engine import (
    ActionOptions,
    ActionSpec,
    Engine,
    ExecutionContext,
    PackedMessage,
    PlanBuilder,
    RetryPolicy,
    State,
    ValueType,
)

from .conftest import WAIT, all_finished, events_until, finished, open_sqlite


def gate_plan():
    """``wait(key)`` blocks until its gate opens; ``echo(x)`` returns x."""
    b = PlanBuilder()
    gate = threading.Event()
    started = threading.Semaphore(0)

    @b.action(inputs=[ValueType.STRING], output=ValueType.STRING)
    def wait(ctx: ExecutionContext, key: str) -> str:
        started.release()
        assert gate.wait(WAIT)
        return key

    @b.action(inputs=[ValueType.ANY], output=ValueType.ANY)
    def echo(ctx: ExecutionContext, value: object) -> object:
        ctx.progress(0.5, "half way")
        return value

    return b.build(), gate, started


def test_bad_specs_are_refused_with_field_paths_and_nothing_is_journaled(
    make_engine, store
) -> None:
    plan, _, _ = gate_plan()
    engine = make_engine(plan)
    specs = [
        ActionSpec("echo", (1,)),
        ActionSpec("nope"),
        ActionSpec("wait", (1,)),
        ActionSpec(
            "echo",
            (1,),
            ActionOptions(delay=timedelta(seconds=1), not_before=datetime.now(UTC)),
        ),
        ActionSpec("echo", (1,), ActionOptions(attempt_timeout=timedelta(0))),
        ActionSpec("echo", (1,), ActionOptions(retry_policy=RetryPolicy(jitter=2))),
        ActionSpec("echo", (1,), ActionOptions(next_action=ActionSpec("wait", ()))),
    ]
    with pytest.raises(errors.InvalidArgument) as err:
        engine.assign(specs)
    assert [v.field for v in err.value.violations] == [
        "actions[1].name",
        "actions[2].args[0]",
        "actions[3].options.not_before",
        "actions[4].options.attempt_timeout",
        "actions[5].options.retry_policy.jitter",
        "actions[6].options.next_action.args",
    ]
    assert store.waiting() == 0


def test_values_round_trip_with_integers_kept_integers(make_engine) -> None:
    plan, _, _ = gate_plan()
    engine = make_engine(plan)
    sub = engine.subscribe()
    value = {"n": 1, "big": 2**62, "f": 1.0, "list": [1, 2.0], "$tag": {"$b": "x"}}
    [a] = engine.assign([ActionSpec("echo", (value,))])
    events = events_until(sub, finished(a.action.id))
    progress = [e.progress for e in events if e.state is State.PROGRESS]
    assert (
        progress and progress[0].fraction == 0.5 and progress[0].message == "half way"
    )
    result = events[-1].result
    assert result == value
    assert type(result["n"]) is int and type(result["f"]) is float
    assert [type(x) for x in result["list"]] == [int, float]
    assert engine.get(a.action.id).args == (value,)
    for other in (b"\x00\xff", PackedMessage("type.googleapis.com/x.Y", b"\x01"), 7):
        [o] = engine.assign([ActionSpec("echo", (other,))])
        got = events_until(sub, finished(o.action.id))[-1].result
        assert got == other and type(got) is type(other)


def test_an_idempotency_key_returns_the_first_action_as_a_duplicate(
    make_engine,
) -> None:
    plan, _, _ = gate_plan()
    engine = make_engine(plan)
    options = ActionOptions(idempotency_key="once", delay=timedelta(hours=1))
    [first] = engine.assign([ActionSpec("echo", (1,), options)])
    [again] = engine.assign([ActionSpec("echo", (2,), options)])
    assert not first.duplicate and again.duplicate
    assert again.action.id == first.action.id and again.action.args == (1,)


def test_assign_past_max_waiting_is_queue_full_with_a_retry_hint(make_engine) -> None:
    plan, _, _ = gate_plan()
    engine = make_engine(plan, max_waiting=2)
    later = ActionOptions(delay=timedelta(hours=1))
    engine.assign([ActionSpec("echo", (1,), later), ActionSpec("echo", (2,), later)])
    with pytest.raises(errors.QueueFull) as err:
        engine.assign([ActionSpec("echo", (3,), later)])
    assert err.value.retry_after > timedelta(0)


def test_a_delayed_action_waits_in_the_journal_until_due(
    make_engine, clock, store
) -> None:
    plan, _, _ = gate_plan()
    engine = make_engine(plan)
    sub = engine.subscribe()
    [a] = engine.assign(
        [ActionSpec("echo", ("later",), ActionOptions(delay=timedelta(0)))]
    )
    assert events_until(sub, finished(a.action.id))[-1].result == "later"  # zero is now
    [b] = engine.assign(
        [ActionSpec("echo", ("later",), ActionOptions(delay=timedelta(minutes=1)))]
    )
    events_until(sub, lambda e: e.state is State.SCHEDULED)
    assert (
        engine.stats.in_flight == 0 and store.get(b.action.id).state is State.SCHEDULED
    )
    clock.advance(timedelta(minutes=1))
    assert events_until(sub, finished(b.action.id))[-1].state is State.SUCCEEDED


def test_the_feeder_keeps_only_a_few_batches_in_memory(make_engine, store) -> None:
    plan, gate, started = gate_plan()
    engine = make_engine(plan, workers=2, batch=4)
    engine.assign([ActionSpec("wait", (str(i),)) for i in range(100)])
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    sub = engine.subscribe(after=0)
    queued = 0
    # Every claim journals QUEUED; read them all as they stand now.
    while (e := sub.get(0.2)) is not None:
        queued += e.state is State.QUEUED
    assert queued == engine.stats.in_flight == 8  # two batches of four
    assert store.waiting() == 100
    gate.set()
    done = 0
    while done < 100:
        e = sub.get(WAIT)
        assert e is not None
        done += e.state is State.SUCCEEDED
    sub.close()


def test_subscribe_after_replays_then_goes_live_without_gap_or_duplicate(
    make_engine,
) -> None:
    plan, _, _ = gate_plan()
    engine = make_engine(plan)
    live = engine.subscribe()
    first = engine.assign([ActionSpec("echo", (i,)) for i in range(5)])
    events_until(live, all_finished(a.action.id for a in first))
    midpoint = 3
    small = engine.subscribe(after=midpoint, buffer=2)  # overflows while replaying
    sub = engine.subscribe(after=midpoint)
    more = engine.assign([ActionSpec("echo", (i,)) for i in range(5, 10)])
    last_id = more[-1].action.id
    seqs = [e.sequence for e in events_until(sub, finished(last_id))]
    assert seqs == list(range(midpoint + 1, seqs[-1] + 1))
    # The small one, read only now, replays everything from the journal.
    small_seqs = [e.sequence for e in events_until(small, finished(last_id))]
    assert small_seqs == seqs


def test_a_live_listener_that_falls_behind_gets_slow_consumer(make_engine) -> None:
    plan, _, _ = gate_plan()
    engine = make_engine(plan)
    sub = engine.subscribe(buffer=2)
    watcher = engine.subscribe()
    [a] = engine.assign([ActionSpec("echo", (1,))])
    events_until(watcher, finished(a.action.id))
    assert sub.get(WAIT) is not None and sub.get(WAIT) is not None
    with pytest.raises(errors.SlowConsumer) as err:
        sub.get(WAIT)
    assert err.value.last_sequence == 2


def test_children_and_next_actions_are_journaled_with_their_parent(make_engine) -> None:
    b = PlanBuilder()
    made: list[str] = []

    @b.action(output=ValueType.NONE)
    def leaf(ctx: ExecutionContext) -> None:
        return None

    @b.action(output=ValueType.NONE)
    def root(ctx: ExecutionContext) -> None:
        made.append(ctx.assign(ActionSpec("leaf")))

    engine = make_engine(b.build())
    sub = engine.subscribe()
    [r] = engine.assign(
        [ActionSpec("root", options=ActionOptions(next_action=ActionSpec("leaf")))]
    )
    ids: set[str] = set()
    while len(ids) < 3:
        e = sub.get(WAIT)
        assert e is not None
        if e.state is State.SUCCEEDED:
            ids.add(e.action_id)
    others = ids - {r.action.id}
    assert made[0] in others
    assert {engine.get(i).parent_id for i in others} == {r.action.id}


def test_drain_refuses_assigns_lets_running_work_finish_and_close_flushes(
    make_engine,
) -> None:
    plan, gate, started = gate_plan()
    engine = make_engine(plan)
    sub = engine.subscribe()
    [a] = engine.assign([ActionSpec("wait", ("x",))])
    assert started.acquire(timeout=WAIT)
    result: list[object] = []
    drainer = threading.Thread(
        target=lambda: result.append(engine.drain(timedelta(hours=1)))
    )
    drainer.start()
    # drain turns assigns away at once
    deadline = threading.Event()
    for _ in range(1000):
        try:
            engine.assign([ActionSpec("echo", (1,))])
        except errors.Unavailable as exc:
            assert exc.retry_after is not None
            break
        deadline.wait(0.001)
    else:
        pytest.fail("assign was not refused while draining")
    gate.set()
    drainer.join(WAIT)
    assert result[0].finished == 1 and result[0].interrupted == 0
    engine.close()
    assert engine.get(a.action.id).state is State.SUCCEEDED
    with pytest.raises(errors.Unavailable):
        while True:
            sub.get(WAIT)


def test_restart_reruns_unfinished_actions_and_keeps_their_attempt_counts(
    sqlite_path, clock
) -> None:
    b = PlanBuilder()
    started = threading.Event()
    runs: list[int] = []

    @b.action(output=ValueType.INT)
    def job(ctx: ExecutionContext) -> int:
        runs.append(ctx.attempt)
        started.set()
        if len(runs) == 1:
            ctx.cancellation.wait(WAIT)  # the first process stops mid-attempt
            raise RuntimeError("interrupted")
        return ctx.attempt

    plan = b.build()
    store = open_sqlite(sqlite_path, clock)
    engine = Engine(plan, store, clock=clock, workers=2)
    engine.start()
    [a] = engine.assign([ActionSpec("job")])
    [later] = engine.assign(
        [ActionSpec("job", options=ActionOptions(delay=timedelta(minutes=5)))]
    )
    assert started.wait(WAIT)
    report = engine.drain(timedelta(0))
    assert report.interrupted == 1 and report.abandoned == 0
    engine.close()
    store.close()

    store = open_sqlite(sqlite_path, clock)
    engine = Engine(plan, store, clock=clock, workers=2)
    sub = engine.subscribe(after=store.last_sequence())
    engine.start()
    try:
        done = events_until(sub, finished(a.action.id))[-1]
        assert done.state is State.SUCCEEDED and done.attempt == 2 and done.result == 2
        assert store.get(later.action.id).state is State.SCHEDULED
        clock.advance(timedelta(minutes=5))
        assert events_until(sub, finished(later.action.id))[-1].state is State.SUCCEEDED
    finally:
        engine.close()
        store.close()
    assert runs == [1, 2, 1]
