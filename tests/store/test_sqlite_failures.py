"""A journal that cannot work says so clearly: at open, or on the call.

Some conditions need more than a file to set up. The suite runs as root, and
root ignores permission bits, so "no permission" runs the store in a child
process without the capabilities that let root ignore them (``setpriv``); a
read-only file system and a full disk run it in a child inside a private
mount namespace (``unshare --mount``) on a read-only bind mount or a tiny
tmpfs. Those tests skip, saying why, where the tools or privileges are
missing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from echo_service import errors
from echo_service.store import NewAction, SqliteStore, State, Transition

from .conftest import new_action

REPO = Path(__file__).resolve().parents[2]

# Opens the journal given on the command line and inserts batches until one
# fails; prints one JSON line describing what happened.
_CHILD = """
import json, resource, signal, sys
from pathlib import Path
from echo_service import errors
from echo_service.store import NewAction, SqliteStore

path, file_limit = Path(sys.argv[1]), int(sys.argv[2])
if file_limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG, not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
try:
    store = SqliteStore(path)
except errors.EchoError as exc:
    print(json.dumps({"stage": "open", "error": type(exc).__name__,
                      "message": str(exc)}))
    sys.exit(0)
acked, failed = [], None
for batch in range(100_000):
    ids = [f"a{batch}-{i}" for i in range(10)]
    try:
        store.insert([NewAction(id=x, name="echo", payload=b"x" * 2000,
                                priority=0, due_at=0.0) for x in ids])
    except errors.EchoError as exc:
        failed = exc
        break
    acked.extend(ids)
report = {"stage": "write", "error": type(failed).__name__,
          "message": str(failed), "healthy": store.healthy(),
          "acked": len(acked), "waiting": store.waiting(),
          "present": sum(store.get(x) is not None for x in acked),
          "failed_batch_present": store.get(ids[0]) is not None}
store.close()
print(json.dumps(report))
"""


def _run_child(
    db_path: Path,
    *,
    file_limit: int = 0,
    prefix: tuple[str, ...] = (),
    **options: Any,
) -> dict[str, Any]:
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _CHILD, str(db_path), str(file_limit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
        **options,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _private_mounts(setup: str, directory: Path) -> tuple[str, ...]:
    """A command prefix: a private mount namespace where ``setup`` ran first.

    ``setup`` is shell run with ``$1`` set to ``directory``; the command
    that follows the prefix is then exec'd in the same namespace.
    """
    return (
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'{setup} && shift && exec "$@"',
        "sh",
        str(directory),
    )


def _needs_private_mounts() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(
            "cannot create a mount namespace here (needs root or "
            f"CAP_SYS_ADMIN): {probe.stderr.decode().strip()}"
        )


# -- corrupt files -------------------------------------------------------------


def test_a_file_that_is_not_a_database_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    path.write_bytes(b"this is not a journal\n" * 4096)

    with pytest.raises(errors.StoreError, match="corrupt or not an Echo database"):
        SqliteStore(path)

    # The failed open let go of the directory: a good file opens again.
    path.unlink()
    SqliteStore(path).close()


def _fill(path: Path, count: int) -> None:
    store = SqliteStore(path)
    try:
        for batch in range(count // 200):
            store.insert(
                [
                    NewAction(
                        id=f"a{batch}-{i}",
                        name="echo",
                        payload=b"x" * 300,
                        priority=0,
                        due_at=0.0,
                    )
                    for i in range(200)
                ]
            )
    finally:
        store.close()


def _damage(path: Path, table: str, *, spare_last: bool = True) -> None:
    """Overwrite the leaf pages of one table with garbage."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            page
            for (page,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' "
                "ORDER BY pageno",
                (table,),
            )
        ]
    conn.close()
    assert len(leaves) > (2 if spare_last else 0)
    with path.open("r+b") as f:
        for page in leaves[:-1] if spare_last else leaves:
            f.seek(page_size * (page - 1))
            f.write(os.urandom(page_size))


def test_a_journal_with_damaged_index_pages_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    _fill(path, 1_000)
    # Open counts unfinished actions through one of these two indexes.
    _damage(path, "actions_claim", spare_last=False)
    _damage(path, "actions_due", spare_last=False)

    with pytest.raises(errors.StoreError, match="corrupt"):
        SqliteStore(path)


