"""A user's plan is found by ``module:attribute``, as the README shows it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from echo_client import Client

from echo_service.engine import Plan
from echo_service.plans import PlanLoadError, load_plan
from tests.e2e._service import Service

README_PLAN = textwrap.dedent(
    """
    from echo_service.engine import ExecutionContext, PlanBuilder, ValueType

    plan = PlanBuilder()

    @plan.action("Add", inputs=[ValueType.INT, ValueType.INT], output=ValueType.INT)
    def add(ctx: ExecutionContext, a: int, b: int) -> int:
        return a + b

    not_a_plan = 42
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory holding the README's ``shop/plan.py``."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plan.py").write_text(README_PLAN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[name]


def test_a_plan_in_the_working_directory_is_found(project: Path) -> None:
    plan = load_plan("shop.plan:plan")

    assert isinstance(plan, Plan)
    assert [s.name for s in plan.signatures] == ["Add"]


@pytest.mark.parametrize(
    ("reference", "complaint"),
    [
        ("shop.plan", "expected package.module:attribute"),
        (":plan", "expected package.module:attribute"),
        ("shop.nothing:plan", "cannot import shop.nothing"),
        ("shop.plan:missing", "has no attribute missing"),
        ("shop.plan:not_a_plan", "not a Plan or PlanBuilder"),
    ],
)
def test_a_reference_that_names_no_plan_says_why(
    project: Path, reference: str, complaint: str
) -> None:
    with pytest.raises(PlanLoadError, match=complaint):
        load_plan(reference)


def test_the_readme_plan_serves_from_its_own_directory(project: Path) -> None:
    with Service(project, "--port", "0", "--plan", "shop.plan:plan") as service:
        with Client(service.address, timeout=timedelta(seconds=10)) as client:
            accepted = client.assign("Add", 2**63 - 2, 1)
            done = client.wait(accepted.action.id, timeout=timedelta(seconds=10))

        assert done.result == 2**63 - 1
        assert type(done.result) is int
        assert service.terminate() == 0
