"""Fresh actions due now are claimed by their own insert when there is room,
and run without waiting for the feeder; they never overtake waiting work."""

from __future__ import annotations

import threading
from datetime import timedelta

from echo_service.engine import (
    ActionOptions,
    ActionSpec,
    ExecutionContext,
    PlanBuilder,
    State,
    ValueType,
)
from echo_service.store import Store

from .conftest import WAIT, all_finished, events_until, finished, state_is


def gated_plan():
    """``note(i)`` records ``i``; ``note(0)`` first waits for ``gate``."""
    b = PlanBuilder()
    ran: list[int] = []
    gate = threading.Event()

    @b.action(inputs=[ValueType.INT], output=ValueType.NONE)
    def note(ctx: ExecutionContext, i: int) -> None:
        if i == 0:
            assert gate.wait(WAIT)
        ran.append(i)

    return b.build(), ran, gate


def test_an_action_assigned_to_an_idle_engine_is_queued_by_its_own_insert(
    make_engine, store: Store
) -> None:
    plan, ran, gate = gated_plan()
    gate.set()
    engine = make_engine(plan)
    sub = engine.subscribe()
    commits = getattr(store, "commits", 0)

    [a] = engine.assign([ActionSpec("note", (1,))])

    assert a.action.state is State.QUEUED
    events = events_until(sub, finished(a.action.id))
    assert [e.state for e in events] == [
        State.ACCEPTED,
        State.QUEUED,
        State.RUNNING,
        State.SUCCEEDED,
    ]
    assert events[0].sequence + 3 == events[-1].sequence
    # No claim of the feeder's: the insert and the attempt's writes only.
    assert getattr(store, "commits", 0) - commits <= 3
    assert ran == [1]


def test_fresh_work_never_overtakes_due_actions_that_wait_unclaimed(
    make_engine,
) -> None:
    plan, ran, gate = gated_plan()
    engine = make_engine(plan, workers=1, batch=16)  # 32 in flight at most
    sub = engine.subscribe()
    first = [engine.assign([ActionSpec("note", (i,))])[0] for i in range(40)]
    assert all(a.action.state is State.QUEUED for a in first[:32])
    assert all(a.action.state is State.ACCEPTED for a in first[32:])
    # Room in flight again, while 32..39 still wait in the journal.
    for a in first[1:6]:
        engine.cancel(a.action.id, "make room")

    [late] = engine.assign([ActionSpec("note", (40,))])

    assert late.action.state is State.ACCEPTED, "claimed ahead of waiting work"
    gate.set()
    events_until(sub, finished(late.action.id))
    assert ran == [0, *range(6, 41)]


def test_a_long_attempt_shows_running_while_it_runs(make_engine) -> None:
    b = PlanBuilder()
    release = threading.Event()

    @b.action(output=ValueType.NONE)
    def slow(ctx: ExecutionContext) -> None:
        assert release.wait(WAIT)

    engine = make_engine(b.build())
    sub = engine.subscribe()
    [a] = engine.assign([ActionSpec("slow")])
    try:
        # The RUNNING write lingers for the outcome only a little while.
        events_until(sub, state_is(a.action.id, State.RUNNING))
    finally:
        release.set()
    events_until(sub, finished(a.action.id))


def test_an_async_assign_runs_though_its_caller_never_asks_for_the_answer(
    make_engine,
) -> None:
    plan, ran, gate = gated_plan()
    gate.set()
    engine = make_engine(plan)
    sub = engine.subscribe()

    pending = engine.begin_assign([ActionSpec("note", (i,)) for i in (1, 2)])
    future = engine.submit_assign(pending)
    assert future is not None
    inserted = future.result(timeout=WAIT)

    events_until(sub, all_finished(i.record.id for i in inserted))
    assert sorted(ran) == [1, 2]
    assert engine.stats.in_flight == 0


def test_an_async_assign_cancelled_before_the_journal_took_it_leaves_nothing(
    make_engine, store: Store
) -> None:
    plan, ran, gate = gated_plan()
    gate.set()
    engine = make_engine(plan)
    sub = engine.subscribe()
    inside, release = threading.Event(), threading.Event()
    held = [True]

    def hold(events: object) -> None:
        if held[0]:
            held[0] = False
            inside.set()
            assert release.wait(WAIT)

    store.add_listener(hold)
    engine.assign([ActionSpec("note", (1,), options=_later())])
    assert inside.wait(WAIT)
    pending = engine.begin_assign([ActionSpec("note", (2,))])
    future = engine.submit_assign(pending)
    assert future is not None and future.cancel()
    release.set()
    store.flush()

    assert store.get(pending.ids[0]) is None
    [after] = engine.assign([ActionSpec("note", (3,))])
    assert after.action.state is State.QUEUED  # its place in flight is free
    events_until(sub, finished(after.action.id))
    assert ran == [3]


def _later() -> ActionOptions:
    return ActionOptions(delay=timedelta(hours=1))