def test_damaged_pages_found_by_a_call_fail_it_and_keep_the_store_unhealthy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "echo.db"
    _fill(path, 1_000)
    _damage(path, "actions")
    store = SqliteStore(path)  # open reads only indexes and the last pages
    try:
        assert store.healthy()

        with pytest.raises(errors.StoreError, match="corrupt"):
            store.record([Transition("a0-0", State.RUNNING)]).result(timeout=10)
        assert not store.healthy()
        with pytest.raises(errors.StoreError, match="corrupt"):
            store.get("a0-1")
        # Writes elsewhere in the file may still work; health stays False.
        store.insert([new_action()])
        assert not store.healthy()
    finally:
        store.close()


# -- where the file cannot be created or written -----------------------------------


def test_a_data_dir_below_a_regular_file_fails_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    with pytest.raises(errors.StoreError, match="cannot create journal directory"):
        SqliteStore(blocker / "data" / "echo.db")


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_a_data_dir_the_user_may_not_write_fails_at_open(
    tmp_path: Path, existing: bool
) -> None:
    data = tmp_path / "data"
    if existing:
        _fill(data / "echo.db", 200)
        (data / "echo.db").chmod(0o444)
        locked_dir = data
    else:
        locked_dir = tmp_path
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        # Root passes permission bits by capability; drop those capabilities
        # (the directory is root's own, so plain owner bits then apply).
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")
    locked_dir.chmod(0o555)
    try:
        report = _run_child(data / "echo.db", prefix=prefix)
    finally:
        locked_dir.chmod(0o755)

    assert report["stage"] == "open"
    assert report["error"] == "StoreError"
    assert (
        "Permission denied" in report["message"]  # the directory or lock file
        or "cannot be written" in report["message"]  # the database file
    )


def test_a_journal_on_a_read_only_file_system_fails_at_open(tmp_path: Path) -> None:
    _needs_private_mounts()
    data = tmp_path / "data"
    _fill(data / "echo.db", 200)

    report = _run_child(
        data / "echo.db",
        prefix=_private_mounts(
            'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"', data
        ),
    )

    assert report["stage"] == "open"
    assert report["error"] == "StoreError"
    assert "Read-only file system" in report["message"]


# -- a full disk ------------------------------------------------------------------


def _assert_failed_cleanly(report: dict[str, Any]) -> None:
    assert report["stage"] == "write", report
    assert report["error"] == "StoreError"
    assert report["acked"] > 0
    assert not report["healthy"]
    # Every acknowledged action is there; nothing of the failed batch is.
    assert report["present"] == report["acked"] == report["waiting"]
    assert not report["failed_batch_present"]


def test_a_full_disk_fails_the_write_clearly_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    _needs_private_mounts()
    data = tmp_path / "data"
    data.mkdir()

    report = _run_child(
        data / "echo.db",
        prefix=_private_mounts('mount -t tmpfs -o size=1m echo-full "$1"', data),
    )

    _assert_failed_cleanly(report)
    assert "is full" in report["message"]


def test_a_file_size_limit_fails_the_write_clearly_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    # Runs everywhere (no privileges): the kernel refuses writes past
    # RLIMIT_FSIZE with EFBIG, which SQLite reports as full or as an I/O error.
    report = _run_child(tmp_path / "data" / "echo.db", file_limit=1 << 20)

    _assert_failed_cleanly(report)
    assert "is full" in report["message"] or "I/O error" in report["message"]


# -- locks -------------------------------------------------------------------------


def _hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_a_database_locked_by_another_connection_fails_open_after_the_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "echo.db"
    SqliteStore(path).close()
    holder = _hold_exclusive_lock(path)
    try:
        started = time.monotonic()
        with pytest.raises(errors.Unavailable, match="locked"):
            SqliteStore(path, busy_timeout=timedelta(milliseconds=200))
        assert time.monotonic() - started < 5
    finally:
        holder.rollback()
        holder.close()

    SqliteStore(path).close()


def test_writes_fail_while_another_connection_holds_a_lock_and_work_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "echo.db"
    store = SqliteStore(path, busy_timeout=timedelta(milliseconds=200))
    try:
        kept = new_action()
        store.insert([kept])
        holder = _hold_exclusive_lock(path)
        try:
            with pytest.raises(errors.Unavailable, match="locked") as raised:
                store.insert([new_action()])
            assert raised.value.retry_after is not None
            assert not store.healthy()
            assert store.get(kept.id) is not None  # WAL readers still read
        finally:
            holder.rollback()
            holder.close()

        store.insert([new_action()])
        assert store.healthy()
        assert [e.sequence for e in store.events_after(0, limit=10)] == [1, 2]
    finally:
        store.close()
