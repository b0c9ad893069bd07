"""The plan the benchmarks serve: one action that does nothing.

The baselines (Celery, Dramatiq, raw grpcio) run the same nothing, so every
difference measured is the machinery around the work, never the work.
"""

from __future__ import annotations

from echo_service.engine import ExecutionContext, PlanBuilder

__all__ = ["plan"]

_builder = PlanBuilder()


@_builder.action("Noop", description="Does nothing; measures the machinery.")
def _noop(ctx: ExecutionContext) -> None:
    return None


plan = _builder.build()
