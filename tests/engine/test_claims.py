"""Claims: what the feeder takes, what a cancel or drain does meanwhile, and
children that no other claimer may take."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from echo_service.engine import (
    ActionOptions,
    ActionSpec,
    Engine,
    ExecutionContext,
    ManualClock,
    PlanBuilder,
    State,
    ValueType,
)
from echo_service.store import ActionRecord, MemoryStore, Store

from .conftest import WAIT, events_until, finished


class HeldClaim:
    """A store whose first non-empty claim, once taken, waits for ``go``.

    It holds the feeder between the journal's claim and what the engine does
    with the claimed records: the window a cancel or a drain may fall into.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.claimed = threading.Event()
        self.go = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def claim(self, **kwargs: Any) -> list[ActionRecord]:
        records: list[ActionRecord] = self._store.claim(**kwargs)
        if records and not self.claimed.is_set():
            self.claimed.set()
            assert self.go.wait(WAIT)
        return records


def recording_plan():
    b = PlanBuilder()
    ran: list[object] = []

    @b.action(inputs=[ValueType.ANY], output=ValueType.ANY)
    def note(ctx: ExecutionContext, value: object) -> object:
        ran.append(value)
        return value

    return b.build(), ran


def _due_soon(value: str) -> ActionSpec:
    """Waits in the journal until the clock moves: the feeder claims it
    (an action due at once may be claimed by its own insert instead)."""
    return ActionSpec("note", (value,), options=ActionOptions(delay=_SOON))


_SOON = timedelta(seconds=1)


def test_a_cancel_during_a_claim_is_not_held_up_and_the_action_never_runs(
    make_engine, store: Store, clock: ManualClock
) -> None:
    held = HeldClaim(store)
    plan, ran = recording_plan()
    engine = make_engine(plan, on=held, workers=1)
    sub = engine.subscribe()
    [victim] = engine.assign([_due_soon("victim")])
    clock.advance(_SOON)
    assert held.claimed.wait(WAIT)

    cancelled: list[object] = []
    canceller = threading.Thread(
        target=lambda: cancelled.append(engine.cancel(victim.action.id, "no"))
    )
    canceller.start()
    canceller.join(WAIT)
    stuck = canceller.is_alive()
    held.go.set()
    canceller.join()
    assert not stuck, "cancel waited for the feeder's claim"

    [after] = engine.assign([ActionSpec("note", ("after",))])
    events_until(sub, finished(after.action.id))
    # One worker, and the victim was claimed first: had it been queued, it
    # would have run before "after".
    assert ran == ["after"]
    states = [
        e.state
        for e in store.events_after(0, limit=100)
        if e.action_id == victim.action.id
    ]
    # The claim journals QUEUED with it; the cancel came after the claim.
    assert states == [State.ACCEPTED, State.SCHEDULED, State.QUEUED, State.CANCELLED]
    assert engine.stats.in_flight == 0


def test_a_drain_during_a_claim_gives_the_claimed_actions_back(
    store: Store, clock: ManualClock
) -> None:
    held = HeldClaim(store)
    plan, ran = recording_plan()
    engine = Engine(plan, held, clock=clock, workers=1)
    engine.start()
    try:
        [waiting] = engine.assign([_due_soon("later")])
        clock.advance(_SOON)
        assert held.claimed.wait(WAIT)
        report = engine.drain(timedelta(0))
        held.go.set()
    finally:
        held.go.set()
        engine.close()
    assert (report.finished, report.interrupted) == (0, 0)
    record = store.get(waiting.action.id)
    assert record is not None
    # Given back: unclaimed, as QUEUED as its claim journaled it.
    assert (record.state, record.owner) == (State.QUEUED, None)
    assert ran == []

    successor = Engine(plan, store, clock=clock, workers=1)
    sub = successor.subscribe(after=0)
    successor.start()
    try:
        done = events_until(sub, finished(waiting.action.id))[-1]
    finally:
        successor.close()
    assert done.state is State.SUCCEEDED and ran == ["later"]


def test_children_run_once_though_another_engine_claims_from_the_same_journal(
    clock: ManualClock,
) -> None:
    b = PlanBuilder()
    gate, made = threading.Event(), threading.Event()
    runs: list[tuple[str, str]] = []
    lock = threading.Lock()

    @b.action(inputs=[ValueType.STRING], output=ValueType.STRING)
    def child(ctx: ExecutionContext, tag: str) -> str:
        with lock:
            runs.append((tag, str(ctx.config["engine"])))
        return tag

    @b.action(output=ValueType.NONE)
    def parent(ctx: ExecutionContext) -> None:
        for i in range(3):
            ctx.assign(ActionSpec("child", (f"c{i}",)))
        made.set()
        assert gate.wait(WAIT)  # the children wait in this worker's deque

    plan = b.build()
    journal = MemoryStore(clock=clock.now)
    first = Engine(plan, journal, clock=clock, workers=1, config={"engine": "first"})
    second = Engine(plan, journal, clock=clock, workers=1, config={"engine": "second"})
    try:
        first.start()
        second.start()
        sub = first.subscribe()
        first.assign([ActionSpec("parent")])
        assert made.wait(WAIT)
        # The second engine's feeder claims everything due: had the children
        # been claimable, they would be in this claim.
        [poke] = second.assign([ActionSpec("child", ("poke",))])
        seen = events_until(sub, finished(poke.action.id))
        gate.set()
        succeeded = {e.action_id for e in seen if e.state is State.SUCCEEDED}
        while len(succeeded) < 5:  # parent, three children, poke
            event = sub.get(WAIT)
            assert event is not None
            if event.state is State.SUCCEEDED:
                succeeded.add(event.action_id)
    finally:
        gate.set()
        first.close()
        second.close()
        journal.close()
    assert sorted(runs) == [
        ("c0", "first"),
        ("c1", "first"),
        ("c2", "first"),
        ("poke", "second"),
    ]
