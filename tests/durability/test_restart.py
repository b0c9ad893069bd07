"""A stream that reconnects after a restart, from the last sequence it saw,
misses nothing: what it reads before and after is the journal's history."""

from __future__ import annotations

import collections
from pathlib import Path

import grpc
import pytest

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2

from ._process import ServerProcess, journal_history, stub
from .crash_plan import RUNS_FILE

WAIT = 20.0
SUCCEEDED = action_pb2.ACTION_STATE_SUCCEEDED


def work(tag: str) -> action_pb2.Action:
    return action_pb2.Action(name="Work", args=[action_pb2.Value(string_value=tag)])


def assign_all(address: str, tags: list[str]) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        answer = stub(channel).AssignMany(
            echo_service_pb2.AssignManyRequest(actions=[work(t) for t in tags]),
            timeout=WAIT,
        )
    return {r.action.id for r in answer.results}


def read_stream(
    address: str, after: int, *, stop_after: int | None, until_done: set[str]
) -> tuple[list[action_pb2.ActionEvent], echo_service_pb2.StreamEnd | None]:
    """Events after ``after``: ``stop_after`` of them, or until every id of
    ``until_done`` succeeded; also the StreamEnd if the server sent one."""
    events: list[action_pb2.ActionEvent] = []
    pending = set(until_done)
    with grpc.insecure_channel(address) as channel:
        call = stub(channel).Stream(
            echo_service_pb2.StreamRequest(after_sequence=after), timeout=WAIT
        )
        try:
            for message in call:
                if message.HasField("end"):
                    return events, message.end
                if not message.HasField("event"):
                    continue
                events.append(message.event)
                if message.event.state == SUCCEEDED:
                    pending.discard(message.event.action_id)
                if stop_after is not None and len(events) >= stop_after:
                    return events, None
                if stop_after is None and not pending:
                    return events, None
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        finally:
            call.cancel()
    return events, None


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_stream_resumed_after_a_restart_misses_nothing(
    tmp_path: Path, how: str
) -> None:
    server = ServerProcess(tmp_path / "data", env={RUNS_FILE: str(tmp_path / "runs")})
    try:
        address = server.start()
        first = assign_all(address, [f"a{i}" for i in range(20)])
        before, _ = read_stream(address, 0, stop_after=25, until_done=set())
        last = before[-1].sequence
        if how == "kill":
            server.kill()
        else:
            # A drain ends the stream with a StreamEnd naming where to resume.
            with grpc.insecure_channel(address) as channel:
                call = stub(channel).Stream(
                    echo_service_pb2.StreamRequest(after_sequence=last), timeout=WAIT
                )
                assert next(call).HasField("heartbeat")  # subscribed
                assert server.stop() == 0
                tail = list(call)  # what the server sent before it went
            ends = [m.end for m in tail if m.HasField("end")]
            assert len(ends) == 1 and ends[0].retryable, tail[-3:]
            before += [m.event for m in tail if m.HasField("event")]
            assert ends[0].last_sequence == before[-1].sequence
            last = ends[0].last_sequence

        address = server.start()
        second = assign_all(address, [f"b{i}" for i in range(20)])
        after, _ = read_stream(
            address,
            last,
            stop_after=None,
            until_done=(first | second)
            - {e.action_id for e in before if e.state == SUCCEEDED},
        )
        seen = before + after
        history = [m.event for m in journal_history(address, until=seen[-1].sequence)]
    finally:
        server.kill()

    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    assert [(e.sequence, e.action_id, e.state, e.attempt) for e in seen] == [
        (e.sequence, e.action_id, e.state, e.attempt) for e in history
    ]
    done = [e.action_id for e in seen if e.state == SUCCEEDED]
    assert sorted(done) == sorted(first | second)
    runs = collections.Counter(
        line.split()[0] for line in (tmp_path / "runs").read_text().splitlines()
    )
    assert set(runs) == first | second
    if how == "stop":
        # Trap: work that finished during a graceful stop ran again after
        # the restart. A drain lets attempts finish and records them first.
        assert set(runs.values()) == {1}, runs
