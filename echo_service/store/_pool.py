"""A small pool of database connections that any thread may borrow."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from echo_service import errors

__all__ = ["Pool"]


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class Pool(Generic[C]):
    """Connections opened on demand; up to ``keep`` idle ones are kept.

    ``_lock`` guards ``_idle`` and ``_closed``. A borrowed connection belongs
    to its borrower until it is given back; one given back by a block that
    raised is closed rather than kept, as it may be broken.
    """

    def __init__(self, connect: Callable[[], C], *, keep: int) -> None:
        self._connect = connect
        self._keep = keep
        self._lock = threading.Lock()
        self._idle: list[C] = []
        self._closed = False

    @contextlib.contextmanager
    def borrow(self) -> Iterator[C]:
        with self._lock:
            if self._closed:
                raise errors.Unavailable("the journal is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        healthy = False
        try:
            yield conn
            healthy = True
        finally:
            keep = False
            with self._lock:
                if healthy and not self._closed and len(self._idle) < self._keep:
                    self._idle.append(conn)
                    keep = True
            if not keep:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
