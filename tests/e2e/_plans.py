"""A user plan the end-to-end tests load with ``--plan tests.e2e._plans:plan``."""

from __future__ import annotations

from pathlib import Path

from echo_service.engine import ExecutionContext, PlanBuilder, ValueType

plan = PlanBuilder()


@plan.action("Gate", inputs=[("path", ValueType.STRING)], output=ValueType.STRING)
def gate(ctx: ExecutionContext, path: str) -> str:
    """Write ``path``.started, then wait until ``path`` exists."""
    Path(f"{path}.started").touch()
    while not Path(path).exists():
        if ctx.cancellation.wait(0.02):
            raise InterruptedError(ctx.cancellation.reason)
    return path


@plan.action("Add", inputs=[ValueType.INT, ValueType.INT], output=ValueType.INT)
def add(ctx: ExecutionContext, a: int, b: int) -> int:
    return a + b
