"""Plays the interop scenarios (scenarios.json) with the Python client.

    python tests/interop/runner.py --target HOST:PORT [--only NAME ...]

Prints one JSON line per scenario, ``{"scenario", "ok", "detail"}``, then
``N passed, N failed``; exits 1 when any failed. The Node and Go runners
play the same file the same way, so a difference between them is a
difference between the clients (or in how the server treats them).
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from echo_client import (
    Action,
    ActionRequest,
    Client,
    DeadlineExceededError,
    EchoError,
    Event,
    Json,
    Options,
    RetryPolicy,
    State,
)

Scenario = dict[str, Any]
SCENARIOS = Path(__file__).with_name("scenarios.json")
WAIT = timedelta(seconds=20)


class MismatchError(AssertionError):
    """What a scenario saw differs from what it expects."""


class NotExpressible(Exception):
    """The case needs something this client cannot send by design."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise MismatchError(message)


# -- values ----------------------------------------------------------------


def arg(spec: dict[str, Any], index: int = 0) -> object:
    """The Python value of a typed scenario value."""
    [(kind, value)] = spec.items()
    if kind == "int":
        return int(value)
    if kind == "int_index":
        return index + int(value)
    if kind == "double":
        return float(value)
    if kind in ("string", "bool"):
        return value
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "json":
        try:
            return Json(json.loads(value))
        except ValueError:
            # echo_client builds JSON from Python values only, so it cannot
            # send text that is not JSON.
            raise NotExpressible("malformed JSON text") from None
    raise ValueError(f"unknown value kind {kind!r}")


def same(got: object, want: object) -> bool:
    """Equal and of the same type: an int is never a float here."""
    return type(got) is type(want) and got == want


def options(spec: dict[str, Any] | None) -> Options | None:
    if not spec:
        return None
    retry = spec.get("retry")
    policy = None
    if retry is not None:
        policy = RetryPolicy(
            initial_interval=_ms(retry.get("initial_interval_ms")),
            backoff_coefficient=retry.get("backoff_coefficient"),
            maximum_interval=_ms(retry.get("maximum_interval_ms")),
            maximum_attempts=retry.get("maximum_attempts"),
            jitter=retry.get("jitter"),
        )
    return Options(
        delay=_ms(spec.get("delay_ms")),
        priority=spec.get("priority"),
        idempotency_key=spec.get("idempotency_key"),
        retry_policy=policy,
    )


