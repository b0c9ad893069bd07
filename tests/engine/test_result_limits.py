"""Results that cannot be delivered fail at once, and texts stay sendable.

A result over the engine's ``max_result_bytes``, or one that does not fit
the output type, is the handler's doing and the same on every attempt: the
action fails after one attempt, whatever its retry policy allows.
"""

from __future__ import annotations

from typing import Any

import pytest

from echo_service.engine import (
    ActionErrorInfo,
    ActionEvent,
    ActionOptions,
    ActionSpec,
    ErrorKind,
    ExecutionContext,
    Hook,
    PackedMessage,
    PlanBuilder,
    RetryPolicy,
    State,
    ValueType,
)

from .conftest import EngineFactory, events_until, finished

LIMIT = 1000
MANY = ActionOptions(retry_policy=RetryPolicy(maximum_attempts=5, jitter=0))


class Recorder(Hook):
    """Remembers which hook ran with which error, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def after_attempt(
        self, ctx: ExecutionContext, result: object, error: ActionErrorInfo | None
    ) -> None:
        self.calls.append(("after", None if error is None else error.type))

    def on_retry(
        self, ctx: ExecutionContext, error: ActionErrorInfo, delay: float
    ) -> None:
        self.calls.append(("retry", error.type))

    def on_failure(self, ctx: ExecutionContext, error: ActionErrorInfo) -> None:
        self.calls.append(("failure", error.type))


def _plan(recorder: Recorder | None = None) -> PlanBuilder:
    b = PlanBuilder()
    if recorder is not None:
        b.global_hooks([recorder])

    @b.action(inputs=[ValueType.STRING], output=ValueType.STRING)
    def text(ctx: ExecutionContext, value: str) -> str:
        return value

    @b.action(inputs=[ValueType.INT], output=ValueType.BYTES)
    def blob(ctx: ExecutionContext, n: int) -> bytes:
        return b"\x00" * n

    @b.action(inputs=[ValueType.STRING], output=ValueType.JSON)
    def document(ctx: ExecutionContext, value: str) -> object:
        return {"v": value}

    @b.action(inputs=[ValueType.INT], output=ValueType.ANY)
    def packed(ctx: ExecutionContext, n: int) -> object:
        return PackedMessage("t/pkg.Thing", b"\x01" * n)

    @b.action(output=ValueType.INT)
    def liar(ctx: ExecutionContext) -> object:
        return "not an int"

    return b


def _run(engine: Any, name: str, *args: object) -> list[ActionEvent]:
    sub = engine.subscribe()
    try:
        [a] = engine.assign([ActionSpec(name, args, MANY)])
        return events_until(sub, finished(a.action.id))
    finally:
        sub.close()


@pytest.mark.parametrize(
    ("name", "arg", "size"),
    [
        ("text", "x" * (LIMIT + 1), LIMIT + 1),
        ("text", "é" * 501, 1002),  # 501 characters, 1002 bytes as UTF-8
        ("blob", LIMIT + 1, LIMIT + 1),
        ("document", "x" * (LIMIT - 7), LIMIT + 1),  # {"v":"..."} adds 8
        ("packed", LIMIT, LIMIT + len("t/pkg.Thing")),
    ],
)
def test_a_result_over_the_limit_fails_at_the_first_attempt(
    make_engine: EngineFactory, name: str, arg: object, size: int
) -> None:
    recorder = Recorder()
    engine = make_engine(_plan(recorder).build(), max_result_bytes=LIMIT)

    events = _run(engine, name, arg)

    last = events[-1]
    assert last.state is State.FAILED
    assert last.attempt == 1
    assert State.RETRYING not in [e.state for e in events]
    assert last.error is not None
    assert last.error.kind is ErrorKind.INVALID_RESULT
    assert last.error.type == "ResultTooLarge"
    assert last.error.non_retryable
    assert f"{size} bytes" in last.error.message
    assert f"limit of {LIMIT} bytes" in last.error.message
    assert recorder.calls == [
        ("after", "ResultTooLarge"),
        ("failure", "ResultTooLarge"),
    ]
    view = engine.get(last.action_id)
    assert view.state is State.FAILED and view.result is None


@pytest.mark.parametrize(
    ("name", "arg", "result"),
    [
        ("text", "x" * LIMIT, "x" * LIMIT),
        ("text", "é" * 500, "é" * 500),
        ("blob", LIMIT, b"\x00" * LIMIT),
        ("document", "x" * (LIMIT - 8), {"v": "x" * (LIMIT - 8)}),
    ],
)
def test_a_result_at_the_limit_succeeds(
    make_engine: EngineFactory, name: str, arg: object, result: object
) -> None:
    engine = make_engine(_plan().build(), max_result_bytes=LIMIT)

    last = _run(engine, name, arg)[-1]

    assert last.state is State.SUCCEEDED, last.error
    assert last.result == result
    assert engine.get(last.action_id).result == result


def test_without_a_limit_any_result_is_taken(make_engine: EngineFactory) -> None:
    engine = make_engine(_plan().build())
    last = _run(engine, "blob", 1 << 20)[-1]
    assert last.state is State.SUCCEEDED


def test_a_result_of_the_wrong_type_fails_at_once_though_retries_remain(
    make_engine: EngineFactory,
) -> None:
    recorder = Recorder()
    engine = make_engine(_plan(recorder).build())

    events = _run(engine, "liar")

    last = events[-1]
    assert [e.state for e in events if e.action_id == last.action_id][-2:] == [
        State.RUNNING,
        State.FAILED,
    ]
    assert last.attempt == 1
    assert last.error is not None
    assert (last.error.type, last.error.kind) == (
        "InvalidResult",
        ErrorKind.INVALID_RESULT,
    )
    assert last.error.non_retryable
    assert "expected an integer, got str" in last.error.message
    assert ("retry", "InvalidResult") not in recorder.calls


def test_a_negative_result_limit_is_refused(make_engine: EngineFactory) -> None:
    with pytest.raises(ValueError, match="max_result_bytes"):
        make_engine(_plan().build(), max_result_bytes=-1, start=False)


def test_huge_error_and_progress_texts_are_cut_to_a_sendable_size(
    make_engine: EngineFactory,
) -> None:
    b = PlanBuilder()

    @b.action(output=ValueType.NONE)
    def loud(ctx: ExecutionContext) -> None:
        ctx.progress(0.5, "p" * (1 << 20))
        raise ValueError("m" * (1 << 20))

    engine = make_engine(b.build())
    sub = engine.subscribe()
    policy = ActionOptions(retry_policy=RetryPolicy(maximum_attempts=1))
    [a] = engine.assign([ActionSpec("loud", options=policy)])
    events = events_until(sub, finished(a.action.id))
    sub.close()

    [progress] = [e.progress for e in events if e.state is State.PROGRESS]
    assert progress is not None
    assert progress.message.startswith("p" * 1000)
    assert len(progress.message) < 20_000
    assert progress.message.endswith("more characters)")
    last = events[-1]
    assert last.error is not None
    assert last.error.type == "ValueError"
    assert last.error.message.startswith("m" * 1000)
    assert len(last.error.message) < 20_000
    assert len(last.error.details) < 20_000
    assert f"({(1 << 20) - 16 * 1024} more characters)" in last.error.message
