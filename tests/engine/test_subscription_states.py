"""A state filter: a listener that waits for results sees only final events,
live and replayed alike."""

from __future__ import annotations

from echo_service.engine import ActionEvent, ActionSpec, PlanBuilder, ValueType
from echo_service.store import State

from .conftest import WAIT, EngineFactory

_FINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})


def _plan():  # type: ignore[no-untyped-def]
    b = PlanBuilder()

    @b.action(inputs=[ValueType.INT], output=ValueType.INT)
    def double(ctx, x):  # type: ignore[no-untyped-def]
        return 2 * x

    return b.build()


def _read(sub, count: int) -> list[ActionEvent]:  # type: ignore[no-untyped-def]
    events = []
    for _ in range(count):
        event = sub.get(WAIT)
        assert event is not None, f"only {events}"
        events.append(event)
    return events


def test_a_live_subscription_for_final_states_gets_one_event_per_action(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(_plan())
    sub = engine.subscribe(states=_FINAL)
    assigned = engine.assign([ActionSpec("double", (i,)) for i in range(5)])
    events = _read(sub, 5)
    assert {e.action_id for e in events} == {a.action.id for a in assigned}
    assert {e.state for e in events} == {State.SUCCEEDED}
    assert sorted(e.result for e in events) == [0, 2, 4, 6, 8]  # type: ignore[type-var]
    assert sub.get(0) is None
    sub.close()


def test_a_replay_with_a_state_filter_skips_the_other_states_and_goes_live(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(_plan())
    watch = engine.subscribe()
    [first] = engine.assign([ActionSpec("double", (1,))])
    while not (event := watch.get(WAIT)) or not event.state.finished:
        assert event is not None
    watch.close()

    sub = engine.subscribe(after=0, states=frozenset({State.RUNNING}))
    [running] = _read(sub, 1)
    assert (running.action_id, running.state) == (first.action.id, State.RUNNING)
    [second] = engine.assign([ActionSpec("double", (2,))])
    [live] = _read(sub, 1)
    assert (live.action_id, live.state) == (second.action.id, State.RUNNING)
    sub.close()
