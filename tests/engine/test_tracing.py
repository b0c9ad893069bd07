"""Spans: one trace per action, attempts as children, errors recorded once."""

from __future__ import annotations

import threading
from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from echo_service.engine import (
    ActionOptions,
    ActionSpec,
    ExecutionContext,
    PlanBuilder,
    RetryPolicy,
    State,
    ValueType,
)

from .conftest import WAIT, all_finished, events_until, finished

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}


def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_an_actions_spans_continue_its_trace_and_record_the_error_once(
    make_engine, clock
) -> None:
    provider, exporter = traced()
    b = PlanBuilder()

    @b.action(output=ValueType.INT)
    def once_flaky(ctx: ExecutionContext) -> int:
        if ctx.attempt == 1:
            raise ValueError("first try fails")
        return 1

    engine = make_engine(b.build(), tracer_provider=provider)
    sub = engine.subscribe()
    policy = RetryPolicy(initial_interval=timedelta(seconds=1), jitter=0)
    [a] = engine.assign(
        [
            ActionSpec(
                "once_flaky",
                options=ActionOptions(retry_policy=policy),
                trace_context=PARENT,
            )
        ]
    )
    retry = events_until(sub, lambda e: e.state is State.RETRYING)[-1]
    assert retry.trace_id == TRACE_ID
    clock.advance(retry.retry_delay)
    done = events_until(sub, finished(a.action.id))[-1]
    assert done.state is State.SUCCEEDED and done.trace_id == TRACE_ID

    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    [assign] = by_name["echo.assign once_flaky"]
    [action] = by_name["echo.action once_flaky"]
    attempts = sorted(
        by_name["echo.attempt once_flaky"], key=lambda s: s.attributes["echo.attempt"]
    )
    assert assign.parent.span_id == 0x00F067AA0BA902B7
    assert action.parent.span_id == assign.context.span_id
    assert [s.parent.span_id for s in attempts] == [action.context.span_id] * 2
    assert action.attributes["echo.action.id"] == a.action.id
    failed, ok = attempts
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]  # recorded exactly once
    assert ok.status.status_code is StatusCode.UNSET
    assert [e.name for e in action.events] == ["echo.retry"]
    assert action.status.status_code is StatusCode.UNSET


def test_a_final_failure_ends_the_action_span_with_error_status(make_engine) -> None:
    provider, exporter = traced()
    b = PlanBuilder()

    @b.action(output=ValueType.NONE)
    def broken(ctx: ExecutionContext) -> None:
        raise KeyError("nope")

    engine = make_engine(b.build(), tracer_provider=provider)
    sub = engine.subscribe()
    [a] = engine.assign(
        [
            ActionSpec(
                "broken",
                options=ActionOptions(retry_policy=RetryPolicy(maximum_attempts=1)),
            )
        ]
    )
    events_until(sub, finished(a.action.id))
    engine.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    action = spans["echo.action broken"]
    attempt = spans["echo.attempt broken"]
    assert action.status.status_code is StatusCode.ERROR
    assert not [e for e in action.events if e.name == "exception"]
    assert [e.name for e in attempt.events] == ["exception"]


def test_child_actions_stolen_by_another_worker_stay_in_the_parents_trace(
    make_engine,
) -> None:
    provider, exporter = traced()
    b = PlanBuilder()
    stolen = threading.Event()
    workers: dict[str, int] = {}
    lock = threading.Lock()

    @b.action(inputs=[ValueType.INT], output=ValueType.NONE)
    def child(ctx: ExecutionContext, n: int) -> None:
        with lock:
            workers[ctx.action_id] = threading.get_ident()
        stolen.set()

    @b.action(output=ValueType.NONE)
    def parent(ctx: ExecutionContext) -> None:
        for n in range(6):
            ctx.assign(ActionSpec("child", (n,)))
        # Hold this worker so the children can only run by being stolen.
        assert stolen.wait(WAIT)

    engine = make_engine(b.build(), tracer_provider=provider, workers=2)
    sub = engine.subscribe()
    [p] = engine.assign([ActionSpec("parent", trace_context=PARENT)])
    seen = 0
    while seen < 7:
        e = sub.get(WAIT)
        assert e is not None
        if e.state is State.SUCCEEDED:
            seen += 1
    assert sum(w.stolen for w in engine.stats.workers) >= 1
    engine.close()
    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    child_actions = [s for s in spans if s.name == "echo.action child"]
    assert len(child_actions) == 6
    assert engine.get(next(iter(workers))).parent_id == p.action.id


def test_one_assign_call_makes_one_assign_span_that_all_its_actions_continue(
    make_engine,
) -> None:
    provider, exporter = traced()
    b = PlanBuilder()

    @b.action(output=ValueType.NONE)
    def noop(ctx: ExecutionContext) -> None:
        return None

    engine = make_engine(b.build(), tracer_provider=provider)
    sub = engine.subscribe()
    other = "0af7651916cd43dd8448eb211c80319c"
    specs = [ActionSpec("noop", trace_context=PARENT)] * 5 + [
        ActionSpec(
            "noop", trace_context={"traceparent": f"00-{other}-b7ad6b7169203331-01"}
        )
    ]
    assigned = engine.assign(specs)
    events_until(sub, all_finished(a.action.id for a in assigned))

    spans = exporter.get_finished_spans()
    assigns = [s for s in spans if s.name == "echo.assign noop"]
    assert sorted(s.attributes["echo.action.count"] for s in assigns) == [1, 5]
    actions = [s for s in spans if s.name == "echo.action noop"]
    assert len(actions) == 6
    by_trace = {s.context.trace_id: s.context.span_id for s in assigns}
    for span in actions:
        assert span.parent.span_id == by_trace[span.context.trace_id]
    assert sorted(format(t, "032x") for t in by_trace) == sorted([TRACE_ID, other])
