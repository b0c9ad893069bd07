"""Traces across the RPC edge, metrics over a real scrape, bounded flush, logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from echo_service import telemetry as telemetry_package
from echo_service.engine import (
    ActionOptions,
    ActionSpec,
    Engine,
    PlanBuilder,
    RetryPolicy,
    State,
    ValueType,
)
from echo_service.server._security import BearerAuthInterceptor
from echo_service.store import MemoryStore
from echo_service.telemetry import (
    INSTRUMENTS,
    RpcTelemetryInterceptor,
    Telemetry,
    TelemetryConfigError,
    configure_logging,
    current_traceparent,
    setup_telemetry,
)
from tests.production._servers import (
    ABORT,
    COUNT,
    ECHO,
    FAIL,
    GATE,
    WAIT,
    AioServer,
    health_check,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Spans(InMemorySpanExporter):
    """An in-memory exporter a test can wait on."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        with self._changed:
            self._changed.notify_all()
        return result

    def wait_for(
        self, predicate: Callable[[tuple[ReadableSpan, ...]], bool]
    ) -> tuple[ReadableSpan, ...]:
        with self._changed:
            assert self._changed.wait_for(
                lambda: predicate(self.get_finished_spans()), WAIT
            ), [s.name for s in self.get_finished_spans()]
        return self.get_finished_spans()

    def named(self, name: str) -> ReadableSpan:
        found = self.wait_for(lambda spans: any(s.name == name for s in spans))
        [span] = [s for s in found if s.name == name]
        return span


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment without OTEL_* settings."""
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
def telemetry(spans: Spans) -> Iterator[Telemetry]:
    made = setup_telemetry(
        metrics_port=0, metrics_host="127.0.0.1", span_exporters=[spans]
    )
    yield made
    assert made.shutdown(timedelta(seconds=5))


@pytest.fixture
def traced(telemetry: Telemetry) -> Iterator[AioServer]:
    interceptor = RpcTelemetryInterceptor(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    with AioServer(interceptors=[interceptor]) as server:
        yield server


def _channel(server: AioServer) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{server.port}")


def _scrape(telemetry: Telemetry) -> dict[str, list[tuple[dict[str, str], float]]]:
    url = f"http://127.0.0.1:{telemetry.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


# --- RPC spans -----------------------------------------------------------------


def test_a_call_continues_the_callers_trace_in_a_server_span(
    traced: AioServer, spans: Spans
) -> None:
    with _channel(traced) as channel:
        channel.unary_unary(ECHO)(
            b"x", timeout=WAIT, metadata=(("traceparent", TRACEPARENT),)
        )

    span = spans.named("echo.test.Probe/Echo")
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["rpc.system"] == "grpc"
    assert span.attributes["rpc.service"] == "echo.test.Probe"
    assert span.attributes["rpc.method"] == "Echo"
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert span.attributes["network.peer.address"] == "127.0.0.1"
    assert span.status.status_code is StatusCode.UNSET


def test_a_call_without_trace_context_starts_a_new_trace(
    traced: AioServer, spans: Spans
) -> None:
    with _channel(traced) as channel:
        channel.unary_unary(ECHO)(b"x", timeout=WAIT)

    span = spans.named("echo.test.Probe/Echo")
    assert span.parent is None
    assert span.context.trace_id != 0


def test_the_servicer_sees_the_rpc_span_as_current(telemetry: Telemetry) -> None:
    async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return json.dumps(current_traceparent()).encode()

    async def whoami_stream(
        request: bytes, context: grpc.aio.ServicerContext
    ) -> object:
        for _ in range(2):
            await asyncio.sleep(0)
            yield json.dumps(current_traceparent()).encode()

    handler = grpc.method_handlers_generic_handler(
        "echo.test.Who",
        {
            "Am": grpc.unary_unary_rpc_method_handler(whoami),
            "AmStream": grpc.unary_stream_rpc_method_handler(whoami_stream),
        },
    )
    interceptor = RpcTelemetryInterceptor(tracer_provider=telemetry.tracer_provider)
    metadata = (("traceparent", TRACEPARENT),)
    with (
        AioServer(interceptors=[interceptor], extra_handlers=[handler]) as server,
        _channel(server) as channel,
    ):
        unary = json.loads(
            channel.unary_unary("/echo.test.Who/Am")(
                b"", timeout=WAIT, metadata=metadata
            )
        )
        streamed = [
            json.loads(message)
            for message in channel.unary_stream("/echo.test.Who/AmStream")(
                b"", timeout=WAIT, metadata=metadata
            )
        ]

    assert unary["traceparent"].split("-")[1] == TRACE_ID
    assert unary["traceparent"].split("-")[2] != PARENT_ID  # the server span's id
    assert len({s["traceparent"] for s in streamed}) == 1
    assert streamed[0]["traceparent"].split("-")[1] == TRACE_ID


def test_there_is_no_traceparent_outside_any_span() -> None:
    assert current_traceparent() == {}


def test_an_actions_spans_stay_in_the_assigning_callers_trace(
    telemetry: Telemetry, spans: Spans
) -> None:
    plan = PlanBuilder()

    @plan.action(inputs=[ValueType.INT], output=ValueType.INT)
    def double(ctx: object, n: int) -> int:
        return 2 * n

    journal = MemoryStore()
    engine = Engine(
        plan.build(),
        journal,
        workers=2,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    engine.start()
    done = engine.subscribe(after=0)

    async def assign(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        spec = ActionSpec(
            "double", (int(request),), trace_context=current_traceparent()
        )
        [assigned] = await asyncio.to_thread(engine.assign, [spec])
        return assigned.action.id.encode()

    handler = grpc.method_handlers_generic_handler(
        "echo.test.Engine",
        {"Assign": grpc.unary_unary_rpc_method_handler(assign)},
    )
    interceptor = RpcTelemetryInterceptor(tracer_provider=telemetry.tracer_provider)
    try:
        with (
            AioServer(interceptors=[interceptor], extra_handlers=[handler]) as server,
            _channel(server) as channel,
        ):
            action_id = channel.unary_unary("/echo.test.Engine/Assign")(
                b"21", timeout=WAIT, metadata=(("traceparent", TRACEPARENT),)
            ).decode()
        while True:
            event = done.get(WAIT)
            assert event is not None
            if event.action_id == action_id and event.state is State.SUCCEEDED:
                break
    finally:
        done.close()
        engine.close()
        journal.close()

    rpc = spans.named("echo.test.Engine/Assign")
    found = spans.wait_for(
        lambda all_: (
            {"echo.assign double", "echo.action double"} <= {s.name for s in all_}
        )
    )
    engine_spans = [s for s in found if s.name.startswith("echo.")]
    assert {format(s.context.trace_id, "032x") for s in engine_spans} == {TRACE_ID}
    [assign_span] = [s for s in engine_spans if s.name == "echo.assign double"]
    assert assign_span.parent is not None
    assert assign_span.parent.span_id == rpc.context.span_id
    assert event.trace_id == TRACE_ID


def test_a_server_stream_span_ends_when_the_stream_does(
    traced: AioServer, spans: Spans
) -> None:
    with _channel(traced) as channel:
        assert len(list(channel.unary_stream(COUNT)(b"3", timeout=WAIT))) == 3

    span = spans.named("echo.test.Probe/Count")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == 0


def test_a_stream_the_client_cancels_ends_its_span_as_cancelled_not_as_error(
    traced: AioServer, spans: Spans
) -> None:
    with _channel(traced) as channel:
        stream = channel.unary_stream(GATE)(b"", timeout=WAIT)
        assert next(stream) == b"first"
        stream.cancel()

    span = spans.named("echo.test.Probe/Gate")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert span.status.status_code is StatusCode.UNSET
    assert not span.events


def test_an_escaping_exception_ends_the_span_as_error_recorded_exactly_once(
    traced: AioServer, spans: Spans
) -> None:
    with _channel(traced) as channel, pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(FAIL)(b"boom", timeout=WAIT)

    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    span = spans.named("echo.test.Probe/Fail")
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.type"] == "RuntimeError"
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == 2


@pytest.mark.parametrize(
    ("code", "is_error"),
    [
        ("INVALID_ARGUMENT", False),
        ("NOT_FOUND", False),
        ("RESOURCE_EXHAUSTED", False),
        ("UNAVAILABLE", True),
        ("INTERNAL", True),
    ],
)
def test_an_aborted_call_is_a_span_error_only_for_server_side_codes(
    traced: AioServer, spans: Spans, code: str, is_error: bool
) -> None:
    with _channel(traced) as channel, pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(ABORT)(code.encode(), timeout=WAIT)

    status = getattr(grpc.StatusCode, code)
    assert caught.value.code() == status
    span = spans.named("echo.test.Probe/Abort")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == status.value[0]
    expected = StatusCode.ERROR if is_error else StatusCode.UNSET
    assert span.status.status_code is expected
    assert not span.events


def test_health_checks_are_neither_traced_nor_timed(
    traced: AioServer, spans: Spans, telemetry: Telemetry
) -> None:
    with _channel(traced) as channel:
        assert health_check(channel) == 1
        channel.unary_unary(ECHO)(b"x", timeout=WAIT)

    spans.named("echo.test.Probe/Echo")
    assert not [s for s in spans.get_finished_spans() if "Health" in s.name]
    timed = {
        labels["rpc_service"]
        for labels, _ in _scrape(telemetry)["echo_rpc_seconds_count"]
    }
    assert timed == {"echo.test.Probe"}


def test_calls_refused_by_authentication_are_traced_when_telemetry_comes_first(
    telemetry: Telemetry, spans: Spans
) -> None:
    interceptors = [
        RpcTelemetryInterceptor(tracer_provider=telemetry.tracer_provider),
        BearerAuthInterceptor(["token"]),
    ]
    with (
        AioServer(interceptors=interceptors) as server,
        _channel(server) as channel,
        pytest.raises(grpc.RpcError),
    ):
        channel.unary_unary(ECHO)(b"x", timeout=WAIT)

    span = spans.named("echo.test.Probe/Echo")
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == 16  # UNAUTHENTICATED


# --- metrics -------------------------------------------------------------------


def test_rpc_durations_are_scraped_in_seconds_per_method_and_code(
    traced: AioServer, telemetry: Telemetry
) -> None:
    with _channel(traced) as channel:
        for _ in range(3):
            channel.unary_unary(ECHO)(b"x", timeout=WAIT)
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(ABORT)(b"NOT_FOUND", timeout=WAIT)

    samples = _scrape(telemetry)
    counts = {
        (labels["rpc_method"], labels["rpc_grpc_status_code"]): value
        for labels, value in samples["echo_rpc_seconds_count"]
    }
    assert counts == {("Echo", "0"): 3.0, ("Abort", "5"): 1.0}
    bounds = {labels["le"] for labels, _ in samples["echo_rpc_seconds_bucket"]}
    assert {"0.001", "1.0", "600.0", "+Inf"} <= bounds


def test_the_engines_instruments_are_scraped_under_their_documented_names(
    telemetry: Telemetry,
) -> None:
    plan = PlanBuilder()

    @plan.action(inputs=[], output=ValueType.NONE)
    def ok(ctx: object) -> None:
        return None

    @plan.action(inputs=[], output=ValueType.NONE)
    def boom(ctx: object) -> None:
        raise RuntimeError("boom")

    journal = MemoryStore()
    engine = Engine(
        plan.build(),
        journal,
        workers=2,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    engine.start()
    events = engine.subscribe(after=0)
    retry = RetryPolicy(
        initial_interval=timedelta(milliseconds=5), maximum_attempts=2, jitter=0
    )
    try:
        assigned = engine.assign(
            [
                ActionSpec("ok"),
                ActionSpec("boom", options=ActionOptions(retry_policy=retry)),
            ]
        )
        pending = {a.action.id for a in assigned}
        while pending:
            event = events.get(WAIT)
            assert event is not None
            if event.state in (State.SUCCEEDED, State.FAILED):
                pending.discard(event.action_id)
        samples = _scrape(telemetry)
    finally:
        events.close()
        engine.close()
        journal.close()

    def value(name: str) -> float:
        return sum(v for _, v in samples[name])

    exported = {
        instrument.name: f"{instrument.name}_count"
        if instrument.kind == "histogram"
        else instrument.name
        for instrument in INSTRUMENTS
    }
    missing = [name for name, sample in exported.items() if sample not in samples]
    assert not missing, sorted(samples)
    assert value("echo_assigns_total") == 2
    assert value("echo_successes_total") == 1
    assert value("echo_failures_total") == 1
    assert value("echo_retries_total") == 1
    assert value("echo_run_seconds_count") == 3  # ok once, boom twice
    assert "echo_queue_depth" in samples and "echo_in_flight" in samples
    assert "echo_steals_total" in samples


def test_the_metrics_endpoint_also_shows_the_process(telemetry: Telemetry) -> None:
    assert "process_cpu_seconds_total" in _scrape(telemetry)


def test_metrics_are_off_without_a_port(spans: Spans) -> None:
    made = setup_telemetry(span_exporters=[spans])
    try:
        assert made.metrics_port is None
    finally:
        made.shutdown()


def test_a_taken_metrics_port_is_reported_at_start(telemetry: Telemetry) -> None:
    with pytest.raises(TelemetryConfigError, match="cannot serve metrics"):
        setup_telemetry(metrics_port=telemetry.metrics_port, metrics_host="127.0.0.1")


# --- OTEL_* environment and export ---------------------------------------------


def _resource_name(made: Telemetry) -> object:
    return made.tracer_provider.resource.attributes["service.name"]


def test_nothing_is_exported_and_the_name_is_echo_service_by_default() -> None:
    made = setup_telemetry()
    try:
        assert made.trace_exporters == ()
        assert made.metric_exporters == ()
        assert _resource_name(made) == "echo-service"
    finally:
        made.shutdown()


def test_otel_service_name_and_an_explicit_name_take_precedence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    from_env = setup_telemetry()
    explicit = setup_telemetry(service_name="explicit")
    try:
        assert _resource_name(from_env) == "from-env"
        assert _resource_name(explicit) == "explicit"
    finally:
        from_env.shutdown()
        explicit.shutdown()


def test_an_otlp_endpoint_alone_switches_otlp_export_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    made = setup_telemetry()
    try:
        assert made.trace_exporters == ("otlp",)
        assert made.metric_exporters == ("otlp",)
    finally:
        made.shutdown(timedelta(seconds=1))


def test_exporter_none_keeps_everything_in_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    made = setup_telemetry()
    try:
        assert made.trace_exporters == ()
        assert made.metric_exporters == ()
    finally:
        made.shutdown()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "supports otlp, console and none"),
        ("OTEL_METRICS_EXPORTER", "statsd", "supports otlp, prometheus"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "over gRPC only"),
    ],
)
def test_an_unsupported_otel_setting_fails_the_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv(variable, value)
    with pytest.raises(TelemetryConfigError, match=message):
        setup_telemetry()


def test_spans_reach_a_real_otlp_collector_on_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def export(
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    collector = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export,
                request_deserializer=(
                    trace_service_pb2.ExportTraceServiceRequest.FromString
                ),
                response_serializer=(
                    trace_service_pb2.ExportTraceServiceResponse.SerializeToString
                ),
            )
        },
    )
    with AioServer(extra_handlers=[collector]) as server:
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.port}"
        )
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        made = setup_telemetry()
        with made.tracer_provider.get_tracer("test").start_as_current_span("work"):
            pass
        assert made.shutdown(timedelta(seconds=5))

    [request] = received
    [resource_spans] = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "echo-service"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["work"]


def test_shutdown_gives_up_on_a_stuck_collector_within_its_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A socket that listens but never answers: the TCP handshake completes,
    # the HTTP/2 one never does, like a collector that hangs.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        port = black_hole.getsockname()[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        made = setup_telemetry()
        with made.tracer_provider.get_tracer("test").start_as_current_span("lost"):
            pass
        started = time.monotonic()
        flushed = made.shutdown(timedelta(seconds=1))
        took = time.monotonic() - started

    assert not flushed
    assert took < 2.5
    for thread in threading.enumerate():
        if thread.name.startswith("OtelBatch"):
            thread.join(WAIT)
            assert not thread.is_alive()


# --- logs ----------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_parse_and_carry_action_attempt_and_trace_ids() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    log = logging.getLogger("echo_service.test")

    log.info(
        "attempt %d of %s failed",
        2,
        "abc",
        extra={"action_id": "abc", "attempt": 2, "trace_id": TRACE_ID},
    )
    log.debug("plain line")

    first, second = _lines(out)
    assert first["message"] == "attempt 2 of abc failed"
    assert first["level"] == "INFO"
    assert first["logger"] == "echo_service.test"
    assert (first["action_id"], first["attempt"], first["trace_id"]) == (
        "abc",
        2,
        TRACE_ID,
    )
    assert str(first["time"]).endswith("+00:00")
    assert "action_id" not in second and "trace_id" not in second


@pytest.mark.usefixtures("restore_logging")
def test_a_line_logged_inside_a_span_carries_that_spans_trace_id(
    spans: Spans,
) -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    made = setup_telemetry(span_exporters=[spans])
    try:
        tracer = made.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("echo_service.test").warning("inside")
        expected = format(span.get_span_context().trace_id, "032x")
    finally:
        made.shutdown()

    [line] = _lines(out)
    assert line["trace_id"] == expected


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_keep_exceptions_and_odd_extras_as_text() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("echo_service.test").exception(
            "failed", extra={"peer": object(), "sizes": (1, 2)}
        )

    [line] = _lines(out)
    assert "ValueError: bad value" in str(line["exception"])
    assert str(line["peer"]).startswith("<object object")
    assert line["sizes"] == [1, 2]


@pytest.mark.usefixtures("restore_logging")
def test_configuring_logging_twice_replaces_its_own_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(json=True, stream=first)
    configure_logging(json=False, stream=second)
    logging.getLogger("echo_service.test").warning(
        "once", extra={"action_id": "a1", "attempt": 1}
    )

    assert first.getvalue() == ""
    assert second.getvalue().rstrip().endswith("once [action_id=a1 attempt=1]")


def test_the_telemetry_package_exports_what_the_server_and_cli_need() -> None:
    assert set(telemetry_package.__all__) == {
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
    }
    assert all(hasattr(telemetry_package, n) for n in telemetry_package.__all__)


# --- sampling ------------------------------------------------------------------


def _root_and_child(made: Telemetry) -> tuple[trace.Span, trace.Span]:
    tracer = made.tracer_provider.get_tracer("test")
    sampled_parent = trace.set_span_in_context(
        trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=0xABC,
                span_id=0xDEF,
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
    )
    root = tracer.start_span("root")
    child = tracer.start_span("child", context=sampled_parent)
    root.end()
    child.end()
    return root, child


def test_without_an_exporter_new_traces_are_not_recorded_but_keep_their_ids() -> None:
    made = setup_telemetry()
    try:
        root, child = _root_and_child(made)
        assert not root.is_recording()
        assert root.get_span_context().trace_id != 0
        assert not root.get_span_context().trace_flags.sampled
        # A caller's sampled trace is still recorded and passed on as sampled.
        assert child.get_span_context().trace_id == 0xABC
        assert child.get_span_context().trace_flags.sampled
    finally:
        assert made.shutdown(timedelta(seconds=5))


def test_with_an_exporter_every_trace_is_recorded(spans: Spans) -> None:
    made = setup_telemetry(span_exporters=[spans])
    try:
        root, _ = _root_and_child(made)
        assert root.get_span_context().trace_flags.sampled
        assert {s.name for s in spans.get_finished_spans()} == {"root", "child"}
    finally:
        assert made.shutdown(timedelta(seconds=5))


def test_an_explicit_sampler_setting_is_obeyed_without_an_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    made = setup_telemetry()
    try:
        root, _ = _root_and_child(made)
        assert root.get_span_context().trace_flags.sampled
    finally:
        assert made.shutdown(timedelta(seconds=5))
