"""The engine's metrics: a few counters, one histogram, two gauges."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = ["EngineMetrics"]


class EngineMetrics:
    """Instruments named ``echo.actions.*``; a no-op without a meter provider."""

    def __init__(
        self,
        meter_provider: MeterProvider | None,
        *,
        waiting: Callable[[], int],
        in_flight: Callable[[], int],
        stolen: Callable[[], int],
    ) -> None:
        meter = metrics.get_meter("echo_service.engine", meter_provider=meter_provider)
        self._assigned = meter.create_counter(
            "echo.actions.assigned", unit="{action}", description="Actions accepted"
        )
        self._succeeded = meter.create_counter(
            "echo.actions.succeeded", unit="{action}", description="Actions succeeded"
        )
        self._failed = meter.create_counter(
            "echo.actions.failed",
            unit="{action}",
            description="Actions failed for good",
        )
        self._retried = meter.create_counter(
            "echo.actions.retried", unit="{attempt}", description="Attempts retried"
        )
        self._run_time = meter.create_histogram(
            "echo.attempt.duration", unit="s", description="Time one attempt ran"
        )

        def observe(
            read: Callable[[], int],
        ) -> Callable[[CallbackOptions], Iterable[Observation]]:
            return lambda _options: [Observation(read())]

        meter.create_observable_counter(
            "echo.tasks.stolen",
            callbacks=[observe(stolen)],
            unit="{task}",
            description="Executor tasks stolen by idle workers",
        )
        meter.create_observable_gauge(
            "echo.actions.waiting",
            callbacks=[observe(waiting)],
            unit="{action}",
            description="Unfinished actions in the journal",
        )
        meter.create_observable_gauge(
            "echo.actions.in_flight",
            callbacks=[observe(in_flight)],
            unit="{action}",
            description="Actions claimed by this engine and not finished",
        )

    def assigned(self, count: int) -> None:
        self._assigned.add(count)

    def succeeded(self) -> None:
        self._succeeded.add(1)

    def failed(self) -> None:
        self._failed.add(1)

    def retried(self) -> None:
        self._retried.add(1)

    def attempt_done(self, seconds: float) -> None:
        self._run_time.record(seconds)
