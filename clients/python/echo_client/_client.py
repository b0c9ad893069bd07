"""The synchronous client.

    with Client("localhost:50051") as echo:
        assigned = echo.assign("Hash", "notes.txt")
        done = echo.wait(assigned.action.id, timeout=timedelta(seconds=30))
        print(done.state, done.result)

Every method takes ``timeout`` (a ``timedelta``); None means the client's
default for unary calls and no deadline for streams. Failures raise the
``EchoError`` subclass of their status code.

Only the I/O lives here, as in the asyncio client: requests are built by
``_requests``, answers and errors read by ``_answers``, each unary call is
described by ``_unary``, and an event stream's reconnect decisions are made
by ``_cursor``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import grpc

from echo_client import _answers as answers
from echo_client import _requests as requests
from echo_client import _unary as unary
from echo_client._answers import SessionMessage, ShutdownReport
from echo_client._call import (
    DEFAULT_TARGET,
    Backoff,
    Deadline,
    call_metadata,
    channel_options,
    unary_timeout,
)
from echo_client._cursor import Reopen, Step, StreamCursor
from echo_client._errors import error_from_rpc
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
    StateLike,
)

__all__ = ["Client", "EventStream", "Session"]

_MIB = 1 << 20

T = TypeVar("T")


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

    def _run(self, call: unary.UnaryCall[T], timeout: timedelta | None) -> T:
        method = getattr(self._stub, call.method)
        try:
            response = method(
                call.request,
                timeout=unary_timeout(timeout, self._timeout),
                metadata=call_metadata(self._metadata, call.metadata),
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        return call.answer(response)

    def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        timeout: timedelta | None = None,
    ) -> Assigned:
        """Assign one action; returns once it is durable on the server."""
        return self._run(unary.assign(name, args, options, metadata), timeout)

    def assign_many(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        """Assign a batch in one journal transaction: all or none."""
        return self._run(unary.assign_many(actions), timeout)

    def assign_stream(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        chunk: int = 256,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        """Send actions as a client stream, ``chunk`` per message; the server
        journals them together when the stream ends: all or none."""
        return self._run(unary.assign_stream(actions, chunk), timeout)

    def get(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        return self._run(unary.get(action_id), timeout)

    def cancel(
        self, action_id: str, reason: str = "", *, timeout: timedelta | None = None
    ) -> Action:
        """Cancel an action: at once when waiting, through its token when running."""
        return self._run(unary.cancel(action_id, reason), timeout)

    def list_signatures(self, *, timeout: timedelta | None = None) -> list[Signature]:
        return self._run(unary.list_signatures(), timeout)

    def shutdown(
        self,
        admin_token: str,
        *,
        grace: timedelta | None = None,
        timeout: timedelta | None = None,
    ) -> ShutdownReport:
        """Ask the server to drain and stop; needs the server's admin token."""
        return self._run(unary.shutdown(admin_token, grace), timeout)

    # -- events -----------------------------------------------------------------

    def stream(
        self,
        *,
        after: int | None = None,
        action_ids: Iterable[str] = (),
        names: Iterable[str] = (),
        states: Iterable[StateLike] = (),
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
            states: only events in these states (``State`` values, their
                names, or the contract's numbers), e.g. ``FINAL_STATES`` for
                results alone; empty means all. A reconnect asks for them
                again. The server refuses UNSPECIFIED or an unknown number
                with ``InvalidArgumentError``, which ends the stream.
            heartbeat: ask the server for this heartbeat interval.
            reconnect: reopen a broken stream (with jittered backoff) and
                resume after the last sequence seen.
            timeout: overall deadline of the stream; None for none.
            backoff: the reconnect delays; default 0.1s doubling to 5s, giving
                up after 60s of failures in a row.
        """
        return EventStream(
            self,
            requests.stream(
                after=after,
                action_ids=action_ids,
                names=names,
                heartbeat=heartbeat,
                states=states,
            ),
            reconnect=reconnect,
            deadline=Deadline(timeout),
            backoff=backoff,
        )

    def wait(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        """Block until the action finished; returns it in its final state.

        Opens an event stream for the action's final states first, then
        reads the action: if it already finished that is the answer,
        otherwise its final event is. Raises ``DeadlineExceededError`` when
        ``timeout`` passes first.
        """
        deadline = Deadline(timeout)
        with EventStream(
            self, requests.wait_stream(action_id), reconnect=True, deadline=deadline
        ) as events:
            events.start()
            action = self.get(action_id, timeout=deadline.left())
            if action.finished:
                return action
            for event in events:
                if event.finished:
                    return self.get(action_id, timeout=deadline.left())
        raise answers.wait_ended_early(action_id)

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


class EventStream(StreamCursor, Iterator[Event]):
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
        super().__init__(
            request, reconnect=reconnect, deadline=deadline, backoff=backoff
        )
        self._client = client
        # The open call, owned by the reading thread; ``close`` may cancel it
        # from any thread, which ends a blocked read with CANCELLED.
        self._call: Any = None
        self._closed = threading.Event()

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
                raise answers.stream_not_started()
            if self._started(message):
                return self.last_sequence or 0

    def __next__(self) -> Event:
        while True:
            message = self._pending.popleft() if self._pending else self._read()
            if message is None:
                raise StopIteration
            event = self._event(message)
            if event is not None:
                return event

    def _read(self) -> echo_service_pb2.StreamResponse | None:
        """The next event or heartbeat, None once the stream is over; the
        cursor decides what a break or an end means."""
        step: Step
        while not self._closed.is_set():
            if self._call is None:
                self._call = self._client._open_stream(
                    self._resume_request(), self._deadline
                )
            try:
                step = self._received(next(self._call))
            except StopIteration:
                step = self._broken(None)
            except grpc.RpcError as exc:
                if self._closed.is_set():
                    return None
                step = self._broken(exc)
            if isinstance(step, echo_service_pb2.StreamResponse):
                return step
            self._call = None
            if isinstance(step, Reopen):
                self._closed.wait(step.delay)
            elif step is None:
                return None
            else:
                raise step
        return None


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
        # Sends from any thread go through this queue; the call's own thread
        # drains it until the None that ends the request stream.
        self._requests: queue.SimpleQueue[echo_service_pb2.ConnectRequest | None] = (
            queue.SimpleQueue()
        )
        self._ids = requests.RequestIds()
        self._call = stub.Connect(self._outgoing(), metadata=metadata)
        self.auto_ack = True

    def _outgoing(self) -> Iterator[echo_service_pb2.ConnectRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _send(self, request: echo_service_pb2.ConnectRequest) -> str:
        self._requests.put(request)
        return request.request_id

    def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> str:
        rid = self._ids.take(request_id)
        return self._send(requests.connect_assign(rid, name, args, options, metadata))

    def cancel(
        self, action_id: str, reason: str = "", *, request_id: str | None = None
    ) -> str:
        rid = self._ids.take(request_id)
        return self._send(requests.connect_cancel(rid, action_id, reason))

    def subscribe(
        self,
        *,
        after: int | None = None,
        action_ids: Iterable[str] = (),
        names: Iterable[str] = (),
        states: Iterable[StateLike] = (),
        heartbeat: timedelta | None = None,
        request_id: str | None = None,
    ) -> str:
        rid = self._ids.take(request_id)
        return self._send(
            requests.connect_subscribe(
                rid,
                after=after,
                action_ids=action_ids,
                names=names,
                heartbeat=heartbeat,
                states=states,
            )
        )

    def ack(self, sequence: int) -> None:
        self._send(requests.connect_ack(self._ids.take(None), sequence))

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
            error = answers.session_error(exc)
            if error is None:
                raise StopIteration from None
            raise error from exc
        out = SessionMessage(message)
        sequence = answers.ack_due(out, auto_ack=self.auto_ack)
        if sequence is not None:
            self.ack(sequence)
        return out
