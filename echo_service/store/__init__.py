"""The journal of actions and events: the only part of Echo that touches storage.

``open_store`` picks an implementation from configuration; every one follows
the ``Store`` protocol and its concurrency contract (see ``_base``).
"""

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

__all__ = [
    "DATABASE_FILE",
    "ActionRecord",
    "EventListener",
    "EventRecord",
    "Inserted",
    "MemoryStore",
    "NewAction",
    "SqliteStore",
    "State",
    "Store",
    "Transition",
    "open_store",
]
