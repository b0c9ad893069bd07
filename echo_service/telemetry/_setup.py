"""Tracing and metrics providers, configured the way every OTel SDK is.

The standard ``OTEL_*`` variables decide what leaves the process. Nothing is
exported unless they ask for it, yet a tracer provider always exists: spans
still get trace ids, which Echo writes into every action event and log line,
and which the client's trace continues through.

Variables read here (the exporters read their own ``OTEL_EXPORTER_OTLP_*``
settings, such as headers, certificate, timeout and compression):

- ``OTEL_SERVICE_NAME``: the service name; default ``echo-service``.
- ``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` (to stderr) or ``none``;
  unset means ``otlp`` when an OTLP endpoint is set, nothing otherwise.
- ``OTEL_METRICS_EXPORTER``: the same for metrics. ``prometheus`` is
  accepted, but the Prometheus endpoint is switched on by ``metrics_port``.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the per-signal
  ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT``.
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (and per signal): only ``grpc`` is
  installed; anything else is refused at start rather than silently ignored.
- ``OTEL_TRACES_SAMPLER`` and ``OTEL_BSP_*``: read by the SDK itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from importlib import metadata

import prometheus_client
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler

from echo_service.telemetry._metrics import metric_views
from echo_service.telemetry._prometheus import MetricsServer

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "Telemetry",
    "TelemetryConfigError",
    "setup_telemetry",
]

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "echo-service"

# How long a flush stuck past its limit gets to notice its exporter closed.
_UNSTICK = timedelta(milliseconds=500)


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` variable asks for something this build cannot do.

    Raised at start, so a misspelt exporter is a failed start, not a silent
    lack of traces. Bad configuration, not an RPC error: it never crosses the
    wire and so has no place in ``echo_service.errors``.
    """


_TRACE_EXPORTERS = ("otlp", "console")
_METRIC_EXPORTERS = ("otlp", "prometheus", "console")


def _selected(signal: str, supported: tuple[str, ...]) -> tuple[str, ...]:
    """The exporters ``OTEL_<signal>_EXPORTER`` asks for, checked, ``none`` out.

    Everything is checked before anything is built, so a bad setting fails
    the start without leaving exporter threads behind.
    """
    variable = f"OTEL_{signal}_EXPORTER"
    raw = os.environ.get(variable, "").strip()
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    if raw:
        names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    elif any(os.environ.get(endpoint, "").strip() for endpoint in endpoints):
        names = ["otlp"]
    else:
        names = []
    names = [name for name in dict.fromkeys(names) if name != "none"]
    for name in names:
        if name not in supported:
            raise TelemetryConfigError(
                f"{variable} names {name!r}; Echo supports {', '.join(supported)} "
                "and none"
            )
    if "otlp" in names:
        _check_protocol(signal)
    return tuple(names)


def _check_protocol(signal: str) -> None:
    for variable in (
        f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        protocol = os.environ.get(variable, "").strip().lower()
        if protocol:
            if protocol != "grpc":
                raise TelemetryConfigError(
                    f"{variable}={protocol} is not supported: Echo ships the OTLP "
                    "exporter over gRPC only; set it to grpc or unset it"
                )
            return


def _span_exporter(name: str) -> SpanExporter:
    if name == "otlp":
        return OTLPSpanExporter()
    return ConsoleSpanExporter(out=sys.stderr)


def _metric_reader(name: str) -> MetricReader:
    if name == "otlp":
        return PeriodicExportingMetricReader(OTLPMetricExporter())
    return PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr))


