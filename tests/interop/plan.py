"""The plan the interop suite serves: small actions whose results each client
can check exactly, whatever its language.

Served as ``--plan tests.interop.plan:plan``.
"""

from __future__ import annotations

from echo_service.engine import ExecutionContext, PlanBuilder, ValueType

__all__ = ["plan"]

plan = PlanBuilder()


@plan.action("Add", inputs=[ValueType.INT, ValueType.INT], output=ValueType.INT)
def add(ctx: ExecutionContext, a: int, b: int) -> int:
    """a + b; fails with OverflowError outside int64 rather than wrapping."""
    total = a + b
    if not -(2**63) <= total < 2**63:
        raise OverflowError(f"{a} + {b} does not fit int64")
    return total


def _echo(name: str, kind: ValueType) -> None:
    def echo(ctx: ExecutionContext, value: object) -> object:
        return value

    plan.action(
        name, inputs=[("value", kind)], output=kind, description="returns its input"
    )(echo)


for _name, _kind in (
    ("EchoString", ValueType.STRING),
    ("EchoInt", ValueType.INT),
    ("EchoDouble", ValueType.DOUBLE),
    ("EchoBool", ValueType.BOOL),
    ("EchoBytes", ValueType.BYTES),
    ("EchoJson", ValueType.JSON),
):
    _echo(_name, _kind)


@plan.action("Sleep", inputs=[ValueType.INT], output=ValueType.NONE)
def sleep(ctx: ExecutionContext, milliseconds: int) -> None:
    """Wait, returning early once cancelled."""
    ctx.cancellation.wait(milliseconds / 1000)


@plan.action("Flaky", inputs=[ValueType.INT], output=ValueType.INT)
def flaky(ctx: ExecutionContext, succeed_on: int) -> int:
    """Fail every attempt before ``succeed_on``; return the attempt that worked."""
    if ctx.attempt < succeed_on:
        raise ConnectionError(f"attempt {ctx.attempt} of {succeed_on} fails")
    return ctx.attempt


@plan.action("AlwaysFail", inputs=[ValueType.STRING], output=ValueType.NONE)
def always_fail(ctx: ExecutionContext, message: str) -> None:
    """Raise ValueError(message) on every attempt."""
    raise ValueError(message)


@plan.action("TraceId", output=ValueType.STRING)
def trace_id(ctx: ExecutionContext) -> str:
    """The trace the action runs in, as 32 hex digits."""
    return ctx.trace_id
