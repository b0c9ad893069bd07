"""Kill the server with SIGKILL again and again while a client works with it.

A client assigns (some actions with idempotency keys, some repeating earlier
keys) and listens on ``Stream``; at seeded random moments the server is
killed and started again on the same data directory, and the client resumes
its stream from the last sequence it saw. At the end it checks what the
contract promises:

* nothing acknowledged is lost: every action whose assign was answered
  succeeds, and exactly once as the event stream tells it;
* the stream misses nothing across restarts: sequence numbers arrive
  without gap or repeat, and equal the journal's own replay from 0;
* a repeat of a key answers with the first action and never runs;
* runs are at-least-once, and only that: a handler runs again only when a
  kill cut an earlier run short (one process never runs an action twice),
  and the run that succeeded is the last one.

The seed is printed on failure; ``ECHO_CRASH_SEED=<n>`` replays a run's
choices (the kill moments, the mix of requests); thread timing still varies.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2

from ._process import ServerProcess, journal_history, stub
from .crash_plan import RUNS_FILE

KILLS = 14
KILL_AFTER = (0.1, 0.7)
"""Seconds a process serves before it is killed, drawn uniformly."""
EARLY_KILLS = 0.2
"""Share of processes killed while they start: opening and recovering the
journal, before anyone could reach them."""
EARLY_KILL_AFTER = (0.0, 0.8)
MAX_OUTSTANDING = 24
"""Acknowledged actions not yet seen finished before the client waits."""
CALL_TIMEOUT = 5.0
RETRY_PAUSE = 0.5
"""Seconds a failed call waits for a restart before it tries the same server."""
SETTLE = 30.0
"""How long the last process may take to finish everything."""

ACCEPTED = action_pb2.ACTION_STATE_ACCEPTED
RUNNING = action_pb2.ACTION_STATE_RUNNING
SUCCEEDED = action_pb2.ACTION_STATE_SUCCEEDED
FINISHED = {
    action_pb2.ACTION_STATE_SUCCEEDED,
    action_pb2.ACTION_STATE_FAILED,
    action_pb2.ACTION_STATE_CANCELLED,
}


# -- the servers the client sees ---------------------------------------------


class Servers:
    """Where the server listens now; ``generation`` counts processes.

    ``_cond`` guards every field; client threads wait on it for a server.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.address: str | None = None
        self.generation = 0
        self.closing = False

    def up(self, address: str) -> None:
        with self._cond:
            self.address = address
            self.generation += 1
            self._cond.notify_all()

    def down(self) -> None:
        with self._cond:
            self.address = None

    def close(self) -> None:
        with self._cond:
            self.closing = True
            self._cond.notify_all()

    def current(self) -> tuple[str, int] | None:
        """The serving address and its generation; None when closing. Waits,
        bounded, for a server to be up."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self.closing or self.address is not None, SETTLE
            )
            assert ok, "no server came up"
            if self.closing:
                return None
            assert self.address is not None
            return self.address, self.generation

    def after_failure(self, generation: int) -> None:
        """Give a call that failed on ``generation`` time to see the restart
        that usually explains it; a server that is still up is tried again."""
        with self._cond:
            self._cond.wait_for(
                lambda: self.closing or self.generation != generation,
                RETRY_PAUSE,
            )


# -- what the client saw --------------------------------------------------------


@dataclass(frozen=True)
class Request:
    tag: str  # unique per request: the handler's argument
    key: str | None
    repeat: bool  # a repeat of an earlier request's key


@dataclass(frozen=True)
class Answer:
    request: Request
    action_id: str
    duplicate: bool
    retried: bool  # an earlier call of this same request failed


@dataclass
class Seen:
    """Everything the client learnt; ``cond`` guards every field."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    answers: list[Answer] = field(default_factory=list)
    failed: list[tuple[Request, str]] = field(default_factory=list)
    events: list[action_pb2.ActionEvent] = field(default_factory=list)
    unfinished: set[str] = field(default_factory=set)
    """Accepted as the stream says, not finished yet."""
    finished: set[str] = field(default_factory=set)
    outstanding: set[str] = field(default_factory=set)
    """Answered, and not yet seen finished."""
    problems: list[str] = field(default_factory=list)
    reconnects: int = 0

    @property
    def last_sequence(self) -> int:
        return self.events[-1].sequence if self.events else 0

    def answered(self, answer: Answer) -> None:
        self.answers.append(answer)
        if answer.action_id not in self.finished:
            self.outstanding.add(answer.action_id)


