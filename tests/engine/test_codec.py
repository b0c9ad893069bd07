"""Event bodies decode to what was encoded, by the quick path or the full one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from echo_service.engine import ActionErrorInfo, ErrorKind, Progress
from echo_service.engine._codec import (
    EventBody,
    Outcome,
    decode_event,
    decode_outcome,
    encode_event,
    encode_outcome,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "body",
    [
        EventBody(),
        EventBody(trace_id=TRACE),
        EventBody(trace_id=TRACE, result=[1, 2.0, {"t": "x"}]),
        EventBody(result={"t": TRACE}),
        EventBody(result=None),
        EventBody(
            trace_id=TRACE,
            error=ActionErrorInfo("ValueError", "no", ErrorKind.HANDLER),
            retry_delay=timedelta(milliseconds=1500),
        ),
        EventBody(progress=Progress(0.5, '{"t":"ab"}')),
    ],
)
def test_an_event_body_decodes_to_what_was_encoded(body: EventBody) -> None:
    data = encode_event(
        trace_id=body.trace_id,
        result=body.result,
        has_result=body.result is not None,
        error=body.error,
        progress=body.progress,
        retry_delay=body.retry_delay,
    )

    assert decode_event(data) == body


def test_a_body_of_only_a_trace_id_is_shared_not_rebuilt() -> None:
    data = encode_event(trace_id=TRACE)

    assert decode_event(data) is decode_event(bytes(data))


def test_the_quick_encodings_are_the_json_ones() -> None:
    assert encode_event(trace_id=TRACE) == f'{{"t":"{TRACE}"}}'.encode()
    assert encode_event(trace_id=TRACE, has_result=True) == (
        f'{{"t":"{TRACE}","r":null}}'.encode()
    )
    assert encode_event() == b"{}"
    assert encode_outcome(None, None) == b'{"r":null}'
    assert decode_outcome(encode_outcome(None, None)) == Outcome(result=None)
