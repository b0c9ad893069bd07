"""Echo's OpenTelemetry: providers from OTEL_* settings, RPC spans, metrics, logs.

- ``setup_telemetry`` builds the tracer and meter providers (OTLP when the
  environment asks, Prometheus ``/metrics`` on a port) and returns a
  ``Telemetry`` whose ``shutdown`` flushes within a time limit.
- ``RpcTelemetryInterceptor`` opens a server span per call, continuing the
  caller's W3C trace, and times every call; ``current_traceparent`` hands the
  current span to the engine.
- ``INSTRUMENTS`` lists the exported metrics; ``metric_views`` names them.
- ``configure_logging`` writes text or JSON lines with action and trace ids.
"""

from echo_service.telemetry._logging import (
    CONTEXT_FIELDS,
    JsonFormatter,
    TextFormatter,
    configure_logging,
)
from echo_service.telemetry._metrics import (
    DURATION_BUCKETS,
    INSTRUMENTS,
    RPC_DURATION,
    ExportedInstrument,
    metric_views,
)
from echo_service.telemetry._rpc import (
    UNTRACED_METHOD_PREFIXES,
    RpcTelemetryInterceptor,
    current_traceparent,
)
from echo_service.telemetry._setup import (
    DEFAULT_SERVICE_NAME,
    Telemetry,
    TelemetryConfigError,
    setup_telemetry,
)

__all__ = [
    "CONTEXT_FIELDS",
    "DEFAULT_SERVICE_NAME",
    "DURATION_BUCKETS",
    "INSTRUMENTS",
    "RPC_DURATION",
    "UNTRACED_METHOD_PREFIXES",
    "ExportedInstrument",
    "JsonFormatter",
    "RpcTelemetryInterceptor",
    "Telemetry",
    "TelemetryConfigError",
    "TextFormatter",
    "configure_logging",
    "current_traceparent",
    "metric_views",
    "setup_telemetry",
]