def _ms(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(milliseconds=value)


# -- a TCP proxy that can cut connections ------------------------------------


class Proxy:
    """Forwards 127.0.0.1:<port> to the server. ``cut`` closes every open
    connection; during an outage new connections are closed at once.

    Threads: one acceptor, two pumps per connection; each ends when its
    sockets close, and ``close`` closes them all and joins every thread.
    """

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._upstream = (host.strip("[]"), int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []  # guarded by _lock
        self._refuse_until = 0.0  # guarded by _lock
        self._pumps: list[threading.Thread] = []  # guarded by _lock
        self.accepted = 0  # guarded by _lock
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refuse = time.monotonic() < self._refuse_until
                self.accepted += 0 if refuse else 1
            if refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            pumps = [
                threading.Thread(target=self._pump, args=pair, daemon=True)
                for pair in ((client, upstream), (upstream, client))
            ]
            with self._lock:
                self._sockets += [client, upstream]
                self._pumps += pumps
            for pump in pumps:
                pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Shut down before closing: a close alone does not wake the other
            # pump, blocked in recv on one of these sockets.
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self, outage: timedelta) -> None:
        with self._lock:
            self._refuse_until = time.monotonic() + outage.total_seconds()
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        # Closing alone does not wake a thread blocked in accept; shutting
        # the listener down does.
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        # The acceptor first: once it has stopped, no connection is added
        # behind the cut below.
        self._acceptor.join(timeout=5)
        self.cut(timedelta(0))
        with self._lock:
            threads = [self._acceptor, *self._pumps]
        for thread in threads:
            thread.join(timeout=5)
            if thread.is_alive():
                raise RuntimeError(f"the proxy's thread {thread.name} did not stop")


# -- the scenario kinds ------------------------------------------------------


class Runner:
    def __init__(self, client: Client, target: str) -> None:
        self.client = client
        self.target = target

    def events_of(self, action_id: str) -> list[Event]:
        """Every journaled event of a finished action, in order."""
        out: list[Event] = []
        with self.client.stream(after=0, action_ids=[action_id], timeout=WAIT) as s:
            for event in s:
                out.append(event)
                if event.state.finished:
                    break
        return out

    def check_action(self, action: Action, expect: dict[str, Any], label: str) -> None:
        state = State(expect["state"].lower())
        check(action.state is state, f"{label}: state {action.state}, want {state}")
        if "result" in expect:
            want = arg(expect["result"])
            check(same(action.result, want), f"{label}: result {action.result!r}")
        if "attempt" in expect:
            check(action.attempt == expect["attempt"], f"{label}: {action.attempt=}")
        error = action.error
        if "error_type" in expect:
            check(
                error is not None and error.type == expect["error_type"],
                f"{label}: error {error}",
            )
        if "error_message" in expect:
            check(
                error is not None and error.message == expect["error_message"],
                f"{label}: error {error}",
            )

    def run(self, scenario: Scenario) -> str:
        for i, case in enumerate(scenario["cases"]):
            label = f"case {i} ({case['action']})"
            expect = case["expect"]
            started = time.monotonic()
            assigned = self.client.assign(
                case["action"],
                *(arg(a) for a in case["args"]),
                options=options(case.get("options")),
            )
            action = self.client.wait(assigned.action.id, timeout=WAIT)
            elapsed_ms = (time.monotonic() - started) * 1000
            self.check_action(action, expect, label)
            if "min_elapsed_ms" in expect:
                check(
                    elapsed_ms >= expect["min_elapsed_ms"],
                    f"{label}: done after {elapsed_ms:.0f} ms",
                )
            if "count_states" in expect or "retrying_error_type" in expect:
                events = self.events_of(action.id)
                for name, count in expect.get("count_states", {}).items():
                    seen = sum(e.state is State(name.lower()) for e in events)
                    check(seen == count, f"{label}: {seen} {name} events")
                if "retrying_error_type" in expect:
                    types = {
                        e.error.type if e.error else None
                        for e in events
                        if e.state is State.RETRYING
                    }
                    check(
                        types == {expect["retrying_error_type"]},
                        f"{label}: retry error types {types}",
                    )
        return f"{len(scenario['cases'])} cases"

    def json(self, scenario: Scenario) -> str:
        for text in scenario["cases"]:
            sent = json.loads(text)
            assigned = self.client.assign("EchoJson", Json(sent))
            action = self.client.wait(assigned.action.id, timeout=WAIT)
            check(action.state is State.SUCCEEDED, f"{text}: {action.state}")
            check(_exactly(action.result, sent), f"{text}: came back {action.result!r}")
        return f"{len(scenario['cases'])} documents"

    def bulk(self, scenario: Scenario) -> str:
        count = scenario["count"]
        requests = [
            ActionRequest(scenario["action"], [arg(a, i) for a in scenario["args"]])
            for i in range(count)
        ]
        assigned = self.client.assign_many(requests)
        check(len(assigned) == count, f"{len(assigned)} results for {count}")
        ids = [a.action.id for a in assigned]
        check(len(set(ids)) == count, "ids are not unique")
        finals: dict[str, Event] = {}
        with self.client.stream(after=0, action_ids=ids, timeout=WAIT) as events:
            for event in events:
                if event.state.finished:
                    finals[event.action_id] = event
                    if len(finals) == count:
                        break
        for i, action_id in enumerate(ids):
            event = finals[action_id]
            want = arg(scenario["result"], i)
            check(
                event.state is State.SUCCEEDED and same(event.result, want),
                f"action {i}: {event.state} {event.result!r}, want {want!r}",
            )
        return f"{count} actions"

    def reject(self, scenario: Scenario) -> str:
        skipped: list[str] = []
        for i, case in enumerate(scenario["cases"]):
            label = f"case {i} ({case['op']} {case.get('action', case.get('id'))})"
            try:
                if case["op"] == "assign":
                    args = [arg(a) for a in case["args"]]
                    self.client.assign(
                        case["action"], *args, options=options(case.get("options"))
                    )
                elif case["op"] == "get":
                    self.client.get(case["id"])
                else:
                    self.client.cancel(case["id"])
            except NotExpressible as exc:
                skipped.append(f"{label}: {exc}")
                continue
            except EchoError as exc:
                check(
                    exc.code.name == case["code"],
                    f"{label}: {exc.code.name}, want {case['code']}",
                )
                if "field" in case:
                    fields = [v.field for v in exc.field_violations]
                    check(case["field"] in fields, f"{label}: fields {fields}")
                continue
            raise MismatchError(f"{label}: accepted")
        note = f"; not expressible: {skipped}" if skipped else ""
        return f"{len(scenario['cases']) - len(skipped)} cases{note}"

    def cancel(self, scenario: Scenario) -> str:
        args = [arg(a) for a in scenario["args"]]
        action_id = self.client.assign(scenario["action"], *args).action.id
        started = time.monotonic()
        with self.client.stream(after=0, action_ids=[action_id], timeout=WAIT) as s:
            for event in s:
                if event.state is State.RUNNING:
                    break
        self.client.cancel(action_id, "interop")
        action = self.client.wait(action_id, timeout=WAIT)
        elapsed_ms = (time.monotonic() - started) * 1000
        check(action.state is State.CANCELLED, f"state {action.state}")
        check(elapsed_ms < scenario["within_ms"], f"cancelled after {elapsed_ms} ms")
        return f"cancelled after {elapsed_ms:.0f} ms"

    def deadline(self, scenario: Scenario) -> str:
        args = [arg(a) for a in scenario["args"]]
        action_id = self.client.assign(scenario["action"], *args).action.id
        started = time.monotonic()
        try:
            self.client.wait(action_id, timeout=_ms(scenario["wait_ms"]))
        except DeadlineExceededError:
            pass
        else:
            raise MismatchError("the wait returned before its deadline")
        finally:
            self.client.cancel(action_id, "interop cleanup")
        elapsed_ms = (time.monotonic() - started) * 1000
        check(elapsed_ms < scenario["within_ms"], f"gave up after {elapsed_ms} ms")
        return f"gave up after {elapsed_ms:.0f} ms"

    def resume(self, scenario: Scenario) -> str:
        name, count = scenario["action"], scenario["immediate"] + scenario["delayed"]
        delayed = Options(delay=_ms(scenario["delay_ms"]))
        ids = [
            self.client.assign(name, f"now {i}").action.id
            for i in range(scenario["immediate"])
        ] + [
            self.client.assign(name, f"later {i}", options=delayed).action.id
            for i in range(scenario["delayed"])
        ]
        proxy = Proxy(self.target)
        try:
            seen = _follow(proxy, ids, scenario)
        finally:
            proxy.close()
        truth = _follow_direct(self.client, ids, count)
        got = [e.sequence for e in seen]
        check(got == sorted(set(got)), f"sequences out of order or repeated: {got}")
        check(got == [e.sequence for e in truth], f"saw {got}, journal has {truth}")
        check(proxy.accepted >= 2, f"{proxy.accepted} connections: never reconnected")
        return f"{len(got)} events over {proxy.accepted} connections"

    def state_filter(self, scenario: Scenario) -> str:
        args = [arg(a) for a in scenario["args"]]
        action_id = self.client.assign(scenario["action"], *args).action.id
        states = {State(name.lower()) for name in scenario["states"]}
        want = scenario["events"]
        seen: list[Event] = []
        with self.client.stream(
            after=0, action_ids=[action_id], states=scenario["states"], timeout=WAIT
        ) as events:
            for event in events:
                seen.append(event)
                if len(seen) == len(want):
                    break
        # Every event of the action, now that it is final: those in the
        # states asked for are what the stream had to deliver, no more.
        journal = self.events_of(action_id)
        matching = [e.sequence for e in journal if e.state in states]
        got = [e.sequence for e in seen]
        check(
            got == matching, f"saw {got}, the journal's matching events are {matching}"
        )
        check(len(journal) > len(seen), f"the journal has only {len(journal)} events")
        for i, (event, expect) in enumerate(zip(seen, want, strict=True)):
            state = State(expect["state"].lower())
            check(event.state is state, f"event {i}: {event.state}, want {state}")
            if "result" in expect:
                result = arg(expect["result"])
                check(same(event.result, result), f"event {i}: {event.result!r}")
        return f"{len(seen)} of the action's {len(journal)} events"

    def session(self, scenario: Scenario) -> str:
        with self.client.connect() as session:
            owners: dict[str, str] = {}
            results: dict[str, object] = {}
            for item in scenario["assigns"]:
                args = (arg(a) for a in item["args"])
                session.assign(item["action"], *args, request_id=item["request_id"])
            bad = scenario["bad"]
            session.assign(
                bad["action"],
                *(arg(a) for a in bad["args"]),
                request_id=bad["request_id"],
            )
            pending = {item["request_id"] for item in scenario["assigns"]}
            failed = False
            deadline = time.monotonic() + WAIT.total_seconds()
            for message in session:
                check(time.monotonic() < deadline, "the session took too long")
                if message.kind == "assigned" and message.assigned is not None:
                    owners[message.assigned.action.id] = message.request_id
                elif message.kind == "error" and message.error is not None:
                    check(message.request_id == bad["request_id"], f"{message.error}")
                    check(message.error.code.name == bad["code"], f"{message.error}")
                    fields = [v.field for v in message.error.field_violations]
                    check(bad["field"] in fields, f"fields {fields}")
                    failed = True
                elif message.kind == "event" and message.event is not None:
                    event = message.event
                    check(
                        owners.get(event.action_id) == message.request_id,
                        f"event of {event.action_id} under {message.request_id}",
                    )
                    if event.state.finished:
                        results[message.request_id] = event.result
                        pending.discard(message.request_id)
                if not pending and failed:
                    break
            for item in scenario["assigns"]:
                want = arg(item["result"])
                got = results[item["request_id"]]
                check(same(got, want), f"{item['request_id']}: {got!r}, want {want!r}")
        return f"{len(owners)} actions, one refused"

    def trace(self, scenario: Scenario) -> str:
        traceparent = scenario["traceparent"]
        # echo_client has no trace-context option; metadata is its way to
        # send a traceparent.
        with Client(self.target, metadata=[("traceparent", traceparent)]) as traced:
            assigned = traced.assign("TraceId")
            action = traced.wait(assigned.action.id, timeout=WAIT)
        trace_id = traceparent.split("-")[1]
        check(action.result == trace_id, f"ran in trace {action.result!r}")
        return f"ran in trace {trace_id}"


def _exactly(got: object, want: object) -> bool:
    """Equal, with every number of the same type (1 is not 1.0)."""
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(_exactly(got[k], want[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_exactly(g, w) for g, w in zip(got, want, strict=True))
        )
    return same(got, want)


def _follow(proxy: Proxy, ids: list[str], scenario: Scenario) -> list[Event]:
    """Events of ``ids`` through the proxy, cut once the immediate ones ended."""
    seen: list[Event] = []
    finished: set[str] = set()
    immediate = set(ids[: scenario["immediate"]])
    was_cut = False
    with (
        Client(proxy.address) as via_proxy,
        via_proxy.stream(after=0, action_ids=ids, timeout=WAIT) as events,
    ):
        for event in events:
            seen.append(event)
            if event.state.finished:
                finished.add(event.action_id)
            if not was_cut and immediate <= finished:
                proxy.cut(_ms(scenario["outage_ms"]) or timedelta(0))
                was_cut = True
            if len(finished) == len(ids):
                break
    return seen


def _follow_direct(client: Client, ids: list[str], count: int) -> list[Event]:
    out: list[Event] = []
    finished: set[str] = set()
    with client.stream(after=0, action_ids=ids, timeout=WAIT) as events:
        for event in events:
            out.append(event)
            if event.state.finished:
                finished.add(event.action_id)
                if len(finished) == count:
                    break
    return out


PLAYERS: dict[str, Callable[[Runner, Scenario], str]] = {
    "run": Runner.run,
    "json": Runner.json,
    "bulk": Runner.bulk,
    "reject": Runner.reject,
    "cancel": Runner.cancel,
    "deadline": Runner.deadline,
    "resume": Runner.resume,
    "state_filter": Runner.state_filter,
    "session": Runner.session,
    "trace": Runner.trace,
}


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Keep stray output off stdout, which carries the results."""
    real = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = real


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS)
    parser.add_argument("--only", action="append", default=[], help="a scenario name")
    options_ = parser.parse_args()
    scenarios = json.loads(options_.scenarios.read_text())["scenarios"]
    passed = failed = 0
    with Client(options_.target, timeout=timedelta(seconds=10)) as client:
        runner = Runner(client, options_.target)
        for scenario in scenarios:
            if options_.only and scenario["name"] not in options_.only:
                continue
            with _quiet_stdout():
                try:
                    detail, ok = PLAYERS[scenario["kind"]](runner, scenario), True
                except Exception as exc:  # reported in the result line, not hidden
                    detail, ok = f"{type(exc).__name__}: {exc}", False
            passed, failed = passed + ok, failed + (not ok)
            line = {"scenario": scenario["name"], "ok": ok, "detail": detail}
            print(json.dumps(line), flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
