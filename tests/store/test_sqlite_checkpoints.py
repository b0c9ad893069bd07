"""The SQLite journal copies its log into the database off the commit path."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from echo_service.store import NewAction, SqliteStore
from echo_service.store._checkpoint import Checkpointer

from .conftest import all_events

_PAGE_FRAME = 4096 + 24
_SQLITE_DEFAULT_LOG = 1000 * _PAGE_FRAME  # where SQLite would checkpoint itself
_BIG = b"x" * 2048


def _fill(store: SqliteStore, groups: int, *, start: int = 0) -> None:
    """``groups`` commits of ten actions with 2 KiB payloads each."""
    for g in range(start, start + groups):
        store.insert(
            [
                NewAction(f"a{g}-{i}", "echo", _BIG, 0, 0.0, event_payload=b"e")
                for i in range(10)
            ]
        )


def _log_frames(path: Path) -> int:
    """Frames in the log as a fresh connection sees them."""
    conn = sqlite3.connect(path)
    try:
        frames: int = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        return frames
    finally:
        conn.close()


def _wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.005)


def test_commits_never_checkpoint_the_log_themselves(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    store = SqliteStore(path, checkpoint_interval=timedelta(hours=1))
    try:
        _fill(store, 300)  # about 6 MB of payload alone
        wal = path.with_name("echo.db-wal").stat().st_size
    finally:
        store.close()

    assert wal > 1.4 * _SQLITE_DEFAULT_LOG, (
        "a commit copied the log into the database (the log was restarted)"
    )


def test_the_log_stays_short_while_writes_keep_coming(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    store = SqliteStore(
        path,
        checkpoint_interval=timedelta(milliseconds=10),
        wal_limit_bytes=64 * 1024,
    )
    try:
        passes = store._checkpointer.passes
        _fill(store, 300)  # one commit after the other, no pause for a pass
        assert store._checkpointer.passes > passes, "no pass ran meanwhile"
        wal = path.with_name("echo.db-wal").stat().st_size
        assert len(all_events(store, page=1000)) == 3000
    finally:
        store.close()

    # Everything written is about 28 MB of log; it starts over every few
    # passes, which keeps it to a megabyte or two on a quiet machine.
    assert wal < 2 * _SQLITE_DEFAULT_LOG, f"the log grew to {wal} bytes"


def test_checkpoints_lose_nothing_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    store = SqliteStore(
        path,
        checkpoint_interval=timedelta(milliseconds=5),
        wal_limit_bytes=32 * 1024,
    )
    try:
        _fill(store, 200)
    finally:
        store.close()
    again = SqliteStore(path)
    try:
        events = all_events(again, page=1000)
        assert [e.sequence for e in events] == list(range(1, 2001))
        assert again.get("a199-9") is not None
    finally:
        again.close()


def test_a_failed_checkpoint_thread_says_so_and_gives_the_work_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ended = threading.Event()

    def broken() -> sqlite3.Connection:
        ended.set()
        raise sqlite3.OperationalError("unable to open database file")

    checkpointer = Checkpointer(
        broken,
        path=tmp_path / "echo.db",
        interval=timedelta(milliseconds=1),
        limit_bytes=1024,
        name="echo-journal-checkpoint-test",
    )
    try:
        assert ended.wait(10)
        _wait_until(lambda: checkpointer.failed)
    finally:
        checkpointer.close()

    assert any(
        r.levelno == logging.WARNING and "checkpoint" in r.getMessage()
        for r in caplog.records
    )


class _NoCheckpointThread(SqliteStore):
    """A store whose checkpoint thread cannot open its connection."""

    def _connect(self) -> sqlite3.Connection:
        if threading.current_thread().name.startswith("echo-journal-checkpoint"):
            raise sqlite3.OperationalError("unable to open database file")
        return super()._connect()


def test_without_its_checkpoint_thread_the_writer_checkpoints_in_commits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "echo.db"
    store = _NoCheckpointThread(path, checkpoint_interval=timedelta(milliseconds=1))
    try:
        _wait_until(lambda: store._checkpointer.failed)
        _fill(store, 300)
        wal = path.with_name("echo.db-wal").stat().st_size
        assert len(all_events(store, page=1000)) == 3000
    finally:
        store.close()

    assert wal < 1.4 * _SQLITE_DEFAULT_LOG
