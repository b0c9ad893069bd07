"""The durable journal against the same work held in memory.

Scenarios:

* ``insert_single_per_s``: actions per second when 8 threads each insert one
  action per call (like 8 clients calling Assign). SqliteStore, durable with
  ``synchronous=FULL``, against MemoryStore in the same run; ratio is
  sqlite/memory, so the cost of durability reads as the gap below 1.
* ``insert_single_actions_per_commit``: how many of those single inserts
  shared one commit (one sync); the naive baseline syncs once per action.
* ``insert_bulk_per_s``: actions per second when one thread inserts batches
  of 1000 actions; same pair of stores.
* ``rss_1m_queued_mb``: resident memory of a process that has just inserted
  one million actions into SqliteStore, against the same actions held as
  plain Python dicts in a list (what a journal that keeps its queue in memory
  would need at least). Ratio baseline/echo.
* ``recover_1m_s``: seconds for a fresh process to open that journal,
  ``recover`` it and claim the first 100 actions, against loading every
  waiting row into memory (the naive recovery). Ratio baseline/echo.

``quick`` keeps every metric name but shrinks the counts (the "1m" metrics
then hold 20 000 actions): it proves the scenarios run, nothing more. The
memory and recovery scenarios run in child processes so that each measures
a process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from echo_service.store import MemoryStore, NewAction, SqliteStore, Store

from ._harness import Record, python_env, record

__all__ = ["run"]

SCENARIO = "journal"
THREADS = 8
PAYLOAD = b"\x0a\x05hello\x10\x2a" * 8  # 64 bytes, like small encoded args


def _action(index: int) -> NewAction:
    return NewAction(
        id=uuid.uuid4().hex,
        name="echo",
        payload=PAYLOAD,
        priority=index % 4,
        due_at=0.0,
        event_payload=b"accepted",
    )


def _single_inserts(store: Store, total: int) -> float:
    """Actions per second, ``THREADS`` threads inserting one action per call."""
    per_thread = total // THREADS
    start_gate = threading.Barrier(THREADS + 1)

    def worker() -> None:
        start_gate.wait()
        for i in range(per_thread):
            store.insert([_action(i)])

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return per_thread * THREADS / (time.perf_counter() - started)


def _bulk_inserts(store: Store, batches: int) -> float:
    """Actions per second, one thread inserting batches of 1000."""
    started = time.perf_counter()
    for _ in range(batches):
        store.insert([_action(i) for i in range(1000)])
    return batches * 1000 / (time.perf_counter() - started)


def _best_of(
    repeats: int, make: Callable[[Path], Store], measure: Callable[[Store], float]
) -> tuple[float, float]:
    """Best rate over fresh stores, and inserts per commit in that run."""
    best, per_commit = 0.0, 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="echo-bench-") as tmp:
            store = make(Path(tmp))
            try:
                rate = measure(store)
                commits = getattr(store, "commits", 0)
            finally:
                store.close()
        if rate > best:
            best = rate
            per_commit = _inserted_per_commit(store, commits)
    return best, per_commit


def _inserted_per_commit(store: Store, commits: int) -> float:
    # waiting() still answers after close for both stores: it is a counter.
    return store.waiting() / commits if commits else 0.0


def _sqlite(tmp: Path) -> Store:
    return SqliteStore(tmp / "echo.db")


def _memory(tmp: Path) -> Store:
    return MemoryStore()


# -- child processes for memory and recovery --------------------------------------

_FILL = """
import gc, json, sys, time, uuid
from pathlib import Path
from echo_service.store import NewAction, SqliteStore

path, count = Path(sys.argv[1]), int(sys.argv[2])
payload = b"\\x0a\\x05hello\\x10\\x2a" * 8
store = SqliteStore(path)
started = time.perf_counter()
for start in range(0, count, 1000):
    store.insert([NewAction(id=uuid.uuid4().hex, name="echo", payload=payload,
                            priority=i % 4, due_at=0.0, event_payload=b"accepted")
                  for i in range(start, min(count, start + 1000))])
elapsed = time.perf_counter() - started
gc.collect()
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
print(json.dumps({"rss_kb": int(rss.split()[1]), "insert_s": elapsed,
                  "waiting": store.waiting()}))
