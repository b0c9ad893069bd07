"""Engine subscriptions read from asyncio, without a server thread per stream.

An engine ``Subscription`` is a blocking queue filled on the journal's writer
thread. A stream handler runs on the event loop and must never block it, so
a ``Feed`` moves events from the subscription into a small asyncio queue:

* When the engine's ``subscribe`` takes a ``notify`` callable, the engine
  calls it when events arrive; it only schedules ``_pump`` on the loop, which
  takes what is ready with non-blocking ``get(0)`` calls. No thread at all.
* Otherwise one reader thread per feed blocks in ``get`` with a short timeout
  and hands each event to the loop. The thread belongs to the feed: ``aclose``
  stops it and joins it, so it never outlives its call. This is the path in
  use today: the engine's ``subscribe`` has no ``notify`` yet, and its
  ``get`` reads the journal while it replays, which must not happen on the
  loop. So an open stream costs a thread (mostly asleep), not a pool slot.

Either way at most ``window`` events wait in the asyncio queue. A consumer
that does not keep up leaves the rest in the subscription's own bounded
buffer, and when that overflows the engine raises ``SlowConsumer``, which the
feed hands on in order after the events before it. Memory stays bounded.

Ownership: the loop owns the asyncio queue and every attribute but ``_stop``
(a threading.Event shared with the reader thread) and ``_slots`` (a
threading.Semaphore counting free places in the queue for the thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from echo_service import errors
from echo_service.engine import ActionEvent

__all__ = ["CLOSED", "TIMEOUT", "Feed", "open_feed"]

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.2  # how long the reader thread blocks before checking _stop
_BATCH = 64  # most events the reader thread hands over in one wake-up


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


def _accepts_notify(subscribe: Callable[..., Any]) -> bool:
    try:
        return "notify" in inspect.signature(subscribe).parameters
    except (TypeError, ValueError):
        return False


async def open_feed(
    engine: Any,
    *,
    after: int | None,
    action_ids: frozenset[str] = frozenset(),
    names: frozenset[str] = frozenset(),
    buffer: int,
    window: int = 256,
    run_blocking: Callable[..., Any],
) -> Feed:
    """Subscribe and return a running feed.

    ``run_blocking(fn, *args)`` runs ``fn`` off the loop and returns an
    awaitable: subscribing with ``after`` reads the journal.
    """
    loop = asyncio.get_running_loop()
    feed = Feed(loop, window=window, action_ids=action_ids, names=names)
    kwargs: dict[str, Any] = {
        "after": after,
        "action_ids": action_ids,
        "names": names,
        "buffer": buffer,
    }
    if _accepts_notify(engine.subscribe):
        kwargs["notify"] = feed.notify
    subscription = await run_blocking(lambda: engine.subscribe(**kwargs))
    feed.attach(subscription, threaded="notify" not in kwargs)
    return feed


class Feed:
    """One subscription's events, awaited on the loop. See the module doc."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        window: int,
        action_ids: frozenset[str] = frozenset(),
        names: frozenset[str] = frozenset(),
    ) -> None:
        self.action_ids = action_ids
        self.names = names
        self._loop = loop
        self._window = window
        self._queue: asyncio.Queue[Item | BaseException] = asyncio.Queue()
        self._subscription: Any = None
        self._thread: threading.Thread | None = None
        self._thread_done = asyncio.Event()
        self._stop = threading.Event()
        self._slots = threading.Semaphore(window)
        self._pump_scheduled = False
        self._failed = False  # the subscription raised; nothing more comes
        self.delivered = 0
        """The highest sequence handed out by ``next``."""

    # -- wiring ------------------------------------------------------------

    def attach(self, subscription: Any, *, threaded: bool) -> None:
        self._subscription = subscription
        if threaded:
            self._thread = threading.Thread(
                target=self._read, name="echo-feed", daemon=True
            )
            self._thread.start()
        else:
            self._pump()

    def notify(self) -> None:
        """The engine's callback: events are ready. Any thread; never blocks."""
        # A closed loop means the server is gone; nobody waits any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._schedule_pump)

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Move ready events into the queue, up to the window. Loop only."""
        self._pump_scheduled = False
        while not self._failed and self._queue.qsize() < self._window:
            try:
                event = self._subscription.get(0)
            except BaseException as exc:  # handed to the consumer in order
                self._failed = True
                self._queue.put_nowait(exc)
                return
            if event is None:
                return
            self._queue.put_nowait(event)

    def _read(self) -> None:
        """The reader thread of a subscription without ``notify``.

        It blocks for one event, then takes whatever else is ready at once
        (as far as free slots allow) and hands the batch over in one wake-up
        of the loop: a wake-up per event would cost more than the event.
        """
        try:
            while not self._stop.is_set():
                if not self._slots.acquire(timeout=_POLL_SECONDS):
                    continue
                batch: list[Item | BaseException] = []
                try:
                    event = self._subscription.get(_POLL_SECONDS)
                    if event is None:
                        self._slots.release()
                        continue
                    batch.append(event)
                    while len(batch) < _BATCH and self._slots.acquire(blocking=False):
                        event = self._subscription.get(0)
                        if event is None:
                            self._slots.release()
                            break
                        batch.append(event)
                except BaseException as exc:
                    batch.append(exc)
                    self._hand_over(batch)
                    return
                if not self._hand_over(batch):
                    return
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._thread_done.set)

    def _hand_over(self, batch: list[Item | BaseException]) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._enqueue, batch)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _enqueue(self, batch: list[Item | BaseException]) -> None:
        for item in batch:
            self._queue.put_nowait(item)

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
            if self._thread is None and not self._failed:
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
            if self._thread is not None:
                self._slots.release()
            else:
                self._pump()
        return item

    def interrupt(self) -> None:
        """Make a pending or the next ``next`` return ``CLOSED``. Loop only."""
        self._queue.put_nowait(CLOSED)

    async def flush(self) -> list[ActionEvent]:
        """Stop reading and return every event still on the way, in order.

        After this the feed only answers ``next_nowait`` from what is left.
        Raises what the subscription raised, like ``next``.
        """
        await self._stop_thread()
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
        """Close the subscription and join the reader thread, if any."""
        await self._stop_thread()
        if self._subscription is not None:
            try:
                self._subscription.close()
            except errors.EchoError:
                logger.debug("closing a subscription failed", exc_info=True)

    async def _stop_thread(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._slots.release()  # wake it if it waits for a slot
        if thread.is_alive():
            await self._thread_done.wait()
        thread.join()
        self._thread = None
        # Whatever the thread handed over is already queued behind the done
        # callback, or queued before it: call_soon_threadsafe keeps order.