def _resource(service_name: str | None) -> Resource:
    """The SDK's resource from the environment, with Echo's defaults under it."""
    resource = Resource.create({})  # reads OTEL_RESOURCE_ATTRIBUTES, _SERVICE_NAME
    extra: dict[str, str] = {}
    if service_name:
        extra[SERVICE_NAME] = service_name
    elif str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        extra[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    if SERVICE_VERSION not in resource.attributes:
        # A bare source tree without installed metadata has no version.
        with contextlib.suppress(metadata.PackageNotFoundError):
            extra[SERVICE_VERSION] = metadata.version("echo-service")
    return resource.merge(Resource(extra))


class Telemetry:
    """The process's tracer and meter providers, and the metrics endpoint.

    Owned by the CLI's ``serve``: created before the server, shut down last,
    after the gRPC server stopped, so the drain's own spans are exported.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        batch_processors: Sequence[BatchSpanProcessor],
        trace_exporters: Sequence[str] = (),
        metric_exporters: Sequence[str] = (),
        metrics_server: MetricsServer | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._batch_processors = tuple(batch_processors)
        #: What leaves the process, by ``OTEL_*_EXPORTER`` name ("otlp", ...);
        #: the Prometheus endpoint and exporters passed in are not listed.
        self.trace_exporters = tuple(trace_exporters)
        self.metric_exporters = tuple(metric_exporters)
        self._metrics_server = metrics_server
        self._lock = threading.Lock()  # guards _closed
        self._closed = False

    @property
    def metrics_port(self) -> int | None:
        """The port ``/metrics`` is served on, or ``None`` when it is off."""
        if self._metrics_server is None:
            return None
        return self._metrics_server.port

    def shutdown(self, timeout: timedelta = timedelta(seconds=5)) -> bool:
        """Flush spans and metrics, then stop, within ``timeout`` in all.

        Returns False when the limit cut a flush short: the data not sent by
        then is dropped, because a stuck collector must never hold up a stop.
        Idempotent.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        deadline = time.monotonic() + max(timeout.total_seconds(), 0.0)

        def left_ms() -> int:
            return max(int((deadline - time.monotonic()) * 1000), 0)

        # The SDK's span processors take no time limit (their worker join
        # defaults to 30s), so each flush runs on a helper thread joined with
        # the time left. A flush still stuck then has its exporter shut down,
        # which closes the channel and ends the retry loop, so the helper ends
        # too; it is a daemon all the same, so a stop is never held up.
        for processor in self._batch_processors:
            helper = threading.Thread(
                target=processor.shutdown, name="echo-telemetry-flush", daemon=True
            )
            helper.start()
            helper.join(left_ms() / 1000)
            if helper.is_alive():
                processor.span_exporter.shutdown()
                helper.join(_UNSTICK.total_seconds())
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown(timeout_millis=left_ms())
        if self._metrics_server is not None:
            self._metrics_server.stop(max(deadline - time.monotonic(), 0.2))
        in_time = time.monotonic() <= deadline
        if not in_time:
            logger.warning(
                "telemetry flush took longer than %s; the rest was dropped", timeout
            )
        return in_time


def _sampler(*, exporting: bool) -> Sampler | None:
    """The SDK's sampler (``OTEL_TRACES_SAMPLER``, default parent-based
    always-on) while spans go somewhere; otherwise parent-based always-off.

    A span no exporter takes is CPU spent for nothing, an attempt's span
    most of all. Unrecorded spans still carry trace ids, which events report
    and child actions continue, and a caller's sampled context is still
    recorded and passed on, so its trace is never cut short here.
    """
    if exporting or os.environ.get("OTEL_TRACES_SAMPLER", "").strip():
        return None
    return ParentBased(ALWAYS_OFF)


def setup_telemetry(
    *,
    service_name: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    set_global: bool = False,
) -> Telemetry:
    """Build the providers from the ``OTEL_*`` environment and the options.

    Args:
        service_name: overrides ``OTEL_SERVICE_NAME``; default ``echo-service``.
        metrics_port: serve Prometheus ``/metrics`` on this port; ``None``
            means off. 0 picks a free port (tests read ``metrics_port``). The
            CLI maps its ``--metrics-port 0`` to ``None``.
        metrics_host: the address ``/metrics`` listens on.
        span_exporters: extra exporters, each behind a synchronous processor;
            tests pass an in-memory exporter here.
        metric_readers: extra readers, e.g. an in-memory one in tests.
        set_global: also install both providers as the process's globals, so
            libraries that use the global API report into them. The CLI sets
            it; tests leave it off because globals can be set only once.
    """
    trace_names = _selected("TRACES", _TRACE_EXPORTERS)
    metric_names = _selected("METRICS", _METRIC_EXPORTERS)
    if "prometheus" in metric_names and metrics_port is None:
        logger.warning(
            "OTEL_METRICS_EXPORTER names prometheus but no metrics port is set; "
            "set --metrics-port to serve /metrics"
        )
    resource = _resource(service_name)

    # The metrics port is bound first: a taken port must fail the start
    # before any exporter thread exists.
    readers: list[MetricReader] = []
    metrics_server = None
    if metrics_port is not None:
        # A private registry: two setups in one process (tests) never clash,
        # and /metrics shows Echo's metrics plus the process's own.
        registry = prometheus_client.CollectorRegistry()
        prometheus_client.ProcessCollector(registry=registry)
        prometheus_client.PlatformCollector(registry=registry)
        prometheus_client.GCCollector(registry=registry)
        try:
            metrics_server = MetricsServer(
                registry, host=metrics_host, port=metrics_port
            )
        except OSError as exc:
            raise TelemetryConfigError(
                f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror}"
            ) from exc
        readers.append(PrometheusMetricReader(registry=registry))
        metrics_server.start()
        logger.info(
            "serving Prometheus metrics on %s:%d/metrics",
            metrics_host,
            metrics_server.port,
        )
    readers.extend(_metric_reader(n) for n in metric_names if n != "prometheus")
    readers.extend(metric_readers)

    tracer_provider = TracerProvider(
        resource=resource,
        sampler=_sampler(exporting=bool(trace_names or span_exporters)),
    )
    batches = [BatchSpanProcessor(_span_exporter(n)) for n in trace_names]
    for processor in (*batches, *map(SimpleSpanProcessor, span_exporters)):
        tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=readers, views=metric_views()
    )
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        batch_processors=batches,
        trace_exporters=trace_names,
        metric_exporters=[n for n in metric_names if n != "prometheus"],
        metrics_server=metrics_server,
    )
