"""WAL checkpoints for the SQLite journal, kept off the commit path.

SQLite's own policy checkpoints inside the ``COMMIT`` that pushes the WAL past
``wal_autocheckpoint`` pages: that commit, and every caller waiting on its
group, pays for copying the whole log into the database and syncing it (the
commit p99 was twenty times its p50). The store turns that off for its write
connection and splits the work in two:

* This thread, from a connection of its own, runs a ``PASSIVE`` checkpoint
  every ``interval``: it copies the log into the database and syncs it
  without taking the write lock, so the writer commits meanwhile. That is
  nearly all of the work.
* SQLite starts the log over (and so keeps it short, and its appends cheap)
  only once a checkpoint has copied *all* of it before the next write begins,
  which a passive checkpoint racing a busy writer never manages. So when the
  log is longer than ``limit_bytes`` after a pass, the thread sets ``due``
  and the writer, between two groups, checkpoints the few frames committed
  during the pass itself. With nobody appending meanwhile that completes, and
  the next group starts the log from the beginning.

Durability: the checkpoint connection runs with ``synchronous=FULL`` like the
writer, so the database file is synced before any part of the log is reused.

Ownership: the thread owns its connection. ``due`` is set by the thread and
cleared by the writer (a plain attribute: a late read only moves the writer's
part to its next group).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

__all__ = ["Checkpointer"]

logger = logging.getLogger(__name__)

_FRAME_HEADER = 24
"""Bytes before each page in the WAL file."""


class Checkpointer:
    """A thread that folds the WAL into the database every ``interval``."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        path: Path,
        interval: timedelta,
        limit_bytes: int,
        name: str,
    ) -> None:
        self._connect = connect
        self._path = path
        self._interval = interval.total_seconds()
        self._limit = limit_bytes
        self._stop = threading.Event()
        self.due = False
        """Set when the writer should finish a checkpoint between groups."""
        self.passes = 0
        """Passive checkpoints this thread has run."""
        self.failed = False
        """Set once the thread gave up; the writer then checkpoints itself."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        frames_limit = 0
        try:
            while not self._stop.wait(self._interval):
                if conn is None:
                    conn = self._connect()
                    conn.execute("PRAGMA synchronous = FULL")
                    page = conn.execute("PRAGMA page_size").fetchone()[0]
                    frames_limit = max(1, self._limit // (page + _FRAME_HEADER))
                _, logged, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.passes += 1
                if logged >= frames_limit:
                    self.due = True
        except sqlite3.Error:
            # Without this thread the writer checkpoints inside its commits,
            # as SQLite does by default: slower commits, the same journal.
            logger.warning(
                "the checkpoint thread of %s stopped; commits checkpoint again",
                self._path,
                exc_info=True,
            )
            self.failed = True
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Stop and join the thread; the store checkpoints at close itself."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
