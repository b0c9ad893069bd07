"""The engine's own encoding of payloads, outcomes and events for the store.

JSON, compact, with tagged values where JSON alone would lose something:
``{"$b": base64}`` for bytes, ``{"$m": [type_url, base64]}`` for a packed
message, and ``{"$d": {...}}`` around a dict whose keys could be mistaken for
a tag. JSON keeps ``1`` and ``1.0`` apart, so integers stay integers.
Durations are whole microseconds; datetimes are ISO 8601 with their offset.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from echo_service.engine._model import (
    ActionErrorInfo,
    ActionOptions,
    ActionSpec,
    ErrorKind,
    Progress,
    RetryPolicy,
)
from echo_service.engine._values import PackedMessage

__all__ = [
    "Outcome",
    "StoredAction",
    "decode_action",
    "decode_event",
    "decode_outcome",
    "encode_action",
    "encode_event",
    "encode_outcome",
]

_MICRO = timedelta(microseconds=1)
_JSON = json.JSONEncoder(separators=(",", ":"))
"""Compact JSON; one encoder for every call (json.dumps with options makes
a new one each time). Its ``encode`` keeps no state between calls."""


def _enc_value(value: object) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, PackedMessage):
        return {"$m": [value.type_url, base64.b64encode(value.value).decode("ascii")]}
    if isinstance(value, list | tuple):
        return [_enc_value(v) for v in value]
    if isinstance(value, dict):
        body = {k: _enc_value(v) for k, v in value.items()}
        if any(k.startswith("$") for k in body):
            return {"$d": body}
        return body
    raise TypeError(f"cannot encode a {type(value).__name__}")


def _dec_value(value: Any) -> object:
    if isinstance(value, list):
        return [_dec_value(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            if "$b" in value:
                return base64.b64decode(value["$b"])
            if "$m" in value:
                url, data = value["$m"]
                return PackedMessage(url, base64.b64decode(data))
            if "$d" in value:
                return {k: _dec_value(v) for k, v in value["$d"].items()}
        return {k: _dec_value(v) for k, v in value.items()}
    return value


def _td(value: timedelta | None) -> int | None:
    return None if value is None else value // _MICRO


def _untd(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(microseconds=value)


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _undt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _enc_policy(p: RetryPolicy) -> dict[str, Any]:
    return _drop_none(
        {
            "i": _td(p.initial_interval),
            "b": p.backoff_coefficient,
            "x": _td(p.maximum_interval),
            "n": p.maximum_attempts,
            "nr": sorted(p.non_retryable_error_types) or None,
            "j": p.jitter,
        }
    )


def _dec_policy(d: dict[str, Any]) -> RetryPolicy:
    initial = _untd(d["i"])
    assert initial is not None
    return RetryPolicy(
        initial_interval=initial,
        backoff_coefficient=float(d["b"]),
        maximum_interval=_untd(d.get("x")),
        maximum_attempts=d["n"],
        non_retryable_error_types=frozenset(d.get("nr", ())),
        jitter=float(d["j"]),
    )


def _enc_options(o: ActionOptions) -> dict[str, Any]:
    return _drop_none(
        {
            "d": _td(o.delay),
            "nb": _dt(o.not_before),
            "pr": o.priority,
            "to": _td(o.attempt_timeout),
            "dl": _dt(o.deadline),
            "rp": None if o.retry_policy is None else _enc_policy(o.retry_policy),
            "ik": o.idempotency_key,
            "nx": None if o.next_action is None else _enc_spec(o.next_action),
        }
    )


def _dec_options(d: dict[str, Any]) -> ActionOptions:
    return ActionOptions(
        delay=_untd(d.get("d")),
        not_before=_undt(d.get("nb")),
        priority=d.get("pr", 0),
        attempt_timeout=_untd(d.get("to")),
        deadline=_undt(d.get("dl")),
        retry_policy=None if "rp" not in d else _dec_policy(d["rp"]),
        idempotency_key=d.get("ik"),
        next_action=None if "nx" not in d else _dec_spec(d["nx"]),
    )


def _enc_spec(spec: ActionSpec) -> dict[str, Any]:
    return {
        "n": spec.name,
        "a": [_enc_value(a) for a in spec.args],
        "o": _enc_options(spec.options),
        "m": dict(spec.metadata),
        "t": dict(spec.trace_context),
    }


def _dec_spec(d: dict[str, Any]) -> ActionSpec:
    return ActionSpec(
        name=d["n"],
        args=tuple(_dec_value(a) for a in d["a"]),
        options=_dec_options(d["o"]),
        metadata=MappingProxyType(d["m"]),
        trace_context=MappingProxyType(d["t"]),
    )


@dataclass(frozen=True, slots=True)
class StoredAction:
    """What the journal keeps of an action beyond its indexed columns:
    the spec as given, and the trace carrier its spans continue."""

    spec: ActionSpec
    span_parent: Mapping[str, str]
    trace_id: str


def encode_action(stored: StoredAction) -> bytes:
    body = _enc_spec(stored.spec)
    body["sp"] = dict(stored.span_parent)
    body["ti"] = stored.trace_id
    return _JSON.encode(body).encode()


def decode_action(data: bytes) -> StoredAction:
    body = json.loads(data)
    return StoredAction(
        spec=_dec_spec(body),
        span_parent=MappingProxyType(body.get("sp", {})),
        trace_id=body.get("ti", ""),
    )


def _enc_error(e: ActionErrorInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"ty": e.type, "msg": e.message, "k": str(e.kind)}
    if e.non_retryable:
        d["nr"] = True
    if e.details:
        d["dt"] = e.details
    return d


def _dec_error(d: dict[str, Any]) -> ActionErrorInfo:
    return ActionErrorInfo(
        type=d["ty"],
        message=d["msg"],
        kind=ErrorKind(d["k"]),
        non_retryable=d.get("nr", False),
        details=d.get("dt", ""),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    result: object | None = None
    error: ActionErrorInfo | None = None


_NO_RESULT = b'{"r":null}'


def encode_outcome(result: object | None, error: ActionErrorInfo | None) -> bytes:
    if error is None and result is None:
        return _NO_RESULT
    body = {"e": _enc_error(error)} if error is not None else {"r": _enc_value(result)}
    return _JSON.encode(body).encode()


def decode_outcome(data: bytes | None) -> Outcome:
    if not data:
        return Outcome()
    body = json.loads(data)
    if "e" in body:
        return Outcome(error=_dec_error(body["e"]))
    return Outcome(result=_dec_value(body.get("r")))


@dataclass(frozen=True, slots=True)
class EventBody:
    result: object | None = None
    error: ActionErrorInfo | None = None
    progress: Progress | None = None
    retry_delay: timedelta | None = None
    trace_id: str = ""


_NO_BODY = EventBody()


def encode_event(
    *,
    trace_id: str = "",
    result: object | None = None,
    has_result: bool = False,
    error: ActionErrorInfo | None = None,
    progress: Progress | None = None,
    retry_delay: timedelta | None = None,
) -> bytes:
    if (
        error is None
        and progress is None
        and retry_delay is None
        and (not has_result or result is None)
    ):
        # The bodies of nearly every event, without the JSON encoder.
        return _simple_event(trace_id, has_result)
    body: dict[str, Any] = {}
    if trace_id:
        body["t"] = trace_id
    if has_result:
        body["r"] = _enc_value(result)
    if error is not None:
        body["e"] = _enc_error(error)
    if progress is not None:
        body["p"] = [progress.fraction, progress.message]
    if retry_delay is not None:
        body["d"] = _td(retry_delay)
    return _JSON.encode(body).encode()


@functools.lru_cache(maxsize=512)
def _simple_event(trace_id: str, null_result: bool) -> bytes:
    body: dict[str, Any] = {"t": trace_id} if trace_id else {}
    if null_result:
        body["r"] = None
    return _JSON.encode(body).encode()


_TRACE_ONLY = re.compile(rb'\{"t":"([0-9a-f]{1,64})"\}')
"""The body of nearly every event (accepted, scheduled, queued, running):
a trace id and nothing else."""


@functools.lru_cache(maxsize=512)
def _trace_only(trace_id: bytes) -> EventBody:
    # The actions of one assign call share their trace id, so their events
    # share this (immutable) body too.
    return EventBody(trace_id=trace_id.decode("ascii"))


def decode_event(data: bytes) -> EventBody:
    if not data or data == b"{}":
        return _NO_BODY
    match = _TRACE_ONLY.fullmatch(data)
    if match is not None:
        return _trace_only(match.group(1))
    body = json.loads(data)
    progress = body.get("p")
    return EventBody(
        result=_dec_value(body["r"]) if "r" in body else None,
        error=_dec_error(body["e"]) if "e" in body else None,
        progress=None if progress is None else Progress(progress[0], progress[1]),
        retry_delay=_untd(body.get("d")),
        trace_id=body.get("t", ""),
    )
