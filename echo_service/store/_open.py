"""Choosing a journal from configuration."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from echo_service import errors

from ._base import Store
from ._memory import MemoryStore
from ._sqlite import SqliteStore

__all__ = ["DATABASE_FILE", "open_store"]

DATABASE_FILE = "echo.db"
"""The SQLite journal's file name inside the data directory."""


def open_store(
    url_or_kind: str,
    *,
    data_dir: Path,
    key_retention: timedelta,
    busy_timeout: timedelta = timedelta(seconds=5),
    clock: Callable[[], float] = time.time,
) -> Store:
    """Open the journal that ``url_or_kind`` names.

    Args:
        url_or_kind: ``"memory"`` (nothing survives the process), ``"sqlite"``
            (the file ``echo.db`` in ``data_dir``), or a
            ``postgresql://`` URL for a journal shared by several replicas.
        data_dir: where the SQLite journal lives; created if missing.
        key_retention: how long an idempotency key recognises a repeat.
        busy_timeout: how long a write waits for a database lock held
            elsewhere before failing with ``Unavailable``.
        clock: epoch seconds; tests inject their own.

    Raises:
        InvalidArgument: the kind or URL is not one Echo knows.
        StoreError, Unavailable: the journal cannot be opened (see the store).
    """
    kind = url_or_kind.strip()
    if kind == "memory":
        return MemoryStore(key_retention=key_retention, clock=clock)
    if kind == "sqlite":
        return SqliteStore(
            data_dir / DATABASE_FILE,
            key_retention=key_retention,
            busy_timeout=busy_timeout,
            clock=clock,
        )
    if kind.startswith(("postgresql://", "postgres://")):
        # Imported here: psycopg is an optional extra.
        from ._postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(
            kind, key_retention=key_retention, busy_timeout=busy_timeout, clock=clock
        )
    raise errors.InvalidArgument(
        f"unknown journal {url_or_kind!r}: expected 'memory', 'sqlite' or a "
        "postgresql:// URL",
        [errors.FieldViolation("store", "not a known journal kind or URL")],
    )
