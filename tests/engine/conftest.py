"""Fixtures: a manual clock, real stores, and engines that always close."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from echo_service.engine import (
    ActionEvent,
    Engine,
    ManualClock,
    Plan,
    State,
    Subscription,
)
from echo_service.store import MemoryStore, SqliteStore, Store
from tests.store.conftest import postgres_url  # noqa: F401 - their server, reused

WAIT = 10.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> Iterator[Store]:
    s = MemoryStore(clock=clock.now)
    yield s
    s.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "echo.db"


def open_sqlite(path: Path, clock: ManualClock) -> SqliteStore:
    return SqliteStore(path, key_retention=timedelta(hours=1), clock=clock.now)


EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine(store: Store, clock: ManualClock) -> Iterator[EngineFactory]:
    made: list[Engine] = []

    def make(
        plan: Plan, *, start: bool = True, on: Store | None = None, **kw: Any
    ) -> Engine:
        kw.setdefault("workers", 2)
        engine = Engine(plan, on or store, clock=clock, **kw)
        made.append(engine)
        if start:
            engine.start()
        return engine

    yield make
    for engine in made:
        engine.close()


def events_until(
    sub: Subscription,
    done: Callable[[ActionEvent], bool],
    timeout: float = WAIT,
) -> list[ActionEvent]:
    """Read events until one satisfies ``done``; fail if none comes in time."""
    seen: list[ActionEvent] = []
    while True:
        event = sub.get(timeout)
        assert event is not None, (
            f"no matching event; saw {[(e.state, e.attempt) for e in seen]}"
        )
        seen.append(event)
        if done(event):
            return seen


def finished(action_id: str) -> Callable[[ActionEvent], bool]:
    return lambda e: e.action_id == action_id and e.state.finished


def all_finished(action_ids: Iterable[str]) -> Callable[[ActionEvent], bool]:
    """True at the event that finishes the last of ``action_ids``, in whatever
    order they finish (concurrent actions need not finish in assign order)."""
    waiting = set(action_ids)

    def done(event: ActionEvent) -> bool:
        if event.state.finished:
            waiting.discard(event.action_id)
        return not waiting

    return done


def state_is(action_id: str, state: State) -> Callable[[ActionEvent], bool]:
    return lambda e: e.action_id == action_id and e.state is state
