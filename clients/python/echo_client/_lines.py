"""Turning command-line words and JSON lines into typed actions, and results
into JSON lines.

Command-line arguments are text; each is read as the type its parameter
declares (fetched with ListSignatures):

=========  ==========================================================
type       command-line text
=========  ==========================================================
string     as given
int        a decimal integer within 64 bits (``-5`` is a number, not a flag)
double     a number
bool       true/false, yes/no, on/off, 1/0
bytes      the word's bytes as given (UTF-8 or not)
json       JSON text (``'{"a": 1}'``, ``'[1,2]'``, ``'"text"'``)
any        JSON text when it parses, else the text as a string
=========  ==========================================================

Text must be UTF-8 and JSON must be standard (no ``NaN`` or ``Infinity``),
on the command line and in input lines alike.

In an input line (``--from``), ``args`` is a JSON array: a string for
string, an integer for int, a number for double, ``true``/``false`` for
bool, base64 text for bytes, any JSON for json. ``options`` uses the proto
JSON names (``delay: "1.5s"``, ``priority``, ``idempotencyKey``,
``retryPolicy: {maximumAttempts: 1}``); ``metadata`` is an object of strings.

Output values that JSON cannot carry are written as objects: bytes as
``{"base64": ...}``, packed messages as ``{"type_url": ..., "base64": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import any_pb2, json_format

from echo_client._proto.echo.v1 import action_pb2
from echo_client._types import ActionRequest, Signature
from echo_client._values import Json

__all__ = ["LineError", "coerce_words", "dumps", "parse_line"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# What a shell user means by an integer: no spaces, no "1_000", no "0x10".
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class LineError(ValueError):
    """An input that cannot become an action; the message says why."""


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not standard JSON")


def _loads(text: str) -> Any:
    """Standard JSON only: ``NaN`` and ``Infinity`` cannot be sent as JSON."""
    return json.loads(text, parse_constant=_no_constant)


def _int64(value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{value} is outside the 64-bit range")
    return value


@dataclass(frozen=True, slots=True)
class ParsedLine:
    number: int
    request: ActionRequest


def _signature(name: str, signatures: Mapping[str, Signature]) -> Signature:
    signature = signatures.get(name)
    if signature is None:
        known = ", ".join(sorted(signatures)) or "none"
        raise LineError(f"no action named {name!r} (the plan has: {known})")
    return signature


def _arity(signature: Signature, count: int) -> None:
    if count != len(signature.inputs):
        params = " ".join(p.name for p in signature.inputs)
        raise LineError(
            f"{signature.name} takes {len(signature.inputs)} arguments ({params}), "
            f"got {count}"
        )


def coerce_words(
    name: str, words: Sequence[str], signatures: Mapping[str, Signature]
) -> list[object]:
    """Command-line words as the values the signature of ``name`` declares."""
    signature = _signature(name, signatures)
    _arity(signature, len(words))
    return [
        _from_text(word, param.type, param.name)
        for word, param in zip(words, signature.inputs, strict=True)
    ]


def _from_text(word: str, kind: str, param: str) -> object:
    if kind == "bytes":
        # A word that was not UTF-8 reaches Python surrogate-escaped; these
        # are the bytes as the shell passed them.
        return os.fsencode(word)
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        raise LineError(f"{param} ({kind}): not UTF-8 text") from None
    try:
        if kind == "string":
            return word
        if kind == "int":
            if not _DECIMAL.fullmatch(word):
                raise ValueError(f"not a decimal integer: {word!r}")
            return _int64(int(word))
        if kind == "double":
            return float(word)
        if kind == "bool":
            lowered = word.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"not a boolean: {word!r}")
        if kind == "json":
            return Json(_loads(word))
        if kind == "any":
            try:
                return _loads(word)
            except ValueError:
                return word
    except ValueError as exc:
        raise LineError(f"{param} ({kind}): {exc}") from None
    raise LineError(f"{param} ({kind}): cannot be given on the command line")


def _from_json(value: object, kind: str, where: str) -> object:
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        try:
            return _int64(value)
        except ValueError as exc:
            raise LineError(f"{where}: {exc}") from None
    if (
        kind == "double"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "bytes" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise LineError(f"{where}: bytes must be base64 text") from None
    if kind == "json":
        return Json(value)
    if kind == "any":
        return value
    raise LineError(f"{where}: expected {kind}, got {json.dumps(value)[:60]}")


def parse_line(
    text: str, number: int, signatures: Mapping[str, Signature]
) -> ParsedLine | None:
    """One input line as an action; None for a blank line.

    Raises:
        LineError: the line is not an action the plan accepts.
    """
    if not text.strip():
        return None
    try:
        body = _loads(text)
    except ValueError as exc:
        raise LineError(f"not JSON: {exc}") from None
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise LineError(
            "a string holds a lone surrogate (\\ud800 to \\udfff)"
        ) from None
    if not isinstance(body, dict):
        raise LineError("a line must be a JSON object")
    unknown = set(body) - {"name", "args", "options", "metadata"}
    if unknown:
        raise LineError(f"unknown keys: {', '.join(sorted(unknown))}")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise LineError("'name' is required and must be a string")
    raw_args = body.get("args", [])
    if not isinstance(raw_args, list):
        raise LineError("'args' must be an array")
    signature = _signature(name, signatures)
    _arity(signature, len(raw_args))
    args = [
        _from_json(value, param.type, f"args[{i}] ({param.name})")
        for i, (value, param) in enumerate(zip(raw_args, signature.inputs, strict=True))
    ]
    options = None
    if "options" in body:
        if not isinstance(body["options"], dict):
            raise LineError("'options' must be an object")
        try:
            options = json_format.ParseDict(body["options"], action_pb2.ActionOptions())
        except json_format.ParseError as exc:
            raise LineError(f"options: {exc}") from None
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise LineError("'metadata' must be an object of strings")
    return ParsedLine(number, ActionRequest(name, tuple(args), options, metadata))


def _jsonable(value: object) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, any_pb2.Any):
        return {
            "type_url": value.type_url,
            "base64": base64.b64encode(value.value).decode(),
        }
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def dumps(body: object) -> str:
    """One line of JSON; integers stay integers, odd values become objects."""
    return json.dumps(body, ensure_ascii=False, default=_jsonable)
