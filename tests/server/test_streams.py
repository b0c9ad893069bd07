"""The Stream RPC: replay, filters, heartbeats, resume, ends, and what it
costs the server when clients come and go."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from echo_client import Backoff, Client, NotFoundError, State, UnavailableError
from google.rpc import error_details_pb2, status_pb2

from echo_service._proto.echo.v1 import (
    action_pb2,
    echo_service_pb2,
    echo_service_pb2_grpc,
)
from echo_service.errors import StoreError
from echo_service.server import EchoServer
from echo_service.store import MemoryStore
from tests.conftest import WAIT, Gates, wait_until

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)


@pytest.fixture
def stub(server: EchoServer) -> Iterator[echo_service_pb2_grpc.EchoServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield echo_service_pb2_grpc.EchoServiceStub(channel)


def _request(**fields: object) -> echo_service_pb2.StreamRequest:
    return echo_service_pb2.StreamRequest(**fields)  # type: ignore[arg-type]


def _kinds(call: Iterator[echo_service_pb2.StreamResponse], count: int) -> list[str]:
    return [next(call).WhichOneof("kind") or "" for _ in range(count)]


def _finish(client: Client, name: str, *args: object) -> str:
    action_id = client.assign(name, *args).action.id
    assert client.wait(action_id, timeout=WAIT_TD).finished
    return action_id


def test_a_stream_opens_with_a_heartbeat_then_replays_and_goes_live(
    client: Client, stub: echo_service_pb2_grpc.EchoServiceStub
) -> None:
    first = _finish(client, "Add", 1, 2)
    call = stub.Stream(_request(after_sequence=0), timeout=WAIT)
    opening = next(call)
    assert opening.WhichOneof("kind") == "heartbeat"
    assert opening.heartbeat.last_sequence == 0
    replayed = [next(call).event for _ in range(4)]
    assert {e.action_id for e in replayed} == {first}
    assert replayed[-1].state == action_pb2.ACTION_STATE_SUCCEEDED
    assert replayed[-1].result.int_value == 3
    sequences = [e.sequence for e in replayed]
    assert sequences == sorted(sequences)
    second = client.assign("Add", 3, 4).action.id
    live = next(call).event
    assert live.action_id == second
    assert live.sequence > sequences[-1]
    call.cancel()


def test_a_live_stream_reports_where_it_is_complete_from(
    client: Client, stub: echo_service_pb2_grpc.EchoServiceStub
) -> None:
    _finish(client, "Add", 1, 2)
    call = stub.Stream(_request(), timeout=WAIT)
    opening = next(call).heartbeat
    assert opening.last_sequence >= 4
    action_id = client.assign("Add", 5, 6).action.id
    event = next(call).event
    assert event.action_id == action_id
    assert event.sequence == opening.last_sequence + 1
    call.cancel()


def _violations(error: grpc.RpcError) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                found.update({v.field: v.description for v in bad.field_violations})
    return found


def _refusal(stub: echo_service_pb2_grpc.EchoServiceStub, after: int) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        next(stub.Stream(_request(after_sequence=after), timeout=WAIT))
    return raised.value


@pytest.mark.parametrize("after", [2**63, 2**64 - 1])
def test_an_after_sequence_past_64_signed_bits_is_invalid(
    stub: echo_service_pb2_grpc.EchoServiceStub, after: int
) -> None:
    error = _refusal(stub, after)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "after_sequence" in _violations(error)


def test_an_after_sequence_beyond_the_head_is_out_of_range_and_names_it(
    client: Client, stub: echo_service_pb2_grpc.EchoServiceStub
) -> None:
    _finish(client, "Add", 1, 2)
    live = stub.Stream(_request(), timeout=WAIT)
    opening = next(live).heartbeat.last_sequence
    live.cancel()
    error = _refusal(stub, opening + 1)
    assert error.code() is grpc.StatusCode.OUT_OF_RANGE
    assert str(opening) in (error.details() or "")
    assert str(opening) in _violations(error)["after_sequence"]


def test_a_client_that_saw_the_head_resumes_from_it(
    client: Client, stub: echo_service_pb2_grpc.EchoServiceStub
) -> None:
    _finish(client, "Add", 1, 2)
    watch = stub.Stream(_request(after_sequence=0), timeout=WAIT)
    next(watch)
    seen = 0
    while True:
        event = next(watch).event
        seen = event.sequence
        if event.state == action_pb2.ACTION_STATE_SUCCEEDED:
            break
    watch.cancel()
    # The newest event a client saw is the head: resuming from it is fine,
    # and the next event is the one after it.
    call = stub.Stream(_request(after_sequence=seen), timeout=WAIT)
    assert next(call).heartbeat.last_sequence == seen
    action_id = client.assign("Add", 2, 2).action.id
    event = next(call).event
    assert (event.action_id, event.sequence) == (action_id, seen + 1)
    call.cancel()


def test_filters_select_by_id_and_by_name(
    client: Client, stub: echo_service_pb2_grpc.EchoServiceStub
) -> None:
    echo_id = _finish(client, "Echo", "hi")
    add_id = _finish(client, "Add", 1, 1)
    by_name = stub.Stream(
        _request(after_sequence=0, action_names=["Echo"]), timeout=WAIT
    )
    by_id = stub.Stream(_request(after_sequence=0, action_ids=[add_id]), timeout=WAIT)
    assert _kinds(by_name, 1) == ["heartbeat"]
    assert _kinds(by_id, 1) == ["heartbeat"]
    assert {next(by_name).event.action_id for _ in range(4)} == {echo_id}
    assert {next(by_id).event.action_id for _ in range(4)} == {add_id}
    by_name.cancel()
    by_id.cancel()


_FINAL = [
    action_pb2.ACTION_STATE_SUCCEEDED,
    action_pb2.ACTION_STATE_FAILED,
    action_pb2.ACTION_STATE_CANCELLED,
]


def test_a_state_filter_passes_only_those_states_replayed_and_live(
    client: Client, stub: echo_service_pb2_grpc.EchoServiceStub
) -> None:
    before = _finish(client, "Add", 1, 1)
    finals = stub.Stream(_request(after_sequence=0, states=_FINAL), timeout=WAIT)
    assert _kinds(finals, 1) == ["heartbeat"]
    replayed = next(finals).event
    assert (replayed.action_id, replayed.state) == (
        before,
        action_pb2.ACTION_STATE_SUCCEEDED,
    )
    after = _finish(client, "Add", 2, 2)
    live = next(finals).event
    assert (live.action_id, live.state) == (after, action_pb2.ACTION_STATE_SUCCEEDED)
    finals.cancel()


@pytest.mark.parametrize(
    ("states", "field"),
    [
        ([action_pb2.ACTION_STATE_UNSPECIFIED], "states[0]"),
        ([action_pb2.ACTION_STATE_SUCCEEDED, 99], "states[1]"),
    ],
)
def test_an_unknown_state_in_the_filter_is_invalid_and_named(
    stub: echo_service_pb2_grpc.EchoServiceStub, states: list[int], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        next(stub.Stream(_request(states=states), timeout=WAIT))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(raised.value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action_ids": ["ok", ""]}, "action_ids[1]"),
        ({"action_ids": ["x" * 129]}, "action_ids[0]"),
        ({"action_ids": ["tab\there"]}, "action_ids[0]"),
        ({"action_names": ["Echo", ""]}, "action_names[1]"),
    ],
)
def test_a_filter_entry_no_request_could_name_is_invalid_and_named(
    stub: echo_service_pb2_grpc.EchoServiceStub, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        next(stub.Stream(_request(**fields), timeout=WAIT))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(raised.value)


def test_an_idle_stream_gets_heartbeats_at_the_asked_interval(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    request = _request()
    request.heartbeat_interval.FromTimedelta(timedelta(milliseconds=50))
    call = stub.Stream(request, timeout=WAIT)
    assert _kinds(call, 4) == ["heartbeat"] * 4
    call.cancel()


def test_a_negative_heartbeat_interval_is_invalid(
    stub: echo_service_pb2_grpc.EchoServiceStub,
) -> None:
    request = _request()
    request.heartbeat_interval.seconds = -1
    with pytest.raises(grpc.RpcError) as caught:
        next(stub.Stream(request, timeout=WAIT))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_resuming_after_the_last_sequence_misses_nothing_and_repeats_nothing(
    client: Client,
) -> None:
    ids = [client.assign("Add", i, i).action.id for i in range(3)]
    seen: list[int] = []
    with client.stream(after=0, reconnect=False) as events:
        for event in events:
            seen.append(event.sequence)
            if len(seen) == 5:
                break
    for action_id in ids:
        client.wait(action_id, timeout=WAIT_TD)
    more = [client.assign("Add", 9, 9).action.id]
    client.wait(more[0], timeout=WAIT_TD)
    with client.stream(after=seen[-1], reconnect=False) as events:
        for event in events:
            seen.append(event.sequence)
            if event.action_id == more[0] and event.finished:
                break
    assert seen == list(range(1, len(seen) + 1))


def test_the_client_stream_resumes_across_a_server_restart(
    make_server: Callable[..., EchoServer], tmp_path: Path
) -> None:
    """Given a stream on a server with a durable journal, when the server
    stops and another starts on the same port and journal, then the stream
    reconnects by itself and goes on after the last sequence it saw."""
    journal = tmp_path / "journal"
    first = make_server(store="sqlite", data_dir=journal)
    with Client(first.address, timeout=WAIT_TD) as client:
        before = client.assign("Add", 1, 2).action.id
        events = client.stream(
            after=0, backoff=Backoff(initial=timedelta(milliseconds=20))
        )
        seen = []
        for event in events:
            seen.append(event)
            if event.action_id == before and event.finished:
                break
        first.stop()
        make_server(store="sqlite", data_dir=journal, port=first.port)
        after = client.assign("Add", 3, 4).action.id
        for event in events:
            seen.append(event)
            if event.action_id == after and event.finished:
                break
        events.close()
    assert events.reconnects >= 1
    assert events.end is not None and events.end.retryable
    sequences = [e.sequence for e in seen]
    assert sequences == list(range(1, len(sequences) + 1))
    assert seen[-1].result == 7


def test_the_client_stream_gives_up_after_its_reconnect_budget(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server()
    with Client(server.address, timeout=WAIT_TD) as client:
        events = client.stream(
            backoff=Backoff(
                initial=timedelta(milliseconds=10),
                give_up_after=timedelta(milliseconds=200),
            )
        )
        assert events.start() == 0
        server.drain(timedelta(milliseconds=100))  # ends streams, refuses new ones
        with pytest.raises(UnavailableError):
            next(events)
        assert events.reconnects >= 2
        events.close()


def test_a_client_that_disconnects_mid_stream_leaves_no_thread_behind(
    server: EchoServer, stub: echo_service_pb2_grpc.EchoServiceStub
) -> None:
    """The RPC pool is bounded and lives as long as the server; every other
    thread a stream uses must be gone once its client went away."""

    def extra() -> list[str]:
        return sorted(
            t.name
            for t in set(threading.enumerate()) - before
            if not t.name.startswith("echo-rpc")
        )

    before = set(threading.enumerate())
    calls = [stub.Stream(_request(after_sequence=0), timeout=WAIT) for _ in range(5)]
    for call in calls:
        assert next(call).WhichOneof("kind") == "heartbeat"
    assert wait_until(lambda: server.open_streams == 5)
    for call in calls:
        call.cancel()
    assert wait_until(lambda: server.open_streams == 0)
    assert wait_until(lambda: not extra()), extra()
    pool = [t for t in threading.enumerate() if t.name.startswith("echo-rpc")]
    assert len(pool) <= server.config.rpc_threads


def test_many_open_streams_do_not_starve_unary_calls(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server(rpc_threads=2)
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        calls = [stub.Stream(_request(), timeout=WAIT) for _ in range(40)]
        for call in calls:
            next(call)
        with Client(server.address, timeout=timedelta(seconds=3)) as client:
            blocked = client.assign("Block", "starve")
            assert gates.wait_entered("starve")
            # The handler starts before the engine's RUNNING write lands: wait
            # for it. Every poll is a unary call answered past the streams.
            assert wait_until(
                lambda: client.get(blocked.action.id).state is State.RUNNING
            )
            assert client.cancel(blocked.action.id).id == blocked.action.id
            assert client.list_signatures()
            done = client.assign("Add", 20, 22)
            assert (
                client.wait(done.action.id, timeout=timedelta(seconds=3)).result == 42
            )
        for call in calls:
            call.cancel()


def test_stopping_the_server_ends_open_streams_with_a_final_message(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server()
    with Client(server.address, timeout=WAIT_TD) as client:
        running = client.assign("Block", "end").action.id
        assert gates.wait_entered("end")
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        call = stub.Stream(_request(after_sequence=0), timeout=WAIT)
        assert next(call).WhichOneof("kind") == "heartbeat"
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        gates.open("end")  # the running action finishes within the grace
        messages = list(call)
        stopper.join()
    assert messages[-1].WhichOneof("kind") == "end"
    end = messages[-1].end
    assert end.retryable
    assert end.reason == "server shutting down"
    finals = [
        m.event
        for m in messages
        if m.WhichOneof("kind") == "event"
        and m.event.action_id == running
        and m.event.state == action_pb2.ACTION_STATE_SUCCEEDED
    ]
    assert len(finals) == 1
    assert end.last_sequence >= finals[0].sequence


class _SlowHead(MemoryStore):
    """A journal whose head takes a round trip, as a shared one's does: once
    ``armed``, reading it waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.reading = threading.Event()
        self.gate = threading.Event()

    def last_sequence(self) -> int:
        if self.armed:
            self.reading.set()
            self.gate.wait(WAIT)
        return super().last_sequence()


