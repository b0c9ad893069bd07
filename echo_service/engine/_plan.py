"""Plans: the registry of signatures, the handlers behind them, and hooks.

A ``PlanBuilder`` collects; ``build`` checks that every signature has a
handler and every handler a signature, and returns an immutable ``Plan`` that
any number of actions, retries and threads share without locking.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

from echo_service.engine._values import (
    ActionSignature,
    Parameter,
    TypeRef,
    ValueType,
)

if TYPE_CHECKING:
    from echo_service.engine._context import ExecutionContext
    from echo_service.engine._model import ActionErrorInfo

__all__ = ["Handler", "Hook", "Hooks", "Plan", "PlanBuilder", "PlanError"]

Handler: TypeAlias = Callable[..., Any]
TypeLike: TypeAlias = TypeRef | ValueType
InputLike: TypeAlias = Parameter | TypeRef | ValueType | tuple[str, TypeRef | ValueType]


class PlanError(ValueError):
    """A plan that cannot be built: a missing, orphaned or duplicate entry."""


class Hook:
    """Callbacks around attempts. Subclass and override what you need.

    Order, for an action with global hooks G1, G2 and metadata
    ``hooks="a,b"``: ``before_attempt`` runs G1, G2, a, b; ``after_attempt``
    runs b, a, G2, G1 (innermost first, like nested ``with`` blocks) after
    every attempt whose before hooks all ran, with ``error`` None on success;
    then, when the attempt failed, ``on_retry`` or ``on_failure`` runs in the
    before order. A raising ``before_attempt`` fails the attempt with kind
    HOOK (the later before hooks and the handler do not run); an exception
    from any other hook is logged and changes nothing.
    """

    def before_attempt(self, ctx: ExecutionContext) -> None:
        """Runs on the worker before the handler."""

    def after_attempt(
        self, ctx: ExecutionContext, result: object, error: ActionErrorInfo | None
    ) -> None:
        """Runs on the worker after the handler returned or raised."""

    def on_retry(
        self, ctx: ExecutionContext, error: ActionErrorInfo, delay: float
    ) -> None:
        """Runs when a failed attempt will be retried after ``delay`` seconds."""

    def on_failure(self, ctx: ExecutionContext, error: ActionErrorInfo) -> None:
        """Runs once when the action fails for good."""


Hooks: TypeAlias = Sequence[Hook]


@dataclass(frozen=True, slots=True)
class _Entry:
    signature: ActionSignature
    handler: Handler
    is_async: bool


class Plan:
    """An immutable registry; shared by every action and retry at once."""

    __slots__ = ("_entries", "_global_hooks", "_hooks", "signatures")

    def __init__(
        self,
        entries: Mapping[str, _Entry],
        hooks: Mapping[str, Hook],
        global_hooks: Sequence[Hook],
    ) -> None:
        entries = MappingProxyType(dict(entries))
        setattr_ = object.__setattr__
        setattr_(self, "_entries", entries)
        setattr_(self, "_hooks", MappingProxyType(dict(hooks)))
        setattr_(self, "_global_hooks", tuple(global_hooks))
        setattr_(self, "signatures", tuple(e.signature for e in entries.values()))

    _entries: Mapping[str, _Entry]
    _hooks: Mapping[str, Hook]
    _global_hooks: tuple[Hook, ...]
    signatures: tuple[ActionSignature, ...]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Plan is immutable; build a new one")

    def signature(self, name: str) -> ActionSignature | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.signature

    def entry(self, name: str) -> _Entry | None:
        return self._entries.get(name)

    def hook(self, name: str) -> Hook | None:
        return self._hooks.get(name)

    @property
    def global_hooks(self) -> tuple[Hook, ...]:
        return self._global_hooks


class PlanBuilder:
    """Collects signatures, handlers and hooks; ``build`` checks them."""

    def __init__(self) -> None:
        self._signatures: list[ActionSignature] = []
        self._handlers: list[tuple[str, Handler]] = []
        self._hooks: list[tuple[str, Hook]] = []
        self._global: list[Hook] = []

    def action(
        self,
        name: str | None = None,
        *,
        inputs: Sequence[InputLike] = (),
        output: TypeLike = ValueType.NONE,
        description: str = "",
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function under a signature built from
        ``inputs`` (types, or parameters; names default to the function's own
        parameter names after ``ctx``) and ``output``."""

        def register(handler: Handler) -> Handler:
            params = _param_names(handler)
            built: list[Parameter] = []
            for i, item in enumerate(inputs):
                default = params[i] if i < len(params) else f"arg{i}"
                built.append(_parameter(item, default))
            signature = ActionSignature(
                name=name or handler.__name__,
                inputs=tuple(built),
                output=_typeref(output),
                description=description or inspect.getdoc(handler) or "",
            )
            self.register(signature, handler)
            return handler

        return register

    def register(self, signature: ActionSignature, handler: Handler) -> PlanBuilder:
        self._signatures.append(signature)
        self._handlers.append((signature.name, handler))
        return self

    def signature(self, signature: ActionSignature) -> PlanBuilder:
        """Declare a signature alone; ``handler`` must supply its handler."""
        self._signatures.append(signature)
        return self

    def handler(self, name: str, handler: Handler) -> PlanBuilder:
        """Supply the handler of a signature declared on its own."""
        self._handlers.append((name, handler))
        return self

    def hook(self, name: str, hook: Hook) -> PlanBuilder:
        """Register a hook that actions name in their ``hooks`` metadata."""
        self._hooks.append((name, hook))
        return self

    def global_hooks(self, hooks: Iterable[Hook]) -> PlanBuilder:
        """Add hooks that run around every attempt of every action."""
        self._global.extend(hooks)
        return self

    def build(self) -> Plan:
        problems: list[str] = []
        signatures: dict[str, ActionSignature] = {}
        for sig in self._signatures:
            if sig.name in signatures:
                problems.append(f"duplicate signature {sig.name!r}")
            signatures[sig.name] = sig
            problems.extend(_signature_problems(sig))
        handlers: dict[str, Handler] = {}
        for name, handler in self._handlers:
            if name in handlers:
                problems.append(f"duplicate handler for {name!r}")
            if not callable(handler):
                problems.append(f"handler for {name!r} is not callable")
            handlers[name] = handler
        for name in handlers.keys() - signatures.keys():
            problems.append(f"handler {name!r} has no signature")
        for name in signatures.keys() - handlers.keys():
            problems.append(f"signature {name!r} has no handler")
        hooks: dict[str, Hook] = {}
        for name, hook in self._hooks:
            if name in hooks:
                problems.append(f"duplicate hook {name!r}")
            if not name or "," in name or name != name.strip():
                problems.append(f"bad hook name {name!r}")
            hooks[name] = hook
        if problems:
            raise PlanError("; ".join(sorted(problems)))
        entries = {
            name: _Entry(
                sig, handlers[name], inspect.iscoroutinefunction(handlers[name])
            )
            for name, sig in signatures.items()
        }
        return Plan(entries, hooks, self._global)


def _signature_problems(sig: ActionSignature) -> list[str]:
    problems = []
    if not sig.name:
        problems.append("a signature has an empty name")
    for p in sig.inputs:
        if p.type.type is ValueType.NONE:
            problems.append(f"{sig.name}: input {p.name!r} cannot be of type none")
        limit = p.max_bytes
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            problems.append(
                f"{sig.name}: input {p.name!r} max_bytes must be a whole number "
                f"of bytes, at least 0, not {limit!r}"
            )
    return problems


def _param_names(handler: Handler) -> list[str]:
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params[1:]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _typeref(value: TypeLike) -> TypeRef:
    return value if isinstance(value, TypeRef) else TypeRef(ValueType(value))


def _parameter(item: InputLike, default_name: str) -> Parameter:
    if isinstance(item, Parameter):
        return item
    if isinstance(item, tuple):
        return Parameter(item[0], _typeref(item[1]))
    return Parameter(default_name, _typeref(item))
