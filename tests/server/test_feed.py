"""Feeds: engine subscriptions read on the event loop, in order, bounded,
ended by a too-slow listener with a final message, and never leaving a
thread behind."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from echo_service import errors
from echo_service._proto.echo.v1 import echo_service_pb2
from echo_service.engine import ActionEvent, State
from echo_service.server._convert import EventMessages
from echo_service.server._feed import CLOSED, TIMEOUT, open_feed
from echo_service.server._servicer import _stream_messages

pytestmark = pytest.mark.timeout(30)


def _event(sequence: int) -> ActionEvent:
    return ActionEvent(
        sequence=sequence,
        action_id="a",
        name="Add",
        state=State.QUEUED,
        attempt=0,
        at=datetime.now(UTC),
    )


class FakeSubscription:
    """Hands out queued items (events or errors to raise) like the engine's."""

    def __init__(self) -> None:
        self._items: deque[ActionEvent | BaseException] = deque()
        self._cond = threading.Condition()
        self.closed = False
        self.last_sequence = 0
        self.notify: Callable[[], None] | None = None

    def put(self, *items: ActionEvent | BaseException) -> None:
        with self._cond:
            self._items.extend(items)
            self._cond.notify_all()
        if self.notify is not None:
            self.notify()

    def get(self, timeout: float | None) -> ActionEvent | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self.closed, timeout):
                return None
            if self.closed:
                raise errors.Unavailable("closed")
            item = self._items.popleft()
        if isinstance(item, BaseException):
            raise item
        self.last_sequence = item.sequence
        return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class ThreadedEngine:
    """An engine whose subscription notifies from another thread."""

    def __init__(self, subscription: FakeSubscription) -> None:
        self.subscription = subscription

    def subscribe(
        self, *, notify: Callable[[], None], **options: Any
    ) -> FakeSubscription:
        self.subscription.notify = notify
        return self.subscription


class NotifyingEngine(ThreadedEngine):
    def __init__(self, subscription: FakeSubscription) -> None:
        super().__init__(subscription)
        self.notify: Callable[[], None] | None = None

    def subscribe(  # type: ignore[override]
        self, *, notify: Callable[[], None], **options: Any
    ) -> FakeSubscription:
        self.notify = notify
        return self.subscription


async def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


def _feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "echo-feed"]


@pytest.mark.parametrize("engine_kind", [ThreadedEngine, NotifyingEngine])
def test_events_arrive_in_order_then_the_overflow_is_raised(
    engine_kind: type[ThreadedEngine],
) -> None:
    subscription = FakeSubscription()
    engine = engine_kind(subscription)

    async def scenario() -> list[int]:
        feed = await open_feed(
            engine, after=None, buffer=8, window=2, run_blocking=_direct
        )
        subscription.put(_event(1), _event(2), _event(3))
        subscription.put(errors.SlowConsumer("behind", last_sequence=3))
        if isinstance(engine, NotifyingEngine) and engine.notify is not None:
            engine.notify()
        seen: list[int] = []
        with pytest.raises(errors.SlowConsumer):
            while True:
                item = await feed.next(5.0)
                assert isinstance(item, ActionEvent)
                seen.append(item.sequence)
        await feed.aclose()
        return seen

    assert asyncio.run(scenario()) == [1, 2, 3]
    assert subscription.closed
    assert _feed_threads() == []


def test_an_idle_feed_times_out_and_an_interrupt_closes_it() -> None:
    subscription = FakeSubscription()

    async def scenario() -> None:
        feed = await open_feed(
            ThreadedEngine(subscription), after=0, buffer=8, run_blocking=_direct
        )
        assert await feed.next(0.05) is TIMEOUT
        subscription.put(_event(7))
        feed.interrupt()
        first = await feed.next(5.0)
        assert isinstance(first, ActionEvent) or first is CLOSED
        await feed.aclose()

    asyncio.run(scenario())
    assert _feed_threads() == []


def test_flush_returns_what_is_still_on_the_way() -> None:
    subscription = FakeSubscription()
    subscription.put(*(_event(i) for i in range(1, 6)))

    async def scenario() -> list[int]:
        feed = await open_feed(
            ThreadedEngine(subscription),
            after=0,
            buffer=8,
            window=2,
            run_blocking=_direct,
        )
        first = await feed.next(5.0)
        assert isinstance(first, ActionEvent)
        rest = await feed.flush()
        await feed.aclose()
        return [first.sequence, *(e.sequence for e in rest)]

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5]


def test_a_slow_stream_ends_with_a_retryable_final_message() -> None:
    subscription = FakeSubscription()
    subscription.put(_event(1), errors.SlowConsumer("behind", last_sequence=1))

    class Rt:
        signatures: ClassVar[dict[str, Any]] = {}
        messages = EventMessages({})

    async def scenario() -> list[echo_service_pb2.StreamResponse]:
        feed = await open_feed(
            ThreadedEngine(subscription), after=0, buffer=8, run_blocking=_direct
        )
        messages: list[echo_service_pb2.StreamResponse] = []
        # The final message comes first, then the call's status.
        with pytest.raises(errors.SlowConsumer):
            async for m in _stream_messages(feed, timedelta(seconds=5), Rt()):  # type: ignore[arg-type]
                messages.append(m)
        await feed.aclose()
        return messages

    messages = asyncio.run(scenario())
    assert [m.WhichOneof("kind") for m in messages] == ["event", "end"]
    assert messages[-1].end.reason == "listener too slow"
    assert messages[-1].end.retryable
    assert messages[-1].end.last_sequence == 1
