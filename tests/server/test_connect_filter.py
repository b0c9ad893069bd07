"""Connect sessions listen only to their own actions: every event of each
action a session assigns arrives, and no other action's event reaches it,
not even inside the server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from echo_client import Client, Session, SessionMessage, State

from echo_service.server import EchoServer

pytestmark = pytest.mark.timeout(60)


def _collect(session: Session, rids: set[str]) -> dict[str, list[SessionMessage]]:
    """Messages per request id until every one of ``rids`` finished."""
    got: dict[str, list[SessionMessage]] = {}
    open_ = set(rids)
    for message in session:
        got.setdefault(message.request_id, []).append(message)
        event = message.event
        if message.kind == "event" and event is not None and event.finished:
            open_.discard(message.request_id)
        if not open_:
            return got
    raise AssertionError(f"the session ended first: {got}")


def test_each_session_gets_all_of_its_own_events_and_none_of_others(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server()
    with (
        Client(server.address) as client,
        client.connect() as one,
        client.connect() as two,
    ):
        first = {one.assign("Add", i, 1, request_id=f"a{i}") for i in range(5)}
        second = {two.assign("Add", i, 2, request_id=f"b{i}") for i in range(5)}
        noise = [client.assign("Add", i, 3).action.id for i in range(5)]
        for session, rids in ((one, first), (two, second)):
            got = _collect(session, rids)
            assert set(got) - {""} == rids  # "" holds heartbeats, if any
            for rid in rids:
                assigned = got[rid][0]
                assert assigned.kind == "assigned"
                assert assigned.assigned is not None
                action_id = assigned.assigned.action.id
                events = [m.event for m in got[rid][1:] if m.event is not None]
                assert {e.action_id for e in events} == {action_id}
                assert [e.state for e in events][-1] is State.SUCCEEDED
                states = {e.state for e in events}
                assert {State.ACCEPTED, State.QUEUED, State.RUNNING} <= states
                assert not {e.action_id for e in events} & set(noise)
        # Inside the server, the sessions' subscriptions name their own
        # actions only (the Stream-less client holds no other).
        filters = [s.action_ids for s in server.engine._subs]
        assert len(filters) == 2
        assert all(f and not f & set(noise) for f in filters)
