"""What the SQLite journal keeps across close, reopen and crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from echo_service import errors
from echo_service.store import SqliteStore, State, Transition, open_store

from .conftest import FakeClock, all_events, new_action

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "echo.db"


def test_open_store_sqlite_puts_echo_db_in_the_data_dir(tmp_path: Path) -> None:
    store = open_store(
        "sqlite", data_dir=tmp_path / "data", key_retention=timedelta(hours=1)
    )
    try:
        store.insert([new_action()])
    finally:
        store.close()

    assert (tmp_path / "data" / "echo.db").is_file()


def test_open_store_refuses_an_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument):
        open_store("mysql", data_dir=tmp_path, key_retention=timedelta(hours=1))


def test_actions_events_keys_and_claims_survive_close_and_reopen(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteStore(db_path, clock=clock)
    keyed, running, finished = new_action(key="k"), new_action(), new_action()
    store.insert([keyed, running, finished])
    store.claim(now=1.0, limit=2, owner="before")
    store.record(
        [
            Transition(running.id, State.RUNNING, attempt=2, due_at=7.0),
            Transition(finished.id, State.SUCCEEDED, outcome=b"ok"),
        ]
    ).result()
    events_before = all_events(store)
    store.close()

    store = SqliteStore(db_path, clock=clock)
    try:
        assert all_events(store) == events_before
        assert store.last_sequence() == 5
        assert store.waiting() == 2
        record = store.get(running.id)
        assert record is not None
        assert (record.state, record.attempt, record.due_at, record.owner) == (
            State.RUNNING,
            2,
            7.0,
            "before",
        )
        assert store.insert([new_action(key="k")])[0].duplicate
        assert store.recover("after") == 2
        assert {r.id for r in store.claim(now=10.0, limit=5, owner="after")} == {
            keyed.id,
            running.id,
        }
    finally:
        store.close()


def test_sequence_numbers_are_never_reused_after_the_newest_events_are_purged(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteStore(db_path, clock=clock)
    action = new_action()
    store.insert([action])
    store.record([Transition(action.id, State.SUCCEEDED)]).result()
    clock.advance(timedelta(seconds=10))
    assert store.purge(finished_before=clock.now, keys_before=0.0) == 1
    assert store.events_after(0, limit=10) == []
    store.close()

    store = SqliteStore(db_path, clock=clock)
    try:
        assert store.last_sequence() == 2
        store.insert([new_action()])
        assert [e.sequence for e in store.events_after(0, limit=10)] == [3]
    finally:
        store.close()


def test_a_finish_recorded_without_waiting_is_on_disk_after_close(
    db_path: Path,
) -> None:
    # Trap: work that finished during a graceful stop ran again after restart.
    store = SqliteStore(db_path)
    actions = [new_action() for _ in range(50)]
    store.insert(actions)
    for action in actions:
        store.record([Transition(action.id, State.SUCCEEDED)])  # not awaited
    store.close()

    store = SqliteStore(db_path)
    try:
        assert store.waiting() == 0
        assert store.recover("next") == 0
        assert store.claim(now=1e12, limit=100, owner="next") == []
    finally:
        store.close()


def test_writes_queued_behind_a_commit_share_the_next_one(db_path: Path) -> None:
    store = SqliteStore(db_path)
    try:
        entered, gate = threading.Event(), threading.Event()

        def hold_first_group(events: object) -> None:
            # Runs on the writer thread: while it waits, writes pile up.
            if not entered.is_set():
                entered.set()
                gate.wait(10)

        store.add_listener(hold_first_group)
        first = new_action()
        store.insert([first])
        assert entered.wait(10)
        futures = [
            store.record([Transition(first.id, State.PROGRESS)]) for _ in range(200)
        ]
        gate.set()
        store.flush()

        assert all(f.done() and f.exception() is None for f in futures)
        assert store.commits == 2
        assert store.last_sequence() == 201
    finally:
        gate.set()
        store.close()


def test_a_second_store_on_the_same_data_dir_is_refused(db_path: Path) -> None:
    store = SqliteStore(db_path)
    try:
        with pytest.raises(errors.Unavailable, match="in use by another process"):
            SqliteStore(db_path)
    finally:
        store.close()
    SqliteStore(db_path).close()  # free again once the first has closed


_CRASHING_WRITER = """
import sys, threading
from pathlib import Path
from echo_service.store import NewAction, SqliteStore, State, Transition

store = SqliteStore(Path(sys.argv[1]))
out = threading.Lock()

def acknowledge(line):
    with out:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

def inserter(t):
    i = 0
    while True:
        i += 1
        action_id = f"t{t}-{i}"
        store.insert([NewAction(id=action_id, name="echo", payload=b"x" * 200,
                                priority=i % 3, due_at=0.0)])
        acknowledge("insert " + action_id)

def runner():
    while True:
        for record in store.claim(now=1e12, limit=5, owner="doomed"):
            store.record([Transition(record.id, State.RUNNING,
                                     attempt=record.attempt + 1)]).result()
            acknowledge("running " + record.id)

threads = [threading.Thread(target=inserter, args=(t,)) for t in range(4)]
threads.append(threading.Thread(target=runner))
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_a_crash_loses_no_acknowledged_insert_and_running_work_is_recovered(
    db_path: Path,
) -> None:
    inserted: set[str] = set()
    running: set[str] = set()

    def acknowledged(line: str) -> None:
        if line.endswith("\n"):  # a torn last line was never acknowledged
            verb, action_id = line.split()
            (inserted if verb == "insert" else running).add(action_id)

    with subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as child:
        try:
            assert child.stdout is not None
            for line in child.stdout:
                acknowledged(line)
                if len(inserted) >= 400 and len(running) >= 20:
                    child.send_signal(signal.SIGKILL)
                    break
            # Lines written before the kill were acknowledged too.
            for line in child.stdout:
                acknowledged(line)
        finally:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    store = SqliteStore(db_path)
    try:
        missing = [a for a in inserted if store.get(a) is None]
        assert missing == [], f"{len(missing)} acknowledged inserts were lost"
        for action_id in running:
            record = store.get(action_id)
            assert record is not None
            assert record.state is State.RUNNING
            assert record.attempt >= 1
        sequences = [e.sequence for e in all_events(store, page=500)]
        assert sequences == list(range(1, store.last_sequence() + 1))
        assert store.recover("reborn") >= len(running)
        claimable = store.claim(now=1e12, limit=1_000_000, owner="reborn")
        assert {r.id for r in claimable} >= inserted
        assert len(claimable) == store.waiting()
    finally:
        store.close()
