"""Subscriptions: journaled events fanned out to listeners with bounded buffers.

A subscription that starts ``after`` a sequence first replays from the store,
page by page on the reader's own thread, then switches to live events. It is
registered for live events *before* the replay starts, so every event is
either still in the store when the replay reads or arrives live after; live
events at or below the last delivered sequence are dropped at the switch. No
gap, no duplicate.

While replaying, an overflowing live buffer is simply emptied (those events
are in the store and the replay will read them). Once live, an overflow ends
the subscription with ``SlowConsumer``: the reader resumes with
``after=last_sequence``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

from echo_service import errors
from echo_service.engine._model import ActionEvent

__all__ = ["Subscription"]

_PAGE = 256


class Subscription:
    """An iterator of ``ActionEvent``; ``get`` and ``close`` are thread-safe."""

    def __init__(
        self,
        *,
        after: int | None,
        action_ids: frozenset[str],
        names: frozenset[str],
        buffer: int,
        replay: Callable[[int, int, frozenset[str], frozenset[str]], list[ActionEvent]],
        on_close: Callable[[Subscription], None],
    ) -> None:
        if buffer < 1:
            raise ValueError("a subscription needs a buffer of at least one event")
        self.action_ids = action_ids
        self.names = names
        self._capacity = buffer
        self._replay_page = replay
        self._on_close = on_close
        # _cond guards everything below. The store's writer thread offers live
        # events; the reader takes them.
        self._cond = threading.Condition()
        self._live: deque[ActionEvent] = deque()
        self._replayed: deque[ActionEvent] = deque()
        self._replaying = after is not None
        self._last = after or 0
        self._overflowed = False
        self._closed = False
        self._engine_closed = False

    @property
    def last_sequence(self) -> int:
        """The sequence of the last event handed to the reader."""
        return self._last

    def matches(self, event: ActionEvent) -> bool:
        return (not self.action_ids or event.action_id in self.action_ids) and (
            not self.names or event.name in self.names
        )

    # -- fed by the engine (store writer thread) ------------------------

    def offer(self, events: list[ActionEvent]) -> None:
        with self._cond:
            if self._closed or self._overflowed:
                return
            for event in events:
                if not self.matches(event):
                    continue
                if len(self._live) >= self._capacity:
                    if self._replaying:
                        self._live.clear()  # the replay will read them back
                    else:
                        self._overflowed = True
                        break
                self._live.append(event)
            self._cond.notify_all()

    def engine_closed(self) -> None:
        with self._cond:
            self._engine_closed = True
            self._cond.notify_all()

    # -- read by the listener -------------------------------------------

    def get(self, timeout: float | None = None) -> ActionEvent | None:
        """The next event, or None after ``timeout`` seconds without one.

        Raises ``SlowConsumer`` once the buffer overflowed and every event
        before the overflow was read, and ``Unavailable`` once the engine
        closed and the buffer is empty.
        """
        while True:
            with self._cond:
                if self._closed:
                    raise errors.Unavailable("the subscription is closed")
                if self._replayed:
                    return self._deliver(self._replayed.popleft())
                replaying = self._replaying
            if replaying:
                page = self._replay_page(self._last, _PAGE, self.action_ids, self.names)
                with self._cond:
                    if page:
                        self._replayed.extend(
                            e for e in page if e.sequence > self._last
                        )
                        continue
                    self._replaying = False  # the store has nothing newer
                continue
            with self._cond:
                event = self._next_live()
                if event is not None:
                    return event
                if not self._cond.wait_for(self._ready, timeout):
                    return None

    def _ready(self) -> bool:
        return (
            bool(self._live) or self._overflowed or self._closed or self._engine_closed
        )

    def _next_live(self) -> ActionEvent | None:
        """Caller holds _cond."""
        while self._live:
            event = self._live.popleft()
            if event.sequence > self._last:
                return self._deliver(event)
        if self._overflowed:
            raise errors.SlowConsumer(
                "the listener fell behind its buffer", last_sequence=self._last
            )
        if self._engine_closed:
            raise errors.Unavailable("the engine stopped")
        return None

    def _deliver(self, event: ActionEvent) -> ActionEvent:
        self._last = event.sequence
        return event

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._live.clear()
            self._replayed.clear()
            self._cond.notify_all()
        self._on_close(self)

    def __iter__(self) -> Iterator[ActionEvent]:
        return self

    def __next__(self) -> ActionEvent:
        try:
            event = self.get(None)
        except errors.Unavailable:
            raise StopIteration from None
        assert event is not None
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
