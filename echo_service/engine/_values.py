"""Value types, signatures, and the checks that hold values to them.

An action's arguments are checked against its signature before it is
accepted, and its result against the output type after it ran. The mapping
from declared types to Python values is strict where the contract is: an
integer stays an ``int`` (``bool`` is not one), and an ``int`` given for a
DOUBLE becomes a ``float`` here, once, so a handler always sees the type it
declared.
"""

from __future__ import annotations

import enum
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
    name: str
    type: TypeRef
    description: str = ""


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
        if problem is not None:
            violations.append(FieldViolation(f"args[{i}]", f"{param.name}: {problem}"))
        out.append(converted)
    if violations:
        raise InvalidArgument(f"bad arguments for {signature.name}", violations)
    return tuple(out)


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
