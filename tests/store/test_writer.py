"""The group writer: one thread, ordered writes, futures a caller may cancel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from echo_service import errors
from echo_service.store import EventRecord
from echo_service.store._writer import GroupWriter, Write


class _Log:
    """A transaction that only notes what ran, in order."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.commits = 0

    def begin(self) -> None:
        pass

    def run(self, write: Write[Any]) -> tuple[Any, list[EventRecord]]:
        result: tuple[Any, list[EventRecord]] = write.apply()
        return result

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        pass

    def failure(self, exc: BaseException) -> errors.EchoError:
        return errors.StoreError(repr(exc))


@pytest.fixture
def log() -> _Log:
    return _Log()


@pytest.fixture
def writer(log: _Log) -> Iterator[GroupWriter]:
    w = GroupWriter(log, name="echo-journal-test")
    yield w
    w.close()


def _note(log: _Log, name: str) -> Any:
    def apply() -> tuple[str, list[EventRecord]]:
        log.applied.append(name)
        return name, []

    return apply


def test_a_write_cancelled_before_the_writer_took_it_is_never_applied(
    writer: GroupWriter, log: _Log
) -> None:
    inside, release = threading.Event(), threading.Event()

    def hold() -> tuple[None, list[EventRecord]]:
        inside.set()
        assert release.wait(10)
        return None, []

    held = writer.submit(hold)
    assert inside.wait(10)
    dropped = writer.submit(_note(log, "dropped"))
    kept = writer.submit(_note(log, "kept"))
    assert dropped.cancel()
    release.set()

    assert kept.result(timeout=10) == "kept"
    assert held.result(timeout=10) is None
    writer.flush()
    assert log.applied == ["kept"]
    assert writer.healthy


def test_upkeep_runs_after_each_group_once_its_futures_are_resolved(
    log: _Log,
) -> None:
    seen: list[tuple[int, bool]] = []
    futures: list[Any] = []
    submitted = threading.Lock()  # upkeep waits until the future is noted

    def upkeep() -> None:
        with submitted:
            seen.append((log.commits, all(f.done() for f in futures)))

    w = GroupWriter(log, name="echo-journal-test", upkeep=upkeep)
    try:
        with submitted:
            futures.append(w.submit(_note(log, "a")))
        futures[0].result(timeout=10)
        w.flush()
    finally:
        w.close()

    assert seen and seen[0] == (1, True)


def test_a_lingering_write_shares_the_commit_of_the_next_write(
    writer: GroupWriter, log: _Log
) -> None:
    running = writer.submit(_note(log, "running"), linger=3600.0)
    outcome = writer.submit(_note(log, "outcome"))

    assert outcome.result(timeout=10) == "outcome"
    assert running.result(timeout=0) == "running"
    assert (log.applied, log.commits) == (["running", "outcome"], 1)


def test_a_lingering_write_alone_commits_when_its_linger_ran_out(
    writer: GroupWriter, log: _Log
) -> None:
    lone = writer.submit(_note(log, "lone"), linger=0.05)

    assert lone.result(timeout=10) == "lone"
    assert log.commits == 1


def test_a_flush_does_not_wait_for_a_linger(writer: GroupWriter, log: _Log) -> None:
    lingering = writer.submit(_note(log, "lingering"), linger=3600.0)

    writer.flush()

    assert lingering.done()
    assert log.applied == ["lingering"]
