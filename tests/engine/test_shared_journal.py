"""Engines as replicas of one PostgreSQL journal: who runs what, and whose
outcome counts.

Each replica has its own store and its own manual clock, so a test can let
one replica's time run (its leases expire for the others) while another's
stands still (it does not renew: a pause, as far as the journal can tell).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from echo_service.engine import (
    ActionSpec,
    Engine,
    ExecutionContext,
    ManualClock,
    Plan,
    PlanBuilder,
    State,
    ValueType,
)
from echo_service.store import Store
from tests.store.conftest import empty_postgres

from .conftest import WAIT, events_until, finished

LEASE = timedelta(seconds=3)

Replica = Callable[..., tuple[Engine, Store]]


@pytest.fixture
def replica(postgres_url: str) -> Iterator[Replica]:
    """Makes engines on their own stores of one journal; closes all of them."""
    from echo_service.store import PostgresStore  # noqa: PLC0415 - optional extra

    empty_postgres(postgres_url)
    engines: list[Engine] = []
    stores: list[Store] = []

    def make(
        plan: Plan,
        clock: ManualClock,
        name: str,
        *,
        start: bool = True,
        wrap: Callable[[Store], Any] = lambda s: s,
    ) -> tuple[Engine, Store]:
        store = PostgresStore(
            postgres_url, clock=clock.now, poll_interval=timedelta(milliseconds=50)
        )
        stores.append(store)
        engine = Engine(
            plan,
            wrap(store),
            clock=clock,
            workers=1,
            lease=LEASE,
            config={"replica": name},
        )
        engines.append(engine)
        if start:
            engine.start()
        return engine, store

    yield make
    for engine in engines:
        engine.close()
    for store in stores:
        store.close()


class Pausing:
    """``job(tag)`` runs at once, except on replica ``a`` where it first waits
    for ``gate``; every run is noted with its replica."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.runs: list[str] = []
        b = PlanBuilder()

        @b.action(inputs=[ValueType.STRING], output=ValueType.STRING)
        def job(ctx: ExecutionContext, tag: str) -> str:
            replica = str(ctx.config["replica"])
            self.runs.append(replica)
            if replica == "a":
                self.entered.set()
                assert self.gate.wait(WAIT)
            return replica

        self.plan = b.build()


class RenewWatch:
    """A store that counts ``renew`` calls; everything else passes through."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cond = threading.Condition()
        self.renewals = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def renew(self, action_ids: Any, **kwargs: Any) -> set[str]:
        held: set[str] = self._store.renew(action_ids, **kwargs)
        with self._cond:
            self.renewals += 1
            self._cond.notify_all()
        return held

    def wait_for(self, renewals: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.renewals >= renewals, WAIT)


def test_an_engine_runs_work_that_another_replica_accepted(replica: Replica) -> None:
    work = Pausing()
    clock = ManualClock()
    runner, _ = replica(work.plan, clock, "b")
    # An engine that was never started still journals: a replica that only
    # accepts. The runner learns of the work through the journal alone.
    acceptor, _ = replica(work.plan, clock, "c", start=False)
    sub = runner.subscribe()

    [job] = acceptor.assign([ActionSpec("job", ("x",))])

    done = events_until(sub, finished(job.action.id))[-1]
    assert done.state is State.SUCCEEDED and done.result == "b"
    assert work.runs == ["b"]


def test_a_replica_that_lost_its_lease_cannot_record_over_its_successor(
    replica: Replica,
) -> None:
    work = Pausing()
    clock_a, clock_b = ManualClock(), ManualClock()
    first, _ = replica(work.plan, clock_a, "a")
    [job] = first.assign([ActionSpec("job", ("x",))])
    assert work.entered.wait(WAIT)
    # a's clock stands still from here: it renews nothing, like a replica
    # paused longer than its lease.
    second, journal = replica(work.plan, clock_b, "b")
    sub = second.subscribe(after=0)

    clock_b.advance(LEASE + timedelta(seconds=1))
    done = events_until(sub, finished(job.action.id))[-1]
    assert done.result == "b"
    work.gate.set()  # a's attempt returns now, long after it lost the claim
    # Closing waits for the attempt and flushes what it wrote: a success, or
    # a give-back if the close's drain told it to stop first. Unfenced,
    # either would land on top of b's finish (the give-back even reopens
    # the finished action).
    first.close()

    events = journal.events_after(0, limit=100, action_ids=frozenset({job.action.id}))
    assert [e.state for e in events].count(State.SUCCEEDED) == 1
    assert second.get(job.action.id).result == "b"
    assert not [e for e in events if e.sequence > done.sequence]
    assert work.runs == ["a", "b"]  # at-least-once: both handlers ran


def test_a_long_run_keeps_its_claim_because_its_engine_renews_the_lease(
    replica: Replica,
) -> None:
    work = Pausing()
    clock = ManualClock()
    watch: list[RenewWatch] = []

    def watched(store: Store) -> RenewWatch:
        watch.append(RenewWatch(store))
        return watch[0]

    first, journal = replica(work.plan, clock, "a", wrap=watched)
    [job] = first.assign([ActionSpec("job", ("x",))])
    assert work.entered.wait(WAIT)
    second, _ = replica(work.plan, clock, "b")
    sub = second.subscribe(after=0)

    for step in range(1, 7):  # twice the lease, a third of it at a time
        clock.advance(LEASE / 3)
        watch[0].wait_for(step)
    record = journal.get(job.action.id)
    assert record is not None
    assert record.owner is not None and record.lease_until == clock.now() + 3

    work.gate.set()
    done = events_until(sub, finished(job.action.id))[-1]
    assert done.state is State.SUCCEEDED and done.result == "a"
    assert work.runs == ["a"]