def requests(rng: random.Random) -> Iterator[Request]:
    """Fresh actions without a key, fresh keys, and repeats of earlier keys."""
    keys: list[str] = []
    for n in range(1_000_000):
        roll = rng.random()
        if roll < 0.4 or (roll >= 0.75 and not keys):
            yield Request(f"t{n}", None, repeat=False)
        elif roll < 0.75:
            keys.append(f"k{n}")
            yield Request(f"t{n}", keys[-1], repeat=False)
        else:
            yield Request(f"t{n}", rng.choice(keys), repeat=True)


class Client:
    """An assigning thread and a listening thread against ``Servers``."""

    def __init__(self, servers: Servers, seen: Seen, rng: random.Random) -> None:
        self._servers = servers
        self._seen = seen
        self._requests = requests(rng)
        self._stop_assigning = threading.Event()
        self._call_lock = threading.Lock()
        self._call: grpc.Future | None = None  # the open Stream call
        self._threads = [
            threading.Thread(target=self._guard(self._assign), name="crash-assign"),
            threading.Thread(target=self._guard(self._listen), name="crash-listen"),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop_assigning(self) -> None:
        self._stop_assigning.set()
        with self._seen.cond:
            self._seen.cond.notify_all()
        self._threads[0].join(SETTLE)
        assert not self._threads[0].is_alive(), "the assigning thread hangs"

    def close(self) -> None:
        self._stop_assigning.set()
        self._servers.close()
        with self._call_lock:
            if self._call is not None:
                self._call.cancel()
        with self._seen.cond:
            self._seen.cond.notify_all()
        for thread in self._threads:
            thread.join(SETTLE)
            assert not thread.is_alive(), f"{thread.name} hangs"

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as exc:
                with self._seen.cond:
                    self._seen.problems.append(f"client thread failed: {exc!r}")
                    self._seen.cond.notify_all()
                self._servers.close()

        return run

    # -- assigning ---------------------------------------------------------------

    def _assign(self) -> None:
        generation = 0
        channel: grpc.Channel | None = None
        try:
            while not self._stop_assigning.is_set():
                with self._seen.cond:
                    self._seen.cond.wait_for(
                        lambda: (
                            self._stop_assigning.is_set()
                            or len(self._seen.outstanding) < MAX_OUTSTANDING
                        ),
                        SETTLE,
                    )
                if self._stop_assigning.is_set():
                    return
                request = next(self._requests)
                retried = False
                while True:  # until answered, or given up on
                    server = self._servers.current()
                    if server is None:
                        return
                    if server[1] != generation:
                        if channel is not None:
                            channel.close()
                        channel = grpc.insecure_channel(server[0])
                        generation = server[1]
                    assert channel is not None
                    try:
                        answer = stub(channel).Assign(
                            echo_service_pb2.AssignRequest(action=_work(request)),
                            timeout=CALL_TIMEOUT,
                        )
                    except grpc.RpcError as exc:
                        with self._seen.cond:
                            self._seen.failed.append((request, exc.code().name))
                        if request.key is None:
                            break  # it may or may not be journaled: unknowable
                        # A client with a key just asks again: that is what
                        # keys are for. Wait for the next server.
                        retried = True
                        self._servers.after_failure(generation)
                        continue
                    with self._seen.cond:
                        self._seen.answered(
                            Answer(request, answer.action.id, answer.duplicate, retried)
                        )
                    break
        finally:
            if channel is not None:
                channel.close()

    # -- listening ------------------------------------------------------------------

    def _listen(self) -> None:
        while True:
            server = self._servers.current()
            if server is None:
                return
            address, generation = server
            with grpc.insecure_channel(address) as channel:
                with self._seen.cond:
                    after = self._seen.last_sequence
                    self._seen.reconnects += 1
                call = stub(channel).Stream(
                    echo_service_pb2.StreamRequest(
                        after_sequence=after, heartbeat_interval=Duration(seconds=1)
                    )
                )
                with self._call_lock:
                    self._call = call
                try:
                    for message in call:
                        if message.HasField("event"):
                            self._took(message.event)
                        elif message.HasField("end"):
                            break
                except grpc.RpcError as exc:
                    if exc.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.CANCELLED,
                    ):
                        raise
                finally:
                    with self._call_lock:
                        self._call = None
            # The process died (or ended the stream): resume, on the next one.
            self._servers.after_failure(generation)

    def _took(self, event: action_pb2.ActionEvent) -> None:
        with self._seen.cond:
            expected = self._seen.last_sequence + 1
            if event.sequence != expected:
                self._seen.problems.append(
                    f"stream gave sequence {event.sequence}, expected {expected}"
                )
            self._seen.events.append(event)
            if event.state == ACCEPTED:
                self._seen.unfinished.add(event.action_id)
            elif event.state in FINISHED:
                self._seen.unfinished.discard(event.action_id)
                self._seen.outstanding.discard(event.action_id)
                self._seen.finished.add(event.action_id)
            self._seen.cond.notify_all()


