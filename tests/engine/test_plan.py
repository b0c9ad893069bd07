"""Plans and value checks: what is accepted, and how a bad plan fails."""

from __future__ import annotations

import pytest

from echo_service.engine import (
    ActionSignature,
    PackedMessage,
    Parameter,
    PlanBuilder,
    PlanError,
    TypeRef,
    ValueType,
    check_args,
)
from echo_service.errors import InvalidArgument


def _noop(ctx: object) -> None:
    return None


def test_the_decorator_takes_parameter_names_from_the_function() -> None:
    b = PlanBuilder()

    @b.action("add", inputs=[ValueType.INT, ValueType.DOUBLE], output=ValueType.DOUBLE)
    def add(ctx: object, left: int, right: float) -> float:
        """Adds two numbers."""
        return left + right

    plan = b.build()
    sig = plan.signature("add")
    assert sig is not None
    assert [p.name for p in sig.inputs] == ["left", "right"]
    assert sig.output == TypeRef(ValueType.DOUBLE)
    assert sig.description == "Adds two numbers."
    assert plan.signatures == (sig,)


def test_building_fails_on_a_handler_without_a_signature() -> None:
    b = PlanBuilder().handler("orphan", _noop)
    with pytest.raises(PlanError, match="handler 'orphan' has no signature"):
        b.build()


def test_building_fails_on_a_signature_without_a_handler() -> None:
    b = PlanBuilder().signature(ActionSignature("lonely", (), TypeRef(ValueType.NONE)))
    with pytest.raises(PlanError, match="signature 'lonely' has no handler"):
        b.build()


def test_building_fails_on_a_duplicate_name() -> None:
    sig = ActionSignature("twice", (), TypeRef(ValueType.NONE))
    b = PlanBuilder().register(sig, _noop).register(sig, _noop)
    with pytest.raises(PlanError, match="duplicate signature 'twice'"):
        b.build()


def test_a_built_plan_is_immutable() -> None:
    b = PlanBuilder().register(ActionSignature("a", (), TypeRef(ValueType.NONE)), _noop)
    plan = b.build()
    b.register(ActionSignature("b", (), TypeRef(ValueType.NONE)), _noop)
    assert plan.signature("b") is None
    with pytest.raises(AttributeError):
        plan.signatures = ()  # type: ignore[misc]


SIG = ActionSignature(
    "all",
    (
        Parameter("s", TypeRef(ValueType.STRING)),
        Parameter("i", TypeRef(ValueType.INT)),
        Parameter("d", TypeRef(ValueType.DOUBLE)),
        Parameter("b", TypeRef(ValueType.BOOL)),
        Parameter("raw", TypeRef(ValueType.BYTES)),
        Parameter("j", TypeRef(ValueType.JSON)),
        Parameter("m", TypeRef(ValueType.MESSAGE, "pkg.Thing")),
    ),
    TypeRef(ValueType.NONE),
)
GOOD = (
    "x",
    1,
    2,
    True,
    b"\x00",
    {"k": [1, 2.5, None]},
    PackedMessage("t/pkg.Thing", b""),
)


def test_good_arguments_pass_and_an_int_for_a_double_becomes_a_float() -> None:
    out = check_args(SIG, GOOD)
    assert out[1] == 1 and type(out[1]) is int
    assert out[2] == 2.0 and type(out[2]) is float


def test_arity_is_checked() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_args(SIG, GOOD[:2])
    assert err.value.violations[0].field == "args"


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, 1),
        (1, True),  # a bool is not an int
        (1, 1.0),  # a float is not an int
        (1, 2**63),  # past int64
        (2, "1"),
        (3, 1),
        (4, "bytes"),
        (5, {1: "non-string key"}),
        (5, float("nan")),
        (6, PackedMessage("t/pkg.Other", b"")),
    ],
)
def test_each_bad_argument_is_a_field_violation_at_its_index(
    index: int, value: object
) -> None:
    args = list(GOOD)
    args[index] = value
    with pytest.raises(InvalidArgument) as err:
        check_args(SIG, args)
    assert [v.field for v in err.value.violations] == [f"args[{index}]"]
