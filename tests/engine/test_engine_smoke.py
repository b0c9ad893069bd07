from __future__ import annotations

from echo_service.engine import ActionSpec, PlanBuilder, State, ValueType

from .conftest import events_until, finished


def test_an_assigned_action_runs_and_succeeds(make_engine) -> None:
    b = PlanBuilder()

    @b.action(inputs=[ValueType.INT, ValueType.INT], output=ValueType.INT)
    def add(ctx, a, b):
        return a + b

    engine = make_engine(b.build())
    sub = engine.subscribe(after=0)
    [assigned] = engine.assign([ActionSpec("add", (2, 3))])
    events = events_until(sub, finished(assigned.action.id))
    assert [e.state for e in events] == [
        State.ACCEPTED,
        State.QUEUED,
        State.RUNNING,
        State.SUCCEEDED,
    ]
    assert events[-1].result == 5 and type(events[-1].result) is int
    assert engine.get(assigned.action.id).result == 5
    sub.close()
