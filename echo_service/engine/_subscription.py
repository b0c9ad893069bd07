"""Subscriptions: journaled events fanned out to listeners with bounded buffers.

A subscription that starts ``after`` a sequence first replays from the store,
page by page, then switches to live events. It is registered for live events
*before* the replay starts, so every event is either in the store when a
page is read or arrives live after; live events at or below the last
delivered sequence are dropped at the switch. No gap, no duplicate.

Who reads the store. A blocking ``get`` (a timeout other than zero) reads
replay pages on its own thread. ``get(0)`` never does: it returns None while
a page is due, and ``needs_fill`` tells the owner to call ``fill`` somewhere
blocking is allowed (a server runs it on its pool, never on its event loop).
``fill`` calls ``notify`` when it is done.

``notify`` (optional) is called, from whatever thread made it so, whenever
events become available, the buffer overflows, the engine closes or a page
was read. It must be quick and must not block; it is never called with the
subscription's lock held.

While replaying, an overflowing live buffer is simply emptied (those events
are in the store and the replay will read them). A page that ended the replay
counts only if no live event was dropped while it was read; otherwise the
replay reads again. Once live, an overflow ends the subscription with
``SlowConsumer``: the reader resumes with ``after=last_sequence``.

The action-id filter can grow (``add_action_ids``), so a session can listen
to the actions it assigns: add an id before the action is journaled and
none of its events is missed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from echo_service import errors
from echo_service.engine._model import ActionEvent
from echo_service.store import State

__all__ = ["Subscription"]

_PAGE = 256


class _Addressed(Protocol):
    """What the filter looks at: an event, or the journal's record of one."""

    @property
    def action_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> State: ...


Notify = Callable[[], None]


class Subscription:
    """An iterator of ``ActionEvent``; every method is thread-safe."""

    def __init__(
        self,
        *,
        after: int | None,
        action_ids: frozenset[str],
        names: frozenset[str],
        states: frozenset[State] = frozenset(),
        buffer: int,
        replay: Callable[[int, int, frozenset[str], frozenset[str]], list[ActionEvent]],
        on_close: Callable[[Subscription], None],
        notify: Notify | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError("a subscription needs a buffer of at least one event")
        # Replaced whole (never mutated) under _cond, so the writer thread's
        # unlocked read in ``matches`` sees one consistent set.
        self.action_ids = action_ids
        self.names = names
        self.states = states
        self._capacity = buffer
        self._replay_page = replay
        self._on_close = on_close
        self._notify = notify
        # _cond guards everything below. The store's writer thread offers live
        # events; the reader takes them; ``fill`` may run on a third thread.
        self._cond = threading.Condition()
        self._live: deque[ActionEvent] = deque()
        self._replayed: deque[ActionEvent] = deque()
        self._replaying = after is not None
        self._read_to = after or 0  # the replay has read every event up to it
        self._filling = False  # one page read at a time
        self._drops = 0  # live events emptied while replaying, ever
        self._last = after or 0
        self._overflowed = False
        self._closed = False
        self._engine_closed = False

    @property
    def last_sequence(self) -> int:
        """The sequence of the last event handed to the reader."""
        return self._last

    def matches(self, event: _Addressed) -> bool:
        """Whether the filter lets ``event`` (or a journal record) through."""
        ids = self.action_ids
        return (
            (not ids or event.action_id in ids)
            and (not self.names or event.name in self.names)
            and (not self.states or event.state in self.states)
        )

    def add_action_ids(self, action_ids: Iterable[str]) -> None:
        """Widen the id filter. A subscription made with no ids takes every
        action and stays so; one made with ids only ever grows."""
        with self._cond:
            if self.action_ids:
                self.action_ids = self.action_ids | frozenset(action_ids)

    # -- fed by the engine (store writer thread) ------------------------

    def offer(self, events: list[ActionEvent]) -> None:
        with self._cond:
            if self._closed or self._overflowed:
                return
            added = False
            for event in events:
                if not self.matches(event):
                    continue
                if len(self._live) >= self._capacity:
                    if self._replaying:
                        self._live.clear()  # the replay will read them back
                        self._drops += 1
                    else:
                        self._overflowed = True
                        added = True
                        break
                self._live.append(event)
                added = True
            if not added:
                return
            self._cond.notify_all()
        self._wake()

    def engine_closed(self) -> None:
        with self._cond:
            self._engine_closed = True
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        notify = self._notify
        if notify is not None:
            notify()

    # -- replay -------------------------------------------------------------

    @property
    def needs_fill(self) -> bool:
        """True when ``get(0)`` waits for ``fill`` to read a replay page."""
        with self._cond:
            return (
                self._replaying
                and not self._replayed
                and not self._filling
                and not self._closed
            )

    def fill(self) -> None:
        """Read the next replay page from the store, if one is due. Blocks on
        the store; never call it on an event loop. Calls ``notify`` after."""
        with self._cond:
            if not self._replaying or self._replayed or self._filling or self._closed:
                return
            self._filling = True
            start = self._read_to
            drops = self._drops
        try:
            page = self._replay_page(start, _PAGE, self.action_ids, self.names)
        finally:
            with self._cond:
                self._filling = False
        with self._cond:
            # The journal filters ids and names; states are filtered here.
            states = self.states
            fresh = [
                e
                for e in page
                if e.sequence > self._last and (not states or e.state in states)
            ]
            self._replayed.extend(fresh)
            if page:
                self._read_to = max(self._read_to, page[-1].sequence)
            # A short page read everything committed before it; whatever came
            # later was offered live, unless a live overflow emptied it while
            # the page was read.
            if len(page) < _PAGE and self._drops == drops:
                self._replaying = False
            self._cond.notify_all()
        self._wake()

    # -- read by the listener -------------------------------------------

    def get(self, timeout: float | None = None) -> ActionEvent | None:
        """The next event, or None after ``timeout`` seconds without one.

        ``get(0)`` never blocks and never reads the store (see ``needs_fill``).
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
                if replaying and (timeout == 0 or self._filling):
                    if timeout == 0:
                        return None
                    # Another thread reads the page: wait for it.
                    if not self._cond.wait_for(
                        lambda: not self._filling or self._closed, timeout
                    ):
                        return None
                    continue
            if replaying:
                self.fill()
                continue
            with self._cond:
                event = self._next_live()
                if event is not None:
                    return event
                if timeout == 0:
                    return None
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
        self._wake()

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
