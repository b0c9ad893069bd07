"""Value types, signatures, and the checks that hold values to them.

An action's arguments are checked against its signature before it is
accepted, and its result against the output type after it ran. The mapping
from declared types to Python values is strict where the contract is: an
integer stays an ``int`` (``bool`` is not one), and an ``int`` given for a
DOUBLE becomes a ``float`` here, once, so a handler always sees the type it
declared.

Sizes are counted as the contract sends a value (``encoded_size``), so a
parameter's ``max_bytes`` and the engine's result limit mean the bytes a
client would receive, not the size of a Python object.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from echo_service.errors import FieldViolation, InvalidArgument

__all__ = [
    "ActionSignature",
    "PackedMessage",
    "Parameter",
    "TypeRef",
    "ValueType",
    "check_args",
    "check_value",
    "encoded_size",
    "size_over",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class ValueType(enum.StrEnum):
    """The types a signature can declare; NONE is for outputs only."""

    STRING = "string"
    INT = "int"
    DOUBLE = "double"
    BOOL = "bool"
    BYTES = "bytes"
    JSON = "json"
    MESSAGE = "message"
    ANY = "any"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A declared type; ``message_type`` is the full proto name for MESSAGE."""

    type: ValueType
    message_type: str = ""

    def __str__(self) -> str:
        if self.type is ValueType.MESSAGE and self.message_type:
            return f"message {self.message_type}"
        return str(self.type)


@dataclass(frozen=True, slots=True)
class PackedMessage:
    """A packed protobuf ``Any``: the engine passes it through unopened."""

    type_url: str
    value: bytes

    @property
    def message_type(self) -> str:
        return self.type_url.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Parameter:
    """One positional input.

    Attributes:
        max_bytes: the largest ``encoded_size`` an argument may have (for a
            string its UTF-8 length, for bytes their count); a larger one is
            refused at assign with a field violation. None: no limit beyond
            the server's message size.
    """

    name: str
    type: TypeRef
    description: str = ""
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ActionSignature:
    """The declared shape of an action: positional inputs and one output."""

    name: str
    inputs: tuple[Parameter, ...]
    output: TypeRef
    description: str = ""


def check_value(ref: TypeRef, value: object) -> tuple[object, str | None]:
    """Return ``(value as the handler sees it, None)`` or ``(value, why not)``."""
    kind = ref.type
    if kind is ValueType.STRING:
        return value, None if isinstance(value, str) else _expected("a string", value)
    if kind is ValueType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            return value, _expected("an integer", value)
        if not INT64_MIN <= value <= INT64_MAX:
            return value, "integer out of the 64-bit range"
        return value, None
    if kind is ValueType.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, _expected("a number", value)
        return float(value), None
    if kind is ValueType.BOOL:
        return value, None if isinstance(value, bool) else _expected("a bool", value)
    if kind is ValueType.BYTES:
        if isinstance(value, bytearray | memoryview):
            return bytes(value), None
        return value, None if isinstance(value, bytes) else _expected("bytes", value)
    if kind is ValueType.JSON:
        return value, _json_problem(value, 0)
    if kind is ValueType.MESSAGE:
        if not isinstance(value, PackedMessage):
            return value, _expected("a packed message", value)
        if ref.message_type and value.message_type != ref.message_type:
            return value, (
                f"expected message {ref.message_type}, got {value.message_type or '?'}"
            )
        return value, None
    if kind is ValueType.ANY:
        if isinstance(value, bytes | PackedMessage):
            return value, None
        return value, _json_problem(value, 0)
    # NONE
    return value, None if value is None else _expected("no value", value)


def check_args(
    signature: ActionSignature, args: Sequence[object]
) -> tuple[object, ...]:
    """Check arity and types; raise ``InvalidArgument`` with ``args[i]`` paths."""
    if len(args) != len(signature.inputs):
        raise InvalidArgument(
            f"{signature.name} takes {len(signature.inputs)} arguments",
            [
                FieldViolation(
                    "args",
                    f"expected {len(signature.inputs)} arguments, got {len(args)}",
                )
            ],
        )
    out: list[object] = []
    violations: list[FieldViolation] = []
    for i, (param, value) in enumerate(zip(signature.inputs, args, strict=True)):
        converted, problem = check_value(param.type, value)
        if problem is None and param.max_bytes is not None:
            size = size_over(param.type, converted, param.max_bytes)
            if size is not None:
                problem = f"{size} bytes, more than the limit of {param.max_bytes}"
        if problem is not None:
            violations.append(FieldViolation(f"args[{i}]", f"{param.name}: {problem}"))
        out.append(converted)
    if violations:
        raise InvalidArgument(f"bad arguments for {signature.name}", violations)
    return tuple(out)


_WIRE_JSON = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
)
"""JSON as it goes out in a ``json_value``: compact and not ASCII-escaped."""
_WIDE = {bool: 1, int: 10, float: 8}
"""Most bytes a scalar takes on the wire (a varint is at most 10)."""


def encoded_size(ref: TypeRef, value: object) -> int:
    """Bytes ``value`` takes in the contract's Value when its type is ``ref``.

    A string counts its UTF-8 bytes, bytes their length, a JSON value (and
    anything a JSON output returns) its compact JSON text, a packed message
    its type URL and body, a scalar its widest encoding. Tags and length
    prefixes (a few bytes a value) are left out: limits keep room for them.
    ``value`` must already pass ``check_value``.
    """
    if ref.type is ValueType.NONE or value is None:
        return 0
    if ref.type is ValueType.JSON:
        return _json_size(value)
    if isinstance(value, str):
        return _utf8_size(value)
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, PackedMessage):
        return _utf8_size(value.type_url) + len(value.value)
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return len(str(value))  # sent as JSON text to keep every digit
    wide = _WIDE.get(type(value))
    return wide if wide is not None else _json_size(value)


def size_over(ref: TypeRef, value: object, limit: int) -> int | None:
    """``encoded_size(ref, value)`` when it exceeds ``limit``, else None.

    A string is measured only when its length alone cannot decide: a code
    point takes one to four UTF-8 bytes, so most strings are settled without
    encoding them.
    """
    if ref.type is not ValueType.JSON:
        if isinstance(value, str):
            if 4 * len(value) <= limit:
                return None
            if len(value) > limit:
                return _utf8_size(value)
        elif limit >= 10 and (
            isinstance(value, bool | float)
            or (type(value) is int and INT64_MIN <= value <= INT64_MAX)
        ):
            return None  # a scalar takes at most 10 bytes
    size = encoded_size(ref, value)
    return size if size > limit else None


def _utf8_size(text: str) -> int:
    if text.isascii():
        return len(text)
    # surrogatepass: a lone surrogate is measured, not raised on; the wire
    # refuses it later anyway.
    return len(text.encode("utf-8", "surrogatepass"))


def _json_size(value: object) -> int:
    try:
        return _utf8_size(_WIRE_JSON.encode(value))
    except (TypeError, ValueError):
        # Not JSON after all (a checked ANY never gets here); it goes out as
        # its text.
        return _utf8_size(json.dumps(str(value), ensure_ascii=False))


_MAX_DEPTH = 64


def _json_problem(value: object, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return "JSON value nested too deeply"
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "JSON numbers must be finite"
    if isinstance(value, list | tuple):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return "JSON object keys must be strings"
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return _expected("a JSON value", value)


def _expected(what: str, value: object) -> str:
    return f"expected {what}, got {type(value).__name__}"
