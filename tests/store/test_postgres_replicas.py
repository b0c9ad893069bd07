"""Several replicas sharing one PostgreSQL journal.

The server is the session's own (see ``conftest.postgres_url``); these tests
skip with the install hint when PostgreSQL or psycopg is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta

import pytest

from echo_service import errors
from echo_service.store import EventRecord, State, Transition

from .conftest import (
    Collector,
    FakeClock,
    StoreFactory,
    all_events,
    new_action,
    run_threads,
)

pytestmark = pytest.mark.parametrize("kind", ["postgres"])


def test_replicas_claiming_at_once_never_share_an_action(
    open_journal: StoreFactory,
) -> None:
    replicas = [open_journal(), open_journal()]
    actions = [new_action(priority=i % 3) for i in range(300)]
    replicas[0].insert(actions)
    taken: list[list[str]] = [[] for _ in range(4)]

    def claimer(i: int) -> None:
        store = replicas[i % 2]
        while batch := store.claim(now=1.0, limit=5, owner=f"replica-{i}"):
            taken[i].extend(r.id for r in batch)

    run_threads(claimer, 4)

    everything = [a for ids in taken for a in ids]
    assert len(everything) == len(set(everything)) == 300


def test_sequences_stay_gapless_when_replicas_write_at_once(
    open_journal: StoreFactory,
) -> None:
    replicas = [open_journal(), open_journal()]

    def writer(i: int) -> None:
        store = replicas[i % 2]
        for _ in range(15):
            [ins] = store.insert([new_action()])
            store.record([Transition(ins.record.id, State.RUNNING)]).result()

    run_threads(writer, 4)

    sequences = [e.sequence for e in all_events(replicas[1], page=50)]
    assert sequences == list(range(1, 121))
    assert replicas[0].last_sequence() == replicas[1].last_sequence() == 120
    assert replicas[0].waiting() == 60


def test_a_listener_on_one_replica_sees_events_written_through_another(
    open_journal: StoreFactory,
) -> None:
    writer, reader = open_journal(), open_journal()
    seen, caught_up = Collector(), threading.Event()

    def watch(events: Sequence[EventRecord]) -> None:
        if events[-1].sequence >= 20:
            caught_up.set()

    reader.add_listener(seen)
    reader.add_listener(watch)
    actions = [new_action() for _ in range(10)]

    writer.insert(actions)
    for action in actions:
        writer.record([Transition(action.id, State.SUCCEEDED)])
    writer.flush()

    assert caught_up.wait(10)
    assert seen.sequences == list(range(1, 21))


def test_a_key_inserted_through_two_replicas_at_once_is_accepted_once(
    open_journal: StoreFactory,
) -> None:
    replicas = [open_journal(), open_journal()]
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def insert(i: int) -> None:
        start.wait()
        [ins] = replicas[i % 2].insert([new_action(key="pay-42")])
        with lock:
            results.append(ins.duplicate)

    run_threads(insert, 4)

    assert sorted(results) == [False, True, True, True]


def test_a_dead_replicas_work_comes_back_when_its_leases_run_out(
    open_journal: StoreFactory, clock: FakeClock
) -> None:
    first, second = open_journal(), open_journal()
    action = new_action()
    first.insert([action])
    first.claim(now=clock.now, limit=1, owner="first", lease=timedelta(seconds=30))
    first.close()  # dies without releasing

    assert second.claim(now=clock.now + 29, limit=1, owner="second") == []
    [taken] = second.claim(now=clock.now + 30, limit=1, owner="second")

    assert taken.id == action.id
    assert second.recover("first") == 0  # nothing left under the old name


def test_recover_releases_only_the_claims_of_the_named_replica(
    open_journal: StoreFactory,
) -> None:
    store = open_journal()
    a, b = new_action(), new_action()
    store.insert([a, b])
    store.claim(now=1.0, limit=1, owner="alpha")
    store.claim(now=1.0, limit=1, owner="beta")

    assert store.recover("alpha") == 1

    [again] = store.claim(now=1.0, limit=5, owner="gamma")
    assert again.id == a.id


def test_a_locked_journal_fails_writes_with_unavailable_and_then_recovers(
    open_journal: StoreFactory, postgres_url: str
) -> None:
    import psycopg  # noqa: PLC0415 - an optional dependency

    store = open_journal(busy_timeout=timedelta(milliseconds=300))
    store.insert([new_action()])
    with psycopg.connect(postgres_url) as holder:
        holder.execute("LOCK TABLE echo_meta IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(errors.Unavailable, match="locked"):
            store.insert([new_action()])
        assert not store.healthy()
        holder.rollback()

    store.insert([new_action()])
    assert store.healthy()
    assert store.last_sequence() == 2


def test_an_unreachable_server_fails_at_open_with_unavailable(kind: str) -> None:
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from echo_service.store import PostgresStore  # noqa: PLC0415

    with pytest.raises(errors.Unavailable, match="unreachable"):
        PostgresStore(
            "postgresql://echo@127.0.0.1:1/postgres",
            busy_timeout=timedelta(seconds=1),
        )


def test_a_claim_without_a_lease_is_kept_alive_by_its_store_until_it_dies(
    open_journal: StoreFactory, clock: FakeClock
) -> None:
    first = open_journal(
        lease=timedelta(seconds=3), poll_interval=timedelta(milliseconds=50)
    )
    second = open_journal()
    action = new_action()
    first.insert([action])
    [claimed] = first.claim(now=clock.now, limit=1, owner="first")
    assert claimed.lease_until == clock.now + 3

    # While the store runs, its event thread pushes the lease forward (every
    # second here), always to its clock's now plus the lease.
    clock.advance(timedelta(seconds=10))
    renewed = threading.Event()

    def lease_moved() -> bool:
        record = first.get(action.id)
        return record is not None and record.lease_until == clock.now + 3

    for _ in range(100):
        if lease_moved():
            renewed.set()
            break
        renewed.wait(0.05)  # polls a condition, bounded by the loop
    assert renewed.is_set()
    assert second.claim(now=clock.now + 2, limit=1, owner="second") == []

    first.close()  # the replica dies; nobody renews any more
    [taken] = second.claim(now=clock.now + 3, limit=1, owner="second")
    assert taken.id == action.id