def _work(request: Request) -> action_pb2.Action:
    return action_pb2.Action(
        name="Work",
        args=[action_pb2.Value(string_value=request.tag)],
        options=action_pb2.ActionOptions(idempotency_key=request.key or ""),
    )


# -- the verdict ----------------------------------------------------------------


@dataclass(frozen=True)
class RunLine:
    action_id: str
    tag: str
    pid: int
    attempt: int


def read_runs(path: Path) -> list[RunLine]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        action_id, tag, pid, attempt = line.split()
        out.append(RunLine(action_id, tag, int(pid), int(attempt)))
    return out


def verdict(
    seen: Seen,
    history: list[action_pb2.ActionEvent],
    runs: list[RunLine],
    pids: list[int],
) -> tuple[list[str], dict[str, int]]:
    """Every broken promise, and figures about the run."""
    by_action: dict[str, list[action_pb2.ActionEvent]] = collections.defaultdict(list)
    for event in seen.events:
        by_action[event.action_id].append(event)
    runs_of: dict[str, list[RunLine]] = collections.defaultdict(list)
    for run in runs:
        runs_of[run.action_id].append(run)
    acknowledged = {a.action_id for a in seen.answers}

    problems = list(seen.problems)
    problems += stream_problems(seen.events, history)
    problems += [
        f"acknowledged {action_id} never appeared in the stream"
        for action_id in acknowledged - by_action.keys()
    ]
    problems += [
        f"{action_id} ran but never appeared in the stream"
        for action_id in runs_of.keys() - by_action.keys()
    ]
    generation_of = {pid: i for i, pid in enumerate(pids)}
    for action_id, its in by_action.items():
        problems += action_problems(action_id, its, runs_of[action_id], generation_of)
    problems += key_problems(seen, runs)

    figures = {
        "processes": len(pids),
        "actions": len(by_action),
        "acknowledged": len(acknowledged),
        "not acknowledged": len(by_action.keys() - acknowledged),
        "failed calls": len(seen.failed),
        "repeats answered": sum(a.request.repeat for a in seen.answers),
        "runs": len(runs),
        "runs again": len(runs) - len(runs_of),
        "RUNNING again": sum(
            max(0, [e.state for e in its].count(RUNNING) - 1)
            for its in by_action.values()
        ),
        "stream reconnects": seen.reconnects,
        "events": len(seen.events),
    }
    return problems, figures


def stream_problems(
    events: list[action_pb2.ActionEvent], history: list[action_pb2.ActionEvent]
) -> list[str]:
    """Every number once, in order, and the same events as the journal's."""
    problems = []
    if [e.sequence for e in events] != list(range(1, len(events) + 1)):
        problems.append("the stream's sequence numbers have gaps or repeats")
    mine = [(e.sequence, e.action_id, e.state, e.attempt) for e in events]
    theirs = [(e.sequence, e.action_id, e.state, e.attempt) for e in history]
    if mine != theirs:
        problems.append("the resumed stream differs from the journal's replay")
    return problems


def action_problems(
    action_id: str,
    its: list[action_pb2.ActionEvent],
    its_runs: list[RunLine],
    generation_of: dict[int, int],
) -> list[str]:
    """One success, attempts counted right, runs only where kills explain them."""
    states = [e.state for e in its]
    if states.count(SUCCEEDED) != 1 or FINISHED & set(states) != {SUCCEEDED}:
        return [f"{action_id} ended {states.count(SUCCEEDED)} times: {states}"]
    problems = []
    if states[0] != ACCEPTED:
        problems.append(f"{action_id} did not start with ACCEPTED")
    success = next(e for e in its if e.state == SUCCEEDED)
    # RUNNING may repeat (once per interrupted run that got journaled):
    # attempts count up by one and the success is the last of them.
    attempts = [e.attempt for e in its if e.state == RUNNING]
    if attempts != list(range(1, len(attempts) + 1)) or (
        success.attempt != len(attempts)
    ):
        problems.append(
            f"{action_id}: RUNNING attempts {attempts}, succeeded at {success.attempt}"
        )
    # At-least-once, and only that: each run in another process, in the order
    # of the processes (every earlier one was killed), and the last run is the
    # one that succeeded.
    order = [generation_of.get(r.pid, -1) for r in its_runs]
    if not its_runs:
        problems.append(f"{action_id} succeeded without a run")
    elif order != sorted(set(order)) or -1 in order:
        problems.append(f"{action_id} ran twice in one process: {order}")
    elif (its_runs[-1].pid, its_runs[-1].attempt) != (
        success.result.int_value,
        success.attempt,
    ):
        problems.append(
            f"{action_id}: last run {its_runs[-1]}, but success in process "
            f"{success.result.int_value} at attempt {success.attempt}"
        )
    return problems


