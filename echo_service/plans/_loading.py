"""Loading a user's plan named ``package.module:attribute``."""

from __future__ import annotations

import importlib
import os
import sys

from echo_service.engine import Plan, PlanBuilder

__all__ = ["PlanLoadError", "load_plan"]


class PlanLoadError(ValueError):
    """The reference does not name a plan; the message says why."""


def load_plan(reference: str) -> Plan:
    """Import ``package.module:attribute`` and return the plan it names.

    The attribute may be a ``Plan``, a ``PlanBuilder`` (built here), or a
    function taking no arguments that returns either.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise PlanLoadError(f"{reference!r}: expected package.module:attribute")
    # A console script's sys.path lacks the working directory, yet that is
    # where a user's own plan usually sits, as with other application servers.
    working_dir = os.getcwd()
    if working_dir not in sys.path:
        sys.path.insert(0, working_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PlanLoadError(
            f"{reference!r}: cannot import {module_name}: {exc}"
        ) from exc
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise PlanLoadError(
                f"{reference!r}: {module_name} has no attribute {attribute}"
            ) from None
    if callable(target) and not isinstance(target, Plan | PlanBuilder):
        target = target()
    if isinstance(target, PlanBuilder):
        target = target.build()
    if not isinstance(target, Plan):
        raise PlanLoadError(
            f"{reference!r} is a {type(target).__name__}, not a Plan or PlanBuilder"
        )
    return target
