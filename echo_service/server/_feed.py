"""Engine subscriptions read from asyncio, without a thread per stream.

An engine ``Subscription`` is filled on the journal's writer thread. A stream
handler runs on the event loop and must never block it, so a ``Feed`` moves
events from the subscription into a small asyncio queue:

* The engine calls the feed's ``notify`` (from its own thread) when events
  arrive or the subscription ends. ``notify`` only schedules ``_pump`` on the
  loop, at most once until that pump ran, so a burst of commits costs one
  wake-up of the loop per feed, not one per event.
* ``_pump`` takes what is ready with non-blocking ``get(0)`` calls, which
  never read the journal. While the subscription replays from the journal,
  ``get(0)`` asks for a page instead (``needs_fill``) and the feed reads it
  with ``fill`` on the server's pool (``run_blocking``); ``fill`` notifies
  when the page is in. One page is read at a time.

At most ``window`` events wait in the asyncio queue. A consumer that does not
keep up leaves the rest in the subscription's own bounded buffer, and when
that overflows the engine raises ``SlowConsumer``, which the feed hands on in
order after the events before it. Memory stays bounded.

Ownership: the loop owns the queue and every attribute; the only thing other
threads touch is ``_wake_pending``, a flag ``notify`` sets and the loop
clears (a lost race only costs one extra, harmless pump).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from echo_service import errors
from echo_service.engine import ActionEvent, State

__all__ = ["CLOSED", "TIMEOUT", "Feed", "StreamFilter", "open_feed"]

logger = logging.getLogger(__name__)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


TIMEOUT: Final = _Marker("TIMEOUT")
"""``next`` found no event within its timeout."""
CLOSED: Final = _Marker("CLOSED")
"""``interrupt`` was called: the owner wants the stream to end."""

Item = ActionEvent | _Marker
RunBlocking = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class StreamFilter:
    """Which events a feed passes; an empty field passes all."""

    action_ids: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    states: frozenset[State] = frozenset()


async def open_feed(
    engine: Any,
    *,
    after: int | None,
    only: StreamFilter = StreamFilter(),
    buffer: int,
    window: int = 256,
    run_blocking: RunBlocking,
) -> Feed:
    """Subscribe and return a running feed.

    ``run_blocking(fn)`` runs ``fn`` off the loop and returns an awaitable:
    the feed reads replay pages with it. Subscribing itself does not block.
    """
    loop = asyncio.get_running_loop()
    feed = Feed(loop, window=window, only=only, run_blocking=run_blocking)
    subscription = engine.subscribe(
        after=after,
        action_ids=only.action_ids,
        names=only.names,
        states=only.states,
        buffer=buffer,
        notify=feed.notify,
    )
    feed.attach(subscription)
    return feed


class Feed:
    """One subscription's events, awaited on the loop. See the module doc."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        window: int,
        only: StreamFilter = StreamFilter(),
        run_blocking: RunBlocking,
    ) -> None:
        self.only = only
        self._loop = loop
        self._window = window
        self._run_blocking = run_blocking
        self._queue: asyncio.Queue[Item | BaseException] = asyncio.Queue()
        self._subscription: Any = None
        self._wake_pending = False
        self._filling: asyncio.Task[None] | None = None
        self._failed = False  # the subscription raised; nothing more comes
        self._closed = False
        self.delivered = 0
        """The highest sequence handed out by ``next``."""

    # -- wiring ------------------------------------------------------------

    @property
    def subscription(self) -> Any:
        return self._subscription

    def attach(self, subscription: Any) -> None:
        self._subscription = subscription
        self._pump()

    def notify(self) -> None:
        """The engine's callback: events are ready. Any thread; never blocks."""
        if self._wake_pending:
            return
        self._wake_pending = True
        # A closed loop means the server is gone; nobody waits any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._wake_pending = False
        self._pump()

    def _pump(self) -> None:
        """Move ready events into the queue, up to the window. Loop only."""
        subscription = self._subscription
        if subscription is None or self._closed:
            return
        queue = self._queue
        while not self._failed and queue.qsize() < self._window:
            try:
                event = subscription.get(0)
            except BaseException as exc:  # handed to the consumer in order
                self._failed = True
                queue.put_nowait(exc)
                return
            if event is None:
                if self._filling is None and getattr(subscription, "needs_fill", False):
                    self._filling = self._loop.create_task(self._fill())
                return
            queue.put_nowait(event)

    async def _fill(self) -> None:
        """Read one replay page on the pool; the subscription notifies."""
        try:
            await self._run_blocking(self._subscription.fill)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._failed and not self._closed:
                self._failed = True
                self._queue.put_nowait(exc)
        finally:
            self._filling = None
        self._pump()

    # -- consuming -----------------------------------------------------------

    @property
    def position(self) -> int:
        """A safe resume point: every matching event up to it was handed out.

        Beyond the last delivered event, the subscription's own position
        counts only while nothing is waiting in between.
        """
        if self._queue.empty() and self._subscription is not None:
            try:
                return max(self.delivered, int(self._subscription.last_sequence))
            except (AttributeError, TypeError, ValueError):
                pass
        return self.delivered

    async def next(self, timeout: float | None) -> Item:
        """The next event, ``TIMEOUT`` or ``CLOSED``.

        Raises what the subscription raised (``SlowConsumer``,
        ``Unavailable``) once the events before it were taken.
        """
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return TIMEOUT
        return self._taken(item)

    def next_nowait(self) -> Item | None:
        """An event already here, or None. Used to flush before ending."""
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if not self._failed:
                self._pump()
                if not self._queue.empty():
                    return self.next_nowait()
            return None
        return self._taken(item)

    def _taken(self, item: Item | BaseException) -> Item:
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, ActionEvent):
            self.delivered = max(self.delivered, item.sequence)
            if self._queue.qsize() < self._window // 2 or self._queue.empty():
                self._pump()
        return item

    def interrupt(self) -> None:
        """Make a pending or the next ``next`` return ``CLOSED``. Loop only."""
        self._queue.put_nowait(CLOSED)

    async def flush(self) -> list[ActionEvent]:
        """Stop reading and return every event still on the way, in order.

        Events the journal still holds for a replay stay there: the final
        message's position tells the client where to resume.
        Raises what the subscription raised, like ``next``.
        """
        await self._stop_filling()
        events: list[ActionEvent] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, ActionEvent):
                events.append(item)
        while self._subscription is not None and not self._failed:
            try:
                event = self._subscription.get(0)
            except errors.EchoError:  # closed or overflowed: nothing more
                self._failed = True
                break
            if event is None:
                break
            events.append(event)
        if events:
            self.delivered = max(self.delivered, events[-1].sequence)
        return events

    async def aclose(self) -> None:
        """Close the subscription; a page read in flight is abandoned."""
        self._closed = True
        await self._stop_filling()
        if self._subscription is not None:
            try:
                self._subscription.close()
            except errors.EchoError:
                logger.debug("closing a subscription failed", exc_info=True)

    async def _stop_filling(self) -> None:
        task = self._filling
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._filling = None
