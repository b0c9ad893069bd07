"""Python values to the contract's ``Value`` and back.

Going out, the Python type picks the kind:

=====================================  ==============================
Python                                 Value kind
=====================================  ==============================
``str``                                ``string_value``
``bool``                               ``bool_value``
``int`` (64-bit)                       ``int_value``
``int`` beyond 64 bits                 ``json_value`` (every digit kept)
``float``                              ``double_value``
``bytes``, ``bytearray``               ``bytes_value``
``None``, ``dict``, ``list``, ``tuple``  ``json_value``
``Json(x)``                            ``json_value`` of ``x``, whatever it is
a protobuf message                     ``message_value`` (packed ``Any``)
``google.protobuf.Any``                ``message_value`` as it is
=====================================  ==============================

Wrap a value in ``Json`` when a JSON parameter should receive a string or a
number as JSON: ``Json("a")`` sends the JSON text ``"a"``.

Coming back, each kind becomes its Python type; ``json_value`` is parsed
with ``json.loads``, so integers stay ``int`` (``1`` never becomes ``1.0``);
``message_value`` stays a packed ``google.protobuf.Any`` for the caller to
unpack into the message class it knows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf import any_pb2
from google.protobuf.message import Message

from echo_client._proto.echo.v1 import action_pb2

__all__ = ["Json", "from_value", "to_value"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Json:
    """Send ``value`` as ``json_value`` whatever its Python type."""

    value: object


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def to_value(value: object) -> action_pb2.Value:
    """``value`` as a ``Value``; see the module docstring for the rules.

    Raises:
        TypeError: a type with no Value kind (a set, an object...).
        ValueError: a float that is not finite inside JSON.
    """
    if isinstance(value, Json):
        return action_pb2.Value(json_value=_json_text(value.value))
    if isinstance(value, bool):
        return action_pb2.Value(bool_value=value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return action_pb2.Value(int_value=value)
        return action_pb2.Value(json_value=str(value))
    if isinstance(value, float):
        return action_pb2.Value(double_value=value)
    if isinstance(value, str):
        return action_pb2.Value(string_value=value)
    if isinstance(value, bytes | bytearray | memoryview):
        return action_pb2.Value(bytes_value=bytes(value))
    if value is None or isinstance(value, dict | list | tuple):
        return action_pb2.Value(json_value=_json_text(value))
    if isinstance(value, any_pb2.Any):
        return action_pb2.Value(message_value=value)
    if isinstance(value, Message):
        packed = any_pb2.Any()
        packed.Pack(value)
        return action_pb2.Value(message_value=packed)
    raise TypeError(f"no Value kind for a {type(value).__name__}; wrap it in Json()")


def from_value(value: action_pb2.Value) -> object:
    """The Python value of ``value``; None when no kind is set."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "json_value":
        return json.loads(value.json_value)
    if kind == "message_value":
        packed = any_pb2.Any()
        packed.CopyFrom(value.message_value)
        return packed
    return getattr(value, kind)
