"""Subscriptions read without blocking: notify, get(0), fill, a growing filter."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from echo_service import errors
from echo_service.engine import ActionEvent, ActionSpec, PlanBuilder, ValueType
from echo_service.engine._subscription import Subscription
from echo_service.store import State

from .conftest import WAIT, finished

_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _event(sequence: int, action_id: str = "a") -> ActionEvent:
    return ActionEvent(sequence, action_id, "echo", State.QUEUED, 0, _AT)


class _Journal:
    """Events a replay reads; counts the reads and the threads they ran on."""

    def __init__(self, events: list[ActionEvent]) -> None:
        self.events = events
        self.readers: list[str] = []

    def page(
        self, after: int, limit: int, ids: frozenset[str], names: frozenset[str]
    ) -> list[ActionEvent]:
        self.readers.append(threading.current_thread().name)
        out = [e for e in self.events if e.sequence > after]
        return [e for e in out if not ids or e.action_id in ids][:limit]


def _subscription(
    journal: _Journal,
    *,
    after: int | None,
    buffer: int = 8,
    ids: frozenset[str] = frozenset(),
) -> tuple[Subscription, list[int]]:
    calls: list[int] = []
    sub = Subscription(
        after=after,
        action_ids=ids,
        names=frozenset(),
        buffer=buffer,
        replay=journal.page,
        on_close=lambda s: None,
        notify=lambda: calls.append(1),
    )
    return sub, calls


def test_get_zero_never_reads_the_journal_and_asks_for_a_fill() -> None:
    journal = _Journal([_event(1), _event(2)])
    sub, calls = _subscription(journal, after=0)
    assert sub.get(0) is None
    assert journal.readers == []
    assert sub.needs_fill
    sub.fill()
    assert calls, "fill notifies"
    assert [sub.get(0), sub.get(0)] == [_event(1), _event(2)]
    assert not sub.needs_fill
    assert sub.get(0) is None


def test_offered_events_notify_and_arrive_without_blocking() -> None:
    sub, calls = _subscription(_Journal([]), after=None)
    sub.offer([_event(5)])
    assert calls == [1]
    assert sub.get(0) == _event(5)
    assert sub.get(0) is None


def test_live_events_during_replay_follow_it_without_gap_or_duplicate() -> None:
    journal = _Journal([_event(1), _event(2)])
    sub, _ = _subscription(journal, after=0)
    sub.offer([_event(2), _event(3)])  # 2 is committed and also offered live
    sub.fill()
    got = []
    while (event := sub.get(0)) is not None:
        got.append(event.sequence)
    assert got == [1, 2, 3]


def test_a_live_overflow_during_a_page_read_makes_the_replay_read_again() -> None:
    journal = _Journal([_event(1)])
    sub, _ = _subscription(journal, after=0, buffer=1)

    def page_then_commit(after, limit, ids, names):  # type: ignore[no-untyped-def]
        page = _Journal.page(journal, after, limit, ids, names)
        # Two commits land after the page's snapshot and overflow the buffer.
        journal.events += [_event(2), _event(3)]
        sub.offer([_event(2), _event(3)])
        return page

    sub._replay_page = page_then_commit
    sub.fill()
    assert sub.get(0) == _event(1)
    assert sub.needs_fill, "the emptied live events must be read back"
    sub._replay_page = journal.page
    sub.fill()
    assert [sub.get(0), sub.get(0), sub.get(0)] == [_event(2), _event(3), None]


def test_overflow_and_close_notify_the_reader() -> None:
    sub, calls = _subscription(_Journal([]), after=None, buffer=1)
    sub.offer([_event(1), _event(2)])
    assert sub.get(0) == _event(1)
    with pytest.raises(errors.SlowConsumer) as err:
        sub.get(0)
    assert err.value.last_sequence == 1
    before = len(calls)
    sub.close()
    assert len(calls) == before + 1


def test_a_grown_id_filter_lets_the_new_actions_events_in() -> None:
    sub, calls = _subscription(_Journal([]), after=None, ids=frozenset({"a"}))
    sub.offer([_event(1, "b")])
    assert calls == [] and sub.get(0) is None
    sub.add_action_ids(["b"])
    sub.offer([_event(2, "b"), _event(3, "c")])
    assert [sub.get(0), sub.get(0)] == [_event(2, "b"), None]


def test_a_filter_for_every_action_stays_so_when_ids_are_added() -> None:
    sub, _ = _subscription(_Journal([]), after=None)
    sub.add_action_ids(["a"])
    sub.offer([_event(1, "z")])
    assert sub.get(0) == _event(1, "z")


def test_an_engine_subscription_notifies_from_the_journal_thread(make_engine) -> None:
    b = PlanBuilder()

    @b.action(inputs=[ValueType.ANY], output=ValueType.ANY)
    def echo(ctx, x):  # type: ignore[no-untyped-def]
        return x

    engine = make_engine(b.build())
    woken = threading.Event()
    threads: set[str] = set()

    def notify() -> None:
        threads.add(threading.current_thread().name)
        woken.set()

    sub = engine.subscribe(after=engine.last_sequence, notify=notify)
    assert sub.get(0) is None and sub.needs_fill
    sub.fill()  # notifies on this thread, as it should
    threads.clear()
    [assigned] = engine.assign([ActionSpec("echo", (1,))])
    seen: list[ActionEvent] = []
    while not (seen and finished(assigned.action.id)(seen[-1])):
        event = sub.get(0)
        if event is None:
            assert woken.wait(WAIT), "no notify"
            woken.clear()
            continue
        seen.append(event)
    assert threading.current_thread().name not in threads
    assert engine.last_sequence == seen[-1].sequence
    sub.close()
