"""How much the SQLite journal reads to answer a query.

SQLite calls a progress handler every N virtual-machine steps; counting the
calls on the store's own reader connections measures the work of a query
without timing it. A scan of the events table costs steps in proportion to
its rows, an index lookup in proportion to the rows it returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from echo_service.store import SqliteStore

from .conftest import FakeClock, new_action

_STEPS = 100  # virtual-machine steps per progress call
_COMMON = 20_000


class StepCounter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 0  # 0: go on


@pytest.fixture
def counted(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SqliteStore, StepCounter]]:
    counter = StepCounter()
    connect = SqliteStore._connect_reader

    def counting(self: SqliteStore) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_progress_handler(counter, _STEPS)
        return conn

    monkeypatch.setattr(SqliteStore, "_connect_reader", counting)
    store = SqliteStore(tmp_path / "echo.db", clock=clock)
    try:
        yield store, counter
    finally:
        store.close()


def test_events_of_a_rare_name_are_found_without_reading_the_others(
    counted: tuple[SqliteStore, StepCounter],
) -> None:
    store, counter = counted
    rare = {0: "audit", _COMMON // 2: "report", _COMMON - 1: "audit"}
    for start in range(0, _COMMON, 5_000):
        store.insert(
            [
                new_action(name=rare.get(i, "common"))
                for i in range(start, start + 5_000)
            ]
        )
    assert store.events_after(0, limit=1) != []  # opens the reader: not counted
    counter.calls = 0

    one = store.events_after(0, limit=10, names=frozenset({"report"}))
    one_cost = counter.calls
    counter.calls = 0
    two = store.events_after(0, limit=10, names=frozenset({"audit", "report"}))
    two_cost = counter.calls
    counter.calls = 0
    scan = store.events_after(0, limit=10, names=frozenset({"nothing-by-this-name"}))
    miss_cost = counter.calls

    assert [e.sequence for e in one] == [_COMMON // 2 + 1]
    assert [e.sequence for e in two] == [1, _COMMON // 2 + 1, _COMMON]
    assert scan == []
    # A scan of 20,000 events takes well over a thousand calls; the index
    # answers in a few.
    counter.calls = 0
    assert len(store.events_after(0, limit=_COMMON)) == _COMMON
    assert counter.calls > 200  # the counter does count: reading all is a scan
    costs = {"one name": one_cost, "two names": two_cost, "no match": miss_cost}
    assert max(costs.values()) < 20, costs