def key_problems(seen: Seen, runs: list[RunLine]) -> list[str]:
    """One action per key; repeats answer with it and never run."""
    problems = []
    by_key: dict[str, list[Answer]] = collections.defaultdict(list)
    for answer in seen.answers:
        if answer.request.key is not None:
            by_key[answer.request.key].append(answer)
        elif answer.duplicate:
            problems.append(f"{answer.request.tag} had no key but was a duplicate")
    for key, answers in by_key.items():
        first, *later = answers
        if {a.action_id for a in answers} != {first.action_id}:
            problems.append(f"key {key} answered with several actions")
        if first.duplicate and not first.retried:
            # Only an earlier call that failed after its commit can make the
            # first answer a duplicate.
            problems.append(f"key {key} was a duplicate on its first call")
        if not all(a.duplicate for a in later):
            problems.append(f"a repeat of key {key} was not a duplicate")
    repeats = {a.request.tag for a in seen.answers if a.request.repeat}
    repeats |= {r.tag for r, _ in seen.failed if r.repeat}
    actions_of_tag: dict[str, set[str]] = collections.defaultdict(set)
    for run in runs:
        actions_of_tag[run.tag].add(run.action_id)
        if run.tag in repeats:
            problems.append(f"the repeat {run.tag} ran, as {run.action_id}")
    problems += [
        f"request {tag} became several actions: {sorted(ids)}"
        for tag, ids in actions_of_tag.items()
        if len(ids) > 1
    ]
    return problems


# -- the test -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_nothing_acknowledged_is_lost_and_nothing_runs_twice_across_kills(
    tmp_path: Path,
) -> None:
    seed = int(
        os.environ.get("ECHO_CRASH_SEED", random.SystemRandom().randrange(2**32))
    )
    try:
        problems, figures = _crash_run(tmp_path, seed)
    except BaseException as exc:
        raise AssertionError(f"crash test with ECHO_CRASH_SEED={seed}: {exc}") from exc
    print(f"crash test, ECHO_CRASH_SEED={seed}: {figures}")
    assert not problems, (
        f"ECHO_CRASH_SEED={seed}: {len(problems)} broken promises, first ones:\n"
        + "\n".join(problems[:25])
        + f"\nfigures: {figures}"
    )


def _crash_run(tmp_path: Path, seed: int) -> tuple[list[str], dict[str, int]]:
    rng = random.Random(seed)
    runs_file = tmp_path / "runs.txt"
    server = ServerProcess(tmp_path / "data", env={RUNS_FILE: str(runs_file)})
    servers, seen = Servers(), Seen()
    client = Client(servers, seen, random.Random(rng.random()))
    pause = threading.Event()  # never set: its wait is the kill moment
    started = time.monotonic()
    early = 0
    try:
        client.start()
        for _ in range(KILLS):
            if rng.random() < EARLY_KILLS:
                early += 1
                server.spawn()
                pause.wait(rng.uniform(*EARLY_KILL_AFTER))
                server.kill()
                continue
            servers.up(server.start())
            pause.wait(rng.uniform(*KILL_AFTER))
            servers.down()
            server.kill()
        address = server.start()
        servers.up(address)
        client.stop_assigning()
        with seen.cond:
            settled = seen.cond.wait_for(
                lambda: (
                    bool(seen.problems)
                    or (not seen.unfinished and not seen.outstanding)
                ),
                SETTLE,
            )
            last = seen.last_sequence
        assert settled, f"the last process did not finish everything:\n{server.log()}"
        history = [m.event for m in journal_history(address, until=last)]
    finally:
        client.close()
        server.stop()
    problems, figures = verdict(seen, history, read_runs(runs_file), server.pids)
    figures["killed while starting"] = early
    figures["seconds"] = round(time.monotonic() - started)
    if problems:
        problems.append(f"server log tail:\n{server.log()}")
    return problems, figures
