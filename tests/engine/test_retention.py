"""The engine keeps its journal from growing: finished actions and old keys go.

Time is the engine's manual clock; a store wrapper tells when a purge ran,
so nothing here sleeps.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest

from echo_service import errors
from echo_service.engine import (
    ActionOptions,
    ActionSpec,
    Engine,
    ExecutionContext,
    ManualClock,
    PlanBuilder,
    State,
    ValueType,
)
from echo_service.store import Store

from .conftest import WAIT, events_until, finished


class PurgeWatch:
    """A store that counts finished purges; everything else passes through."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cond = threading.Condition()
        self.purges = 0
        self.last: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def purge(self, *, finished_before: float, keys_before: float) -> int:
        removed = self._store.purge(
            finished_before=finished_before, keys_before=keys_before
        )
        with self._cond:
            self.purges += 1
            self.last = {"finished_before": finished_before, "keys_before": keys_before}
            self._cond.notify_all()
        return removed

    def wait_for(self, purges: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.purges >= purges, WAIT), (
                f"only {self.purges} purges ran"
            )


def echo_plan():
    b = PlanBuilder()

    @b.action(inputs=[ValueType.ANY], output=ValueType.ANY)
    def echo(ctx: ExecutionContext, value: object) -> object:
        return value

    return b.build()


@pytest.fixture
def watched(store: Store) -> PurgeWatch:
    return PurgeWatch(store)


def test_a_finished_action_and_its_events_leave_the_journal_after_the_retention(
    make_engine, watched: PurgeWatch, clock: ManualClock
) -> None:
    engine = make_engine(
        echo_plan(),
        on=watched,
        retention=timedelta(hours=1),
        purge_interval=timedelta(minutes=5),
    )
    watched.wait_for(1)  # the purge at start
    sub = engine.subscribe()
    [done] = engine.assign([ActionSpec("echo", (1,))])
    events_until(sub, finished(done.action.id))
    [waiting] = engine.assign(
        [ActionSpec("echo", (2,), ActionOptions(delay=timedelta(days=30)))]
    )

    clock.advance(timedelta(minutes=58))
    watched.wait_for(2)
    assert engine.get(done.action.id).state is State.SUCCEEDED

    clock.advance(timedelta(minutes=5))
    watched.wait_for(3)
    with pytest.raises(errors.NotFound):
        engine.get(done.action.id)
    left = {e.action_id for e in watched.events_after(0, limit=100)}
    assert left == {waiting.action.id}
    # An unfinished action stays however old it gets.
    clock.advance(timedelta(days=20))
    watched.wait_for(4)
    assert engine.get(waiting.action.id).state is State.SCHEDULED


def test_an_idempotency_key_is_forgotten_after_the_key_retention(
    make_engine, watched: PurgeWatch, clock: ManualClock
) -> None:
    engine = make_engine(
        echo_plan(),
        on=watched,
        key_retention=timedelta(minutes=10),
        purge_interval=timedelta(minutes=1),
    )
    keyed = ActionSpec("echo", (1,), ActionOptions(idempotency_key="invoice-9"))
    [first] = engine.assign([keyed])

    clock.advance(timedelta(minutes=9))
    watched.wait_for(2)
    [repeat] = engine.assign([keyed])
    assert repeat.duplicate and repeat.action.id == first.action.id

    clock.advance(timedelta(minutes=2))
    watched.wait_for(3)
    # The store alone would still know it (its own retention is a day).
    [later] = engine.assign([keyed])
    assert not later.duplicate and later.action.id != first.action.id
    # The first action itself is kept: it is not older than the retention.
    assert engine.get(first.action.id).id == first.action.id


class LogWatch(logging.Handler):
    """Keeps the records of one logger and wakes whoever waits for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.cond = threading.Condition()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def wait_for(self, prefix: str) -> logging.LogRecord:
        def found() -> logging.LogRecord | None:
            return next(
                (r for r in self.records if r.getMessage().startswith(prefix)), None
            )

        with self.cond:
            assert self.cond.wait_for(lambda: found() is not None, WAIT), prefix
            record = found()
        assert record is not None
        return record


def test_each_purge_says_at_debug_what_it_removed(
    make_engine, watched: PurgeWatch, clock: ManualClock
) -> None:
    logger = logging.getLogger("echo_service.engine._engine")
    logs = LogWatch()
    logger.addHandler(logs)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        engine = make_engine(
            echo_plan(),
            on=watched,
            retention=timedelta(minutes=1),
            purge_interval=timedelta(minutes=1),
        )
        sub = engine.subscribe()
        [done] = engine.assign([ActionSpec("echo", (1,))])
        events_until(sub, finished(done.action.id))
        watched.wait_for(1)

        clock.advance(timedelta(minutes=2))
        record = logs.wait_for("purged 1 actions")
    finally:
        logger.removeHandler(logs)
        logger.setLevel(level)

    assert record.levelno == logging.DEBUG
    assert watched.last["finished_before"] == clock.now() - 60
    assert watched.last["keys_before"] == clock.now() - 24 * 3600


@pytest.mark.parametrize("option", ["retention", "key_retention", "purge_interval"])
def test_retention_settings_must_be_positive(store: Store, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        Engine(echo_plan(), store, **{option: timedelta(0)})
