"""The asyncio client: the same calls as ``Client``, awaited.

    async with AsyncClient("localhost:50051") as echo:
        assigned = await echo.assign("Add", 2, 40)
        done = await echo.wait(assigned.action.id, timeout=timedelta(seconds=10))
        async for event in echo.stream(after=0):
            ...

A channel belongs to the event loop it was made on: make the client inside
the loop that uses it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio

from echo_client._call import (
    DEFAULT_TARGET,
    RETRYABLE_STREAM_CODES,
    Backoff,
    Deadline,
    call_metadata,
    channel_options,
)
from echo_client._client import (
    SessionMessage,
    ShutdownReport,
    single_action,
    stream_request,
)
from echo_client._errors import EchoError, error_from_rpc
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

__all__ = ["AsyncClient", "AsyncEventStream", "AsyncSession"]

_MIB = 1 << 20


def _seconds(timeout: timedelta | None) -> float | None:
    return None if timeout is None else timeout.total_seconds()


class AsyncClient:
    """An asyncio Echo client over one ``grpc.aio`` channel.

    Args: as for ``Client``.
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
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=options
            )
        self._stub = echo_service_pb2_grpc.EchoServiceStub(self._channel)
        self._timeout = timeout
        self._metadata = tuple(metadata)
        self.target = target

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _unary(
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
            return await method(
                request, timeout=seconds, metadata=call_metadata(self._metadata, extra)
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        timeout: timedelta | None = None,
    ) -> Assigned:
        request = echo_service_pb2.AssignRequest(
            action=single_action(name, args, options, metadata)
        )
        return Assigned.from_proto(
            await self._unary(self._stub.Assign, request, timeout)
        )

    async def assign_many(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        request = echo_service_pb2.AssignManyRequest(actions=requests_to_proto(actions))
        response = await self._unary(self._stub.AssignMany, request, timeout)
        return [Assigned.from_proto(r) for r in response.results]

    async def assign_stream(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        chunk: int = 256,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        protos = requests_to_proto(actions)
        messages = [
            echo_service_pb2.AssignStreamRequest(actions=protos[i : i + chunk])
            for i in range(0, len(protos), chunk)
        ]
        response = await self._unary(self._stub.AssignStream, iter(messages), timeout)
        return [Assigned.from_proto(r) for r in response.results]

    async def get(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        request = echo_service_pb2.GetActionRequest(id=action_id)
        response = await self._unary(self._stub.GetAction, request, timeout)
        return Action.from_proto(response.action)

    async def cancel(
        self, action_id: str, reason: str = "", *, timeout: timedelta | None = None
    ) -> Action:
        request = echo_service_pb2.CancelRequest(id=action_id, reason=reason)
        response = await self._unary(self._stub.Cancel, request, timeout)
        return Action.from_proto(response.action)

    async def list_signatures(
        self, *, timeout: timedelta | None = None
    ) -> list[Signature]:
        response = await self._unary(
            self._stub.ListSignatures, echo_service_pb2.ListSignaturesRequest(), timeout
        )
        return [Signature.from_proto(s) for s in response.signatures]

    async def shutdown(
        self,
        admin_token: str,
        *,
        grace: timedelta | None = None,
        timeout: timedelta | None = None,
    ) -> ShutdownReport:
        request = echo_service_pb2.ShutdownRequest()
        if grace is not None:
            request.grace.FromTimedelta(grace)
        response = await self._unary(
            self._stub.Shutdown,
            request,
            timeout,
            extra=[("x-echo-admin-token", admin_token)],
        )
        return ShutdownReport(response.running, response.waiting)

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
    ) -> AsyncEventStream:
        """Events as an async iterator; arguments as for ``Client.stream``."""
        return AsyncEventStream(
            self,
            stream_request(
                after=after, action_ids=action_ids, names=names, heartbeat=heartbeat
            ),
            reconnect=reconnect,
            deadline=Deadline(timeout),
            backoff=backoff,
        )

    async def wait(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        """Wait until the action finished; see ``Client.wait``."""
        deadline = Deadline(timeout)
        async with AsyncEventStream(
            self,
            stream_request(
                after=None, action_ids=[action_id], names=(), heartbeat=None
            ),
            reconnect=True,
            deadline=deadline,
        ) as events:
            await events.start()
            left = deadline.remaining()
            action = await self.get(
                action_id, timeout=None if left is None else timedelta(seconds=left)
            )
            if action.finished:
                return action
            async for event in events:
                if event.finished:
                    left = deadline.remaining()
                    return await self.get(
                        action_id,
                        timeout=None if left is None else timedelta(seconds=left),
                    )
        raise EchoError(f"the event stream of {action_id} ended early")

    async def connect(self) -> AsyncSession:
        """Open a bidirectional session; see ``Session``."""
        return AsyncSession(self._stub.Connect(metadata=call_metadata(self._metadata)))

    def _open_stream(
        self, request: echo_service_pb2.StreamRequest, deadline: Deadline
    ) -> Any:
        return self._stub.Stream(
            request,
            timeout=deadline.remaining(),
            metadata=call_metadata(self._metadata),
        )


class AsyncEventStream:
    """The asyncio twin of ``EventStream``: reconnects, resumes, dedupes."""

    def __init__(
        self,
        client: AsyncClient,
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
        self._closed = False
        self._pending: collections.deque[echo_service_pb2.StreamResponse] = (
            collections.deque()
        )
        self.last_sequence: int | None = (
            request.after_sequence if request.HasField("after_sequence") else None
        )
        self.end: StreamEnd | None = None
        self.reconnects = 0

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    async def start(self) -> int:
        """Wait for the first heartbeat: the subscription is in place."""
        while True:
            message = await self._read()
            if message is None:
                raise EchoError("the stream ended before it started")
            if message.WhichOneof("kind") == "heartbeat":
                return self.last_sequence or 0
            self._pending.append(message)

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        while True:
            message = self._pending.popleft() if self._pending else await self._read()
            if message is None:
                raise StopAsyncIteration
            if message.WhichOneof("kind") != "event":
                continue
            event = message.event
            if self.last_sequence is not None and event.sequence <= self.last_sequence:
                continue
            self.last_sequence = event.sequence
            return Event.from_proto(event)

    async def _read(self) -> echo_service_pb2.StreamResponse | None:
        while not self._closed:
            if self._call is None:
                request = echo_service_pb2.StreamRequest()
                request.CopyFrom(self._request)
                if self.last_sequence is not None:
                    request.after_sequence = self.last_sequence
                self._call = self._client._open_stream(request, self._deadline)
            try:
                message: Any = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    return None
                await self._broken(exc)
                continue
            except asyncio.CancelledError:
                if self._closed:
                    return None
                raise
            if message is grpc.aio.EOF:
                await self._broken(None)
                continue
            assert isinstance(message, echo_service_pb2.StreamResponse)
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
                await self._pause(None)
        return None

    async def _broken(self, exc: grpc.aio.AioRpcError | None) -> None:
        self._call = None
        code = exc.code() if exc is not None else grpc.StatusCode.UNAVAILABLE
        if not self._reconnect or code not in RETRYABLE_STREAM_CODES:
            if exc is not None:
                raise error_from_rpc(exc)
            raise EchoError("the stream was cut")
        await self._pause(exc)

    async def _pause(self, exc: grpc.aio.AioRpcError | None) -> None:
        delay = self._backoff.next_delay()
        if delay is None or self._deadline.expired:
            if exc is not None:
                raise error_from_rpc(exc)
            raise EchoError("the server kept ending the stream; gave up")
        remaining = self._deadline.remaining()
        if remaining is not None:
            delay = min(delay, remaining)
        self.reconnects += 1
        await asyncio.sleep(delay)


class AsyncSession:
    """The asyncio twin of ``Session``: ``await`` the sends, ``async for``
    the messages."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._ids = itertools.count(1)
        self.auto_ack = True

    def _request_id(self, request_id: str | None) -> str:
        return request_id or f"r{next(self._ids)}"

    async def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> str:
        rid = self._request_id(request_id)
        action = single_action(name, args, options, metadata)
        await self._call.write(
            echo_service_pb2.ConnectRequest(
                request_id=rid, assign=echo_service_pb2.AssignRequest(action=action)
            )
        )
        return rid

    async def cancel(
        self, action_id: str, reason: str = "", *, request_id: str | None = None
    ) -> str:
        rid = self._request_id(request_id)
        await self._call.write(
            echo_service_pb2.ConnectRequest(
                request_id=rid,
                cancel=echo_service_pb2.CancelRequest(id=action_id, reason=reason),
            )
        )
        return rid

    async def subscribe(
        self,
        *,
        after: int | None = None,
        action_ids: Iterable[str] = (),
        names: Iterable[str] = (),
        heartbeat: timedelta | None = None,
        request_id: str | None = None,
    ) -> str:
        rid = self._request_id(request_id)
        await self._call.write(
            echo_service_pb2.ConnectRequest(
                request_id=rid,
                subscribe=stream_request(
                    after=after, action_ids=action_ids, names=names, heartbeat=heartbeat
                ),
            )
        )
        return rid

    async def ack(self, sequence: int) -> None:
        await self._call.write(
            echo_service_pb2.ConnectRequest(
                request_id=self._request_id(None),
                ack=echo_service_pb2.Ack(sequence=sequence),
            )
        )

    async def close_send(self) -> None:
        await self._call.done_writing()

    def close(self) -> None:
        self._call.cancel()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[SessionMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[SessionMessage]:
        while True:
            try:
                message = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED:
                    return
                raise error_from_rpc(exc) from exc
            if message is grpc.aio.EOF:
                return
            out = SessionMessage(message)
            if out.kind == "event" and self.auto_ack and out.event is not None:
                await self.ack(out.event.sequence)
            yield out