def test_a_stream_waiting_for_the_journal_head_holds_no_other_call(
    make_server: Callable[..., EchoServer],
) -> None:
    store = _SlowHead()
    server = make_server(journal=store, heartbeat_interval=timedelta(milliseconds=50))
    with (
        grpc.insecure_channel(server.address) as channel,
        Client(server.address, timeout=timedelta(seconds=WAIT)) as client,
    ):
        store.armed = True
        stream = echo_service_pb2_grpc.EchoServiceStub(channel).Stream(
            echo_service_pb2.StreamRequest(), timeout=WAIT
        )
        first: list[object] = []
        reader = threading.Thread(target=lambda: first.append(next(stream)))
        reader.start()
        try:
            assert store.reading.wait(WAIT)
            # The event loop is free while the head is read on the pool.
            with pytest.raises(NotFoundError):
                client.get("no-such-action")
            assert first == []
        finally:
            store.gate.set()
            reader.join(WAIT)
        assert not reader.is_alive()
        assert first
        stream.cancel()


class _BrokenReplay(MemoryStore):
    """A journal whose event pages cannot be read, as a corrupt file's."""

    def events_after(self, sequence: int, **kw: object) -> list:  # type: ignore[override]
        raise StoreError("journal pages unreadable")


def test_a_journal_that_fails_a_replay_ends_the_stream_internal_not_unknown(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(journal=_BrokenReplay())
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        call = stub.Stream(
            echo_service_pb2.StreamRequest(after_sequence=0), timeout=WAIT
        )
        with pytest.raises(grpc.RpcError) as caught:
            for _ in call:
                pass
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    details = caught.value.details() or ""
    assert "StoreError" not in details and "unreadable" not in details
