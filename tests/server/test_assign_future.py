"""Assign waits for the journal's durability future on the loop when the
store offers one: no pool thread is held while the commit is on its way."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from echo_client import Client, DeadlineExceededError, NotFoundError

from echo_service.server import EchoServer
from echo_service.store import Inserted, NewAction
from echo_service.store._memory import MemoryStore
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)


class FutureStore(MemoryStore):
    """A memory journal whose inserts wait for a gate, on a thread of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.submitted = threading.Semaphore(0)
        self.callers: list[str] = []
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="test-insert")

    def insert_async(self, actions: Sequence[NewAction]) -> Future[list[Inserted]]:
        self.callers.append(threading.current_thread().name)
        self.submitted.release()

        def later() -> list[Inserted]:
            assert self.gate.wait(30)
            own = getattr(super(FutureStore, self), "insert_async", None)
            if own is None:
                return MemoryStore.insert(self, actions)
            inserted: list[Inserted] = own(actions).result()
            return inserted

        return self._writer_pool.submit(later)

    def close(self) -> None:
        self.gate.set()
        self._writer_pool.shutdown(wait=True)
        super().close()


def test_assign_is_answered_once_the_journal_future_resolves(
    make_server: Callable[..., EchoServer],
) -> None:
    store = FutureStore()
    server = make_server(journal=store, rpc_threads=1)
    try:
        _assign_three(server, store)
    finally:
        store.gate.set()
        server.stop()
        store.close()


def _assign_three(server: EchoServer, store: FutureStore) -> None:
    with Client(server.address) as client:
        answers: list[Any] = []
        waiting = [
            threading.Thread(target=lambda: answers.append(client.assign("Add", 1, 2)))
            for _ in range(3)
        ]
        for thread in waiting:
            thread.start()
        for _ in waiting:
            assert store.submitted.acquire(timeout=10)
        # Three assigns wait for the journal with one pool thread: none holds
        # it, so a call that needs the pool still gets through.
        with pytest.raises(NotFoundError):
            client.get("no-such-action")
        assert answers == []
        store.gate.set()
        for thread in waiting:
            thread.join(10)
            assert not thread.is_alive()
        assert [a.action.name for a in answers] == ["Add"] * 3
        # Prepared and submitted on the server's event loop, not a pool thread.
        assert all(not n.startswith("echo-rpc") for n in store.callers), store.callers


def test_an_assign_whose_caller_gave_up_is_still_journaled_and_counted(
    make_server: Callable[..., EchoServer],
) -> None:
    store = FutureStore()
    server = make_server(journal=store)
    try:
        with Client(server.address) as client:
            with pytest.raises(DeadlineExceededError):
                client.assign("Add", 1, 2, timeout=timedelta(milliseconds=200))
            assert store.submitted.acquire(timeout=10)
            store.gate.set()
            # The write went on; the action ran, and the engine counted it in
            # and out: nothing is left waiting.
            assert wait_until(lambda: len(store.events_after(0, limit=10)) >= 4)
            assert wait_until(lambda: server.engine.stats.waiting == 0)
    finally:
        store.gate.set()
        server.stop()
        store.close()
