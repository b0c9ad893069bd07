"""Fixtures shared by the journal tests: every store, a clock, helpers."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from echo_service.store import (
    EventRecord,
    MemoryStore,
    NewAction,
    SqliteStore,
    Store,
)

KINDS = ["memory", "sqlite"]


class FakeClock:
    """Epoch seconds that move only when a test moves them."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by.total_seconds()


StoreFactory = Callable[..., Store]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_journal(kind: str, tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    """Opens stores of this test's kind; every one is closed at teardown.

    Calling it again after closing the previous store reopens the same data
    (for the kinds that keep any).
    """
    opened: list[Store] = []

    def factory(
        *, key_retention: timedelta = timedelta(hours=1), **options: object
    ) -> Store:
        store: Store
        if kind == "memory":
            store = MemoryStore(key_retention=key_retention, clock=clock)
        else:
            store = SqliteStore(
                tmp_path / "journal" / "echo.db",
                key_retention=key_retention,
                clock=clock,
                **options,  # type: ignore[arg-type]
            )
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_journal: StoreFactory) -> Store:
    return open_journal()


_ids = itertools.count()


def new_action(
    *,
    priority: int = 0,
    due_at: float = 0.0,
    key: str | None = None,
    name: str = "echo",
    action_id: str | None = None,
) -> NewAction:
    return NewAction(
        id=action_id or f"action-{next(_ids)}",
        name=name,
        payload=b"args",
        priority=priority,
        due_at=due_at,
        idempotency_key=key,
        event_payload=b"accepted",
    )


def all_events(store: Store, *, page: int = 7) -> list[EventRecord]:
    """Every journaled event, read page by page as a resuming client does."""
    out: list[EventRecord] = []
    after = 0
    while batch := store.events_after(after, limit=page):
        out.extend(batch)
        after = batch[-1].sequence
    return out


class Collector:
    """A listener that keeps what it is handed; safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[EventRecord] = []
        self.calls = 0

    def __call__(self, events: Sequence[EventRecord]) -> None:
        with self._lock:
            self._events.extend(events)
            self.calls += 1

    @property
    def sequences(self) -> list[int]:
        with self._lock:
            return [e.sequence for e in self._events]

    @property
    def events(self) -> list[EventRecord]:
        with self._lock:
            return list(self._events)


def run_threads(target: Callable[[int], None], count: int) -> None:
    """Run ``target(i)`` on ``count`` threads, join them, re-raise a failure."""
    failures: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a worker thread did not finish"
    if failures:
        raise failures[0]
