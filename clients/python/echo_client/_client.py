"""The synchronous client.

    with Client("localhost:50051") as echo:
        assigned = echo.assign("Hash", "notes.txt")
        done = echo.wait(assigned.action.id, timeout=timedelta(seconds=30))
        print(done.state, done.result)

Every method takes ``timeout`` (a ``timedelta``); None means the client's
default for unary calls and no deadline for streams. Failures raise the
``EchoError`` subclass of their status code.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import grpc

from echo_client._call import (
    DEFAULT_TARGET,
    RETRYABLE_STREAM_CODES,
    Backoff,
    Deadline,
    call_metadata,
    channel_options,
)
from echo_client._errors import EchoError, error_from_request_error, error_from_rpc
from echo_client._proto.echo.v1 import (
    action_pb2,
    echo_service_pb2,
    echo_service_pb2_grpc,
)
from echo_client._types import (
    Action,
    ActionRequest,
    Assigned,
    Event,
    Options,
    Signature,
    StreamEnd,
    requests_to_proto,
)

__all__ = [
    "Client",
    "EventStream",
    "Session",
    "SessionMessage",
    "ShutdownReport",
    "stream_request",
]

_MIB = 1 << 20


class ShutdownReport:
    """What the server said when it began to drain."""

    def __init__(self, running: int, waiting: int) -> None:
        self.running = running
        self.waiting = waiting

    def __repr__(self) -> str:
        return f"ShutdownReport(running={self.running}, waiting={self.waiting})"


def _seconds(timeout: timedelta | None) -> float | None:
    return None if timeout is None else timeout.total_seconds()


def stream_request(
    *,
    after: int | None,
    action_ids: Iterable[str],
    names: Iterable[str],
    heartbeat: timedelta | None,
) -> echo_service_pb2.StreamRequest:
    request = echo_service_pb2.StreamRequest(
        action_ids=list(action_ids), action_names=list(names)
    )
    if after is not None:
        request.after_sequence = after
    if heartbeat is not None:
        request.heartbeat_interval.FromTimedelta(heartbeat)
    return request


def single_action(
    name: str,
    args: Sequence[object],
    options: Options | action_pb2.ActionOptions | None,
    metadata: dict[str, str] | None,
) -> action_pb2.Action:
    return ActionRequest(name, tuple(args), options, metadata or {}).to_proto()


class Client:
    """A synchronous Echo client over one gRPC channel. Thread-safe.

    Args:
        target: ``host:port`` of the server.
        timeout: default deadline of unary calls; None for none.
        credentials: TLS channel credentials; None for plaintext.
        metadata: sent with every call (e.g. an ``authorization`` header).
        max_message_bytes: largest message sent or received.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: timedelta | None = timedelta(seconds=30),
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        max_message_bytes: int = 64 * _MIB,
    ) -> None:
        options = channel_options(max_message_bytes)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = echo_service_pb2_grpc.EchoServiceStub(self._channel)
        self._timeout = timeout
        self._metadata = tuple(metadata)
        self.target = target

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------

    def _unary(
        self,
        method: Any,
        request: Any,
        timeout: timedelta | None,
        deadline: Deadline | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> Any:
        seconds = (
            deadline.remaining()
            if deadline is not None
            else _seconds(timeout if timeout is not None else self._timeout)
        )
        try:
            return method(
                request, timeout=seconds, metadata=call_metadata(self._metadata, extra)
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        timeout: timedelta | None = None,
    ) -> Assigned:
        """Assign one action; returns once it is durable on the server."""
        request = echo_service_pb2.AssignRequest(
            action=single_action(name, args, options, metadata)
        )
        return Assigned.from_proto(self._unary(self._stub.Assign, request, timeout))

    def assign_many(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        """Assign a batch in one journal transaction: all or none."""
        request = echo_service_pb2.AssignManyRequest(actions=requests_to_proto(actions))
        response = self._unary(self._stub.AssignMany, request, timeout)
        return [Assigned.from_proto(r) for r in response.results]

    def assign_stream(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        chunk: int = 256,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        """Send actions as a client stream, ``chunk`` per message; the server
        journals them together when the stream ends: all or none."""

        def messages() -> Iterator[echo_service_pb2.AssignStreamRequest]:
            batch: list[action_pb2.Action] = []
            for action in requests_to_proto(actions):
                batch.append(action)
                if len(batch) >= chunk:
                    yield echo_service_pb2.AssignStreamRequest(actions=batch)
                    batch = []
            if batch:
                yield echo_service_pb2.AssignStreamRequest(actions=batch)

        response = self._unary(self._stub.AssignStream, messages(), timeout)
        return [Assigned.from_proto(r) for r in response.results]

    def get(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        request = echo_service_pb2.GetActionRequest(id=action_id)
        return Action.from_proto(
            self._unary(self._stub.GetAction, request, timeout).action
        )

    def cancel(
        self, action_id: str, reason: str = "", *, timeout: timedelta | None = None
    ) -> Action:
        """Cancel an action: at once when waiting, through its token when running."""
        request = echo_service_pb2.CancelRequest(id=action_id, reason=reason)
        return Action.from_proto(
            self._unary(self._stub.Cancel, request, timeout).action
        )

    def list_signatures(self, *, timeout: timedelta | None = None) -> list[Signature]:
        response = self._unary(
            self._stub.ListSignatures, echo_service_pb2.ListSignaturesRequest(), timeout
        )
        return [Signature.from_proto(s) for s in response.signatures]

    def shutdown(
        self,
        admin_token: str,
        *,
        grace: timedelta | None = None,
        timeout: timedelta | None = None,
    ) -> ShutdownReport:
        """Ask the server to drain and stop; needs the server's admin token."""
        request = echo_service_pb2.ShutdownRequest()
        if grace is not None:
            request.grace.FromTimedelta(grace)
        response = self._unary(
            self._stub.Shutdown,
            request,
            timeout,
            extra=[("x-echo-admin-token", admin_token)],
        )
        return ShutdownReport(response.running, response.waiting)

    # -- events -----------------------------------------------------------------

    def stream(
        self,
        *,
        after: int | None = None,
        action_ids: Iterable[str] = (),
        names: Iterable[str] = (),
        heartbeat: timedelta | None = None,
        reconnect: bool = True,
        timeout: timedelta | None = None,
        backoff: Backoff | None = None,
    ) -> EventStream:
        """Events as an iterator; see ``EventStream``.

        Args:
            after: replay journaled events above this sequence first; None
                for live events only.
            action_ids, names: filters; empty means all.
            heartbeat: ask the server for this heartbeat interval.
            reconnect: reopen a broken stream (with jittered backoff) and
                resume after the last sequence seen.
            timeout: overall deadline of the stream; None for none.
            backoff: the reconnect delays; default 0.1s doubling to 5s, giving
                up after 60s of failures in a row.
        """
        return EventStream(
            self,
            stream_request(
                after=after, action_ids=action_ids, names=names, heartbeat=heartbeat
            ),
            reconnect=reconnect,
            deadline=Deadline(timeout),
            backoff=backoff,
        )

    def wait(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        """Block until the action finished; returns it in its final state.

        Opens an event stream for the action first, then reads the action:
        if it already finished that is the answer, otherwise its final event
        is. Raises ``DeadlineExceededError`` when ``timeout`` passes first.
        """
        deadline = Deadline(timeout)
        with EventStream(
            self,
            stream_request(
                after=None, action_ids=[action_id], names=(), heartbeat=None
            ),
            reconnect=True,
            deadline=deadline,
        ) as events:
            events.start()
            action = self.get(action_id, timeout=_timedelta(deadline.remaining()))
            if action.finished:
                return action
            for event in events:
                if event.finished:
                    return self.get(action_id, timeout=_timedelta(deadline.remaining()))
        raise EchoError(f"the event stream of {action_id} ended early")

    def connect(self) -> Session:
        """Open a bidirectional session; see ``Session``."""
        return Session(self._stub, call_metadata(self._metadata))

    # -- for EventStream ----------------------------------------------------------

    def _open_stream(
        self, request: echo_service_pb2.StreamRequest, deadline: Deadline
    ) -> Any:
        return self._stub.Stream(
            request,
            timeout=deadline.remaining(),
            metadata=call_metadata(self._metadata),
        )


def _timedelta(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


class EventStream(Iterator[Event]):
    """Events of a ``Stream`` call, reconnecting and resuming when it breaks.

    Heartbeats are consumed here: they only advance ``last_sequence``, the
    sequence up to which every matching event was seen, which is where a
    reconnect resumes. Events already seen are skipped after a resume. The
    iteration stops when the server ends the stream for good (a StreamEnd
    that is not retryable, kept in ``end``) or when ``close`` is called.
    """

    def __init__(
        self,
        client: Client,
        request: echo_service_pb2.StreamRequest,
        *,
        reconnect: bool,
        deadline: Deadline,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._request = request
        self._reconnect = reconnect
        self._deadline = deadline
        self._backoff = backoff or Backoff()
        self._call: Any = None
        self._closed = threading.Event()
        self.last_sequence: int | None = (
            request.after_sequence if request.HasField("after_sequence") else None
        )
        self.end: StreamEnd | None = None
        self.reconnects = 0
        self._pending: collections.deque[echo_service_pb2.StreamResponse] = (
            collections.deque()
        )

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream; a blocked ``next`` returns at once. Any thread."""
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()

    def start(self) -> int:
        """Open the stream and wait for the server's first heartbeat, which
        says the subscription is in place; returns its sequence, from which
        on the stream misses nothing."""
        while True:
            message = self._read()
            if message is None:
                raise EchoError("the stream ended before it started")
            if message.WhichOneof("kind") == "heartbeat":
                return self.last_sequence or 0
            self._pending.append(message)

    def __next__(self) -> Event:
        while True:
            message = self._pending.popleft() if self._pending else self._read()
            if message is None:
                raise StopIteration
            if message.WhichOneof("kind") != "event":
                continue
            event = message.event
            if self.last_sequence is not None and event.sequence <= self.last_sequence:
                continue  # seen before a reconnect
            self.last_sequence = event.sequence
            return Event.from_proto(event)

    def _read(self) -> echo_service_pb2.StreamResponse | None:
        """The next event or heartbeat; reconnects and ends are handled here.
        None once the stream is over."""
        while not self._closed.is_set():
            if self._call is None:
                request = echo_service_pb2.StreamRequest()
                request.CopyFrom(self._request)
                if self.last_sequence is not None:
                    request.after_sequence = self.last_sequence
                self._call = self._client._open_stream(request, self._deadline)
            try:
                message: echo_service_pb2.StreamResponse = next(self._call)
            except StopIteration:
                # Ended without a StreamEnd: the connection was cut.
                self._broken(None)
                continue
            except grpc.RpcError as exc:
                if self._closed.is_set():
                    return None
                self._broken(exc)
                continue
            self._backoff.reset()
            kind = message.WhichOneof("kind")
            if kind == "heartbeat":
                self.last_sequence = max(
                    self.last_sequence or 0, message.heartbeat.last_sequence
                )
                return message
            if kind == "event":
                return message
            if kind == "end":
                end = message.end
                self.end = StreamEnd(end.reason, end.retryable, end.last_sequence)
                self._call = None
                if not (end.retryable and self._reconnect):
                    return None
                self.last_sequence = max(self.last_sequence or 0, end.last_sequence)
                self._pause(None)
        return None

    def _broken(self, exc: grpc.RpcError | None) -> None:
        self._call = None
        code = exc.code() if exc is not None else grpc.StatusCode.UNAVAILABLE
        if not self._reconnect or code not in RETRYABLE_STREAM_CODES:
            raise (
                error_from_rpc(exc)
                if exc is not None
                else EchoError("the stream was cut")
            )
        self._pause(exc)

    def _pause(self, exc: grpc.RpcError | None) -> None:
        delay = self._backoff.next_delay()
        if delay is None or self._deadline.expired:
            if exc is not None:
                raise error_from_rpc(exc)
            raise EchoError("the server kept ending the stream; gave up")
        remaining = self._deadline.remaining()
        if remaining is not None:
            delay = min(delay, remaining)
        self.reconnects += 1
        self._closed.wait(delay)


class SessionMessage:
    """One message of a session, tied to ``request_id``.

    ``kind`` is one of ``assigned``, ``cancelled``, ``subscribed``, ``event``,
    ``error``, ``heartbeat`` or ``end``; the matching attribute is set.
    """

    __slots__ = (
        "assigned",
        "cancelled",
        "end",
        "error",
        "event",
        "kind",
        "last_sequence",
        "request_id",
    )

    def __init__(self, message: echo_service_pb2.ConnectResponse) -> None:
        self.request_id = message.request_id
        self.kind: str = message.WhichOneof("kind") or ""
        self.assigned: Assigned | None = None
        self.cancelled: Action | None = None
        self.event: Event | None = None
        self.error: EchoError | None = None
        self.end: StreamEnd | None = None
        self.last_sequence: int | None = None
        if self.kind == "assigned":
            self.assigned = Assigned.from_proto(message.assigned)
        elif self.kind == "cancelled":
            self.cancelled = Action.from_proto(message.cancelled.action)
        elif self.kind == "event":
            self.event = Event.from_proto(message.event)
        elif self.kind == "error":
            self.error = error_from_request_error(message.error)
        elif self.kind == "end":
            end = message.end
            self.end = StreamEnd(end.reason, end.retryable, end.last_sequence)
        elif self.kind == "subscribed":
            self.last_sequence = message.subscribed.last_sequence
        elif self.kind == "heartbeat":
            self.last_sequence = message.heartbeat.last_sequence

    def __repr__(self) -> str:
        return f"SessionMessage({self.kind!r}, request_id={self.request_id!r})"


class Session(Iterator[SessionMessage]):
    """A Connect session: send requests, iterate over the answers and events.

    Each send returns the request id that its answers (and, for an assign,
    its action's events) carry. With ``auto_ack`` (the default) every event
    is acknowledged as soon as the iteration hands it out, which opens the
    server's flow-control window again. ``close_send`` tells the server no
    more requests come; it ends the session once every assigned action
    finished. ``close`` cancels the call.
    """

    def __init__(self, stub: Any, metadata: Sequence[tuple[str, str]]) -> None:
        self._requests: queue.SimpleQueue[echo_service_pb2.ConnectRequest | None] = (
            queue.SimpleQueue()
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._call = stub.Connect(self._outgoing(), metadata=metadata)
        self.auto_ack = True

    def _outgoing(self) -> Iterator[echo_service_pb2.ConnectRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _request_id(self, request_id: str | None) -> str:
        if request_id:
            return request_id
        with self._lock:
            return f"r{next(self._ids)}"

    def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> str:
        rid = self._request_id(request_id)
        action = single_action(name, args, options, metadata)
        self._requests.put(
            echo_service_pb2.ConnectRequest(
                request_id=rid, assign=echo_service_pb2.AssignRequest(action=action)
            )
        )
        return rid

    def cancel(
        self, action_id: str, reason: str = "", *, request_id: str | None = None
    ) -> str:
        rid = self._request_id(request_id)
        self._requests.put(
            echo_service_pb2.ConnectRequest(
                request_id=rid,
                cancel=echo_service_pb2.CancelRequest(id=action_id, reason=reason),
            )
        )
        return rid

    def subscribe(
        self,
        *,
        after: int | None = None,
        action_ids: Iterable[str] = (),
        names: Iterable[str] = (),
        heartbeat: timedelta | None = None,
        request_id: str | None = None,
    ) -> str:
        rid = self._request_id(request_id)
        self._requests.put(
            echo_service_pb2.ConnectRequest(
                request_id=rid,
                subscribe=stream_request(
                    after=after, action_ids=action_ids, names=names, heartbeat=heartbeat
                ),
            )
        )
        return rid

    def ack(self, sequence: int) -> None:
        self._requests.put(
            echo_service_pb2.ConnectRequest(
                request_id=self._request_id(None),
                ack=echo_service_pb2.Ack(sequence=sequence),
            )
        )

    def send_raw(self, request: echo_service_pb2.ConnectRequest) -> None:
        """Send a request as given (tests use it for malformed ones)."""
        self._requests.put(request)

    def close_send(self) -> None:
        self._requests.put(None)

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __next__(self) -> SessionMessage:
        try:
            message = next(self._call)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise error_from_rpc(exc) from exc
        out = SessionMessage(message)
        if out.kind == "event" and self.auto_ack and out.event is not None:
            self.ack(out.event.sequence)
        return out