store.close()
"""

_DICTS = """
import gc, json, sys, time, uuid
count = int(sys.argv[1])
payload = b"\\x0a\\x05hello\\x10\\x2a" * 8
now = time.time()
queued = [{"id": uuid.uuid4().hex, "name": "echo", "payload": payload,
           "state": "accepted", "priority": i % 4, "due_at": 0.0, "attempt": 0,
           "idempotency_key": None, "parent_id": None, "created_at": now,
           "updated_at": now, "outcome": None} for i in range(count)]
gc.collect()
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
print(json.dumps({"rss_kb": int(rss.split()[1]), "held": len(queued)}))
"""

_RECOVER = """
import json, sys, time
from pathlib import Path
from echo_service.store import SqliteStore

started = time.perf_counter()
store = SqliteStore(Path(sys.argv[1]))
store.recover("bench")
first = store.claim(now=time.time(), limit=100, owner="bench")
elapsed = time.perf_counter() - started
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
print(json.dumps({"recover_s": elapsed, "claimed": len(first),
                  "waiting": store.waiting(), "rss_kb": int(rss.split()[1])}))
store.close()
"""

_LOAD_ALL = """
import json, sqlite3, sys, time
started = time.perf_counter()
conn = sqlite3.connect(sys.argv[1])
conn.row_factory = sqlite3.Row
rows = [dict(r) for r in conn.execute("SELECT * FROM actions WHERE done = 0")]
elapsed = time.perf_counter() - started
print(json.dumps({"load_s": elapsed, "rows": len(rows)}))
"""


def _child(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=1800,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _queued(count: int) -> list[Record]:
    with tempfile.TemporaryDirectory(prefix="echo-bench-") as tmp:
        path = Path(tmp) / "echo.db"
        filled = _child(_FILL, str(path), str(count))
        held = _child(_DICTS, str(count))
        recovered = _child(_RECOVER, str(path))
        loaded = _child(_LOAD_ALL, str(path))
    if filled["waiting"] != count or recovered["waiting"] != count:
        raise RuntimeError(f"journal lost actions: {filled} {recovered}")
    return [
        record(
            SCENARIO,
            "rss_1m_queued_mb",
            echo=filled["rss_kb"] / 1024,
            baseline=held["rss_kb"] / 1024,
            baseline_name="same actions as dicts in a list",
            lower_is_better=True,
        ),
        record(
            SCENARIO,
            "recover_1m_s",
            echo=recovered["recover_s"],
            baseline=loaded["load_s"],
            baseline_name="load every waiting row",
            lower_is_better=True,
        ),
    ]


def run(quick: bool) -> list[Record]:
    """Measure the journal; ``quick`` shrinks every count."""
    single_total = 1_600 if quick else 16_000
    bulk_batches = 10 if quick else 100
    queued = 20_000 if quick else 1_000_000
    repeats = 1 if quick else 2

    sqlite_single, per_commit = _best_of(
        repeats, _sqlite, lambda s: _single_inserts(s, single_total)
    )
    memory_single, _ = _best_of(
        repeats, _memory, lambda s: _single_inserts(s, single_total)
    )
    sqlite_bulk, _ = _best_of(
        repeats, _sqlite, lambda s: _bulk_inserts(s, bulk_batches)
    )
    memory_bulk, _ = _best_of(
        repeats, _memory, lambda s: _bulk_inserts(s, bulk_batches)
    )
    return [
        record(
            SCENARIO,
            "insert_single_per_s",
            echo=sqlite_single,
            baseline=memory_single,
            baseline_name="MemoryStore",
        ),
        record(
            SCENARIO,
            "insert_single_actions_per_commit",
            echo=per_commit,
            baseline=1.0,
            baseline_name="one sync per action",
        ),
        record(
            SCENARIO,
            "insert_bulk_per_s",
            echo=sqlite_bulk,
            baseline=memory_bulk,
            baseline_name="MemoryStore",
        ),
        *_queued(queued),
    ]


if __name__ == "__main__":
    for line in run(quick="--quick" in sys.argv):
        print(json.dumps(line))
