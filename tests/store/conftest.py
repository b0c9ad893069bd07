"""Fixtures shared by the journal tests: every store, a clock, helpers."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from echo_service.store import (
    EventRecord,
    MemoryStore,
    NewAction,
    SqliteStore,
    Store,
)

KINDS = ["memory", "sqlite", "postgres"]

_INSTALL = (
    "install the Debian package postgresql (apt-get install postgresql) and "
    "the postgres extra (pip install 'echo-service[postgres]')"
)


class FakeClock:
    """Epoch seconds that move only when a test moves them."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by.total_seconds()


StoreFactory = Callable[..., Store]


@pytest.fixture(autouse=True)
def _no_journal_thread_outlives_its_test() -> Iterator[None]:
    # Only threads this test started count: a leak elsewhere in the suite is
    # that test's failure, not every store test's after it.
    before = set(threading.enumerate())
    yield
    left = [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("echo-journal") and t not in before
    ]
    assert left == [], f"journal threads still running: {left}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        found = candidates[-1] if candidates else None
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of the test session's own, in a temporary directory.

    PostgreSQL refuses to run as root, so as root the server runs as the
    ``postgres`` user the Debian package creates. fsync is off: the server's
    own durability is not what these tests are about.
    """
    try:
        import psycopg  # noqa: F401, PLC0415 - only to see whether it is there
    except ImportError:
        pytest.skip(f"psycopg is not installed: {_INSTALL}")
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip(f"PostgreSQL server binaries not found: {_INSTALL}")
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser to start PostgreSQL")
        as_user = [runuser, "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="echo-pg-"))
    if as_user:
        shutil.chown(root, user="postgres")
    data, port = root / "data", _free_port()
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "echo",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c full_page_writes=off"
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://echo@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def empty_postgres(url: str) -> None:
    """Drop the journal's tables so a test starts from nothing."""
    import psycopg  # noqa: PLC0415 - an optional dependency

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS echo_actions, echo_events, "
            "echo_idempotency_keys, echo_meta"
        )


@pytest.fixture
def open_journal(
    kind: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[StoreFactory]:
    """Opens stores of this test's kind; every one is closed at teardown.

    Calling it again after closing the previous store reopens the same data
    (for the kinds that keep any); for PostgreSQL, calling it twice gives two
    replicas of one journal.
    """
    opened: list[Store] = []
    url = ""
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        empty_postgres(url)

    def factory(
        *, key_retention: timedelta = timedelta(hours=1), **options: object
    ) -> Store:
        store: Store
        if kind == "memory":
            store = MemoryStore(key_retention=key_retention, clock=clock)
        elif kind == "postgres":
            from echo_service.store import PostgresStore  # noqa: PLC0415

            settings: dict[str, Any] = {
                "poll_interval": timedelta(milliseconds=100),
                # Tests move "now" by hand; a claim without a lease must not
                # expire under them.
                "lease": timedelta(days=1),
                **options,
            }
            store = PostgresStore(
                url, key_retention=key_retention, clock=clock, **settings
            )
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
