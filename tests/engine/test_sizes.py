"""Sizes are counted as the contract sends a value, and ``max_bytes`` holds
arguments to them before anything is accepted."""

from __future__ import annotations

import pytest

from echo_service.engine import (
    ActionSignature,
    ActionSpec,
    ExecutionContext,
    PackedMessage,
    Parameter,
    PlanBuilder,
    PlanError,
    TypeRef,
    ValueType,
    check_args,
)
from echo_service.engine._values import encoded_size, size_over
from echo_service.errors import InvalidArgument
from echo_service.server._convert import value_to_proto

from .conftest import EngineFactory

S, B, J, A = (TypeRef(ValueType(t)) for t in ("string", "bytes", "json", "any"))

VALUES: list[tuple[TypeRef, object]] = [
    (S, ""),
    (S, "plain"),
    (S, "héllo wörld ✓ 𝄞"),
    (B, b"\x00\xff" * 40),
    (J, {"k": [1, 2.5, None, True], "ü": "ß"}),
    (J, "a bare string in JSON"),
    (J, None),
    (A, "any string"),
    (A, b"any bytes"),
    (A, [1, {"x": "y"}]),
    (A, PackedMessage("type.googleapis.com/pkg.Thing", b"\x01\x02\x03")),
    (TypeRef(ValueType.INT), 2**62),
    (TypeRef(ValueType.INT), -1),
    (TypeRef(ValueType.DOUBLE), 0.1),
    (TypeRef(ValueType.BOOL), True),
]


@pytest.mark.parametrize(("ref", "value"), VALUES)
def test_a_size_is_what_the_wire_carries_less_a_few_framing_bytes(
    ref: TypeRef, value: object
) -> None:
    message = value_to_proto(value, ref)
    wire = 0 if message is None else message.ByteSize()
    assert encoded_size(ref, value) <= wire + 8
    assert wire <= encoded_size(ref, value) + 16


def test_a_string_counts_its_utf8_bytes_not_its_characters() -> None:
    assert encoded_size(S, "é" * 10) == 20
    assert encoded_size(S, "𝄞") == 4
    assert size_over(S, "é" * 10, 19) == 20
    assert size_over(S, "é" * 10, 20) is None
    assert size_over(S, "x" * 100, 10) == 100  # decided by length alone


def test_a_lone_surrogate_is_measured_not_raised_on() -> None:
    assert encoded_size(S, "\ud800") == 3


def _sig(limit: int | None, ref: TypeRef = S) -> ActionSignature:
    return ActionSignature(
        "Put",
        (Parameter("key", S), Parameter("content", ref, max_bytes=limit)),
        TypeRef(ValueType.NONE),
    )


def test_an_argument_over_max_bytes_is_a_violation_naming_it() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_args(_sig(4), ["k", "héllo"])
    [violation] = err.value.violations
    assert violation.field == "args[1]"
    assert violation.description == "content: 6 bytes, more than the limit of 4"


@pytest.mark.parametrize(
    ("ref", "value", "limit"),
    [(S, "héll", 5), (S, "", 0), (B, b"1234", 4), (J, [1, 2], 5)],
)
def test_an_argument_at_max_bytes_is_accepted(
    ref: TypeRef, value: object, limit: int
) -> None:
    assert check_args(_sig(limit, ref), ["k", value])[1] == value


def test_bytes_and_json_arguments_are_held_to_max_bytes_too() -> None:
    with pytest.raises(InvalidArgument):
        check_args(_sig(3, B), ["k", b"1234"])
    with pytest.raises(InvalidArgument):
        check_args(_sig(4, J), ["k", [1, 2]])  # "[1,2]" is 5 bytes


def test_a_wrong_type_is_reported_once_not_also_as_a_size() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_args(_sig(1), ["k", 12345])
    [violation] = err.value.violations
    assert "expected a string" in violation.description


@pytest.mark.parametrize("limit", [-1, True, 1.5, "10"])
def test_a_plan_with_a_bad_max_bytes_does_not_build(limit: object) -> None:
    builder = PlanBuilder().register(_sig(limit), lambda ctx, k, c: None)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="max_bytes"):
        builder.build()


def test_an_engine_assign_over_max_bytes_is_refused_and_nothing_journaled(
    make_engine: EngineFactory,
) -> None:
    b = PlanBuilder()

    @b.action(inputs=[Parameter("content", S, max_bytes=3)])
    def put(ctx: ExecutionContext, content: str) -> None:
        raise AssertionError("never runs")

    engine = make_engine(b.build())
    with pytest.raises(InvalidArgument) as err:
        engine.assign([ActionSpec("put", ("abcd",))])
    assert [v.field for v in err.value.violations] == ["actions[0].args[0]"]
    assert engine.last_sequence == 0
