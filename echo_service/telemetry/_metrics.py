"""The metrics Echo exports, under one stable name each.

The engine measures with its own instruments (``echo_service.engine``, names
``echo.actions.*``); this module decides what they are called outside the
process. Views rename each one to the name operators and dashboards use, the
same for Prometheus and for OTLP, and give the run-time histogram buckets in
seconds instead of the SDK's default millisecond-sized ones. Renaming here,
rather than in a second facade the engine would call, keeps one measurement
per fact: nothing is counted twice and nothing can drift between two copies.

A test starts a real engine and scrapes the Prometheus endpoint for every
name in ``INSTRUMENTS``, so a renamed engine instrument fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

__all__ = [
    "DURATION_BUCKETS",
    "INSTRUMENTS",
    "RPC_DURATION",
    "ExportedInstrument",
    "metric_views",
]

#: Bucket bounds in seconds for run and RPC durations: from a millisecond to
#: ten minutes, dense below one second where most actions and calls end.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

ENGINE_METER = "echo_service.engine"


@dataclass(frozen=True, slots=True)
class ExportedInstrument:
    """One exported metric: its name, kind and meaning, and where it comes from."""

    name: str
    kind: str
    description: str
    source: str
    meter: str = ENGINE_METER


INSTRUMENTS: tuple[ExportedInstrument, ...] = (
    ExportedInstrument(
        "echo_assigns_total",
        "counter",
        "Actions accepted and journaled (an idempotent repeat is not counted).",
        "echo.actions.assigned",
    ),
    ExportedInstrument(
        "echo_queue_depth",
        "gauge",
        "Unfinished actions in the journal: waiting, scheduled or retrying.",
        "echo.actions.waiting",
    ),
    ExportedInstrument(
        "echo_in_flight",
        "gauge",
        "Actions claimed by this process and not finished.",
        "echo.actions.in_flight",
    ),
    ExportedInstrument(
        "echo_run_seconds",
        "histogram",
        "Time one attempt of an action ran, in seconds.",
        "echo.attempt.duration",
    ),
    ExportedInstrument(
        "echo_retries_total",
        "counter",
        "Attempts that failed and were scheduled to run again.",
        "echo.actions.retried",
    ),
    ExportedInstrument(
        "echo_failures_total",
        "counter",
        "Actions that failed for good (retries exhausted, non-retryable, "
        "deadline); cancellations are not failures.",
        "echo.actions.failed",
    ),
    ExportedInstrument(
        "echo_successes_total",
        "counter",
        "Actions that succeeded.",
        "echo.actions.succeeded",
    ),
    ExportedInstrument(
        "echo_steals_total",
        "counter",
        "Executor tasks an idle worker stole from another worker's deque.",
        "echo.tasks.stolen",
    ),
)

#: Recorded by ``RpcTelemetryInterceptor``; labelled by service, method and
#: status code, so it also counts calls and errors per RPC.
RPC_DURATION = ExportedInstrument(
    "echo_rpc_seconds",
    "histogram",
    "Time from a call's arrival to its status, in seconds; a stream's whole life.",
    "echo_rpc_seconds",
    meter="echo_service.telemetry",
)


def metric_views() -> list[View]:
    """Views that give every instrument in ``INSTRUMENTS`` its exported name."""
    views: list[View] = []
    for instrument in (*INSTRUMENTS, RPC_DURATION):
        aggregation = (
            ExplicitBucketHistogramAggregation(boundaries=DURATION_BUCKETS)
            if instrument.kind == "histogram"
            else None
        )
        views.append(
            View(
                instrument_name=instrument.source,
                meter_name=instrument.meter,
                name=instrument.name,
                description=instrument.description,
                aggregation=aggregation,
            )
        )
    return views
