"""The journal of actions and events: the only part of Echo that touches storage.

``open_store`` picks an implementation from configuration; every one follows
the ``Store`` protocol and its concurrency contract (see ``_base``).
``PostgresStore`` needs the ``postgres`` extra (psycopg) and is imported only
when first used.
"""

from typing import TYPE_CHECKING

from ._base import (
    ActionRecord,
    EventListener,
    EventRecord,
    Inserted,
    NewAction,
    State,
    Store,
    Transition,
)
from ._memory import MemoryStore
from ._open import DATABASE_FILE, open_store
from ._sqlite import SqliteStore

if TYPE_CHECKING:
    from ._postgres import PostgresStore

__all__ = [
    "DATABASE_FILE",
    "ActionRecord",
    "EventListener",
    "EventRecord",
    "Inserted",
    "MemoryStore",
    "NewAction",
    "PostgresStore",
    "SqliteStore",
    "State",
    "Store",
    "Transition",
    "open_store",
]


def __getattr__(name: str) -> object:
    if name == "PostgresStore":
        from ._postgres import PostgresStore  # noqa: PLC0415 - optional extra

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
