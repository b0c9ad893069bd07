"""The asyncio client: the same calls as ``Client``, awaited.

    async with AsyncClient("localhost:50051") as echo:
        assigned = await echo.assign("Add", 2, 40)
        done = await echo.wait(assigned.action.id, timeout=timedelta(seconds=10))
        async for event in echo.stream(after=0):
            ...

A channel belongs to the event loop it was made on: make the client inside
the loop that uses it.

As in ``_client``, only the I/O lives here; requests, answers, errors and an
event stream's reconnect decisions come from the modules both clients share.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import grpc
import grpc.aio

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

__all__ = ["AsyncClient", "AsyncEventStream", "AsyncSession"]

_MIB = 1 << 20

T = TypeVar("T")


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

    async def _run(self, call: unary.UnaryCall[T], timeout: timedelta | None) -> T:
        method = getattr(self._stub, call.method)
        try:
            response = await method(
                call.request,
                timeout=unary_timeout(timeout, self._timeout),
                metadata=call_metadata(self._metadata, call.metadata),
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        return call.answer(response)

    async def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        timeout: timedelta | None = None,
    ) -> Assigned:
        return await self._run(unary.assign(name, args, options, metadata), timeout)

    async def assign_many(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        return await self._run(unary.assign_many(actions), timeout)

    async def assign_stream(
        self,
        actions: Iterable[ActionRequest | action_pb2.Action],
        *,
        chunk: int = 256,
        timeout: timedelta | None = None,
    ) -> list[Assigned]:
        return await self._run(unary.assign_stream(actions, chunk), timeout)

    async def get(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        return await self._run(unary.get(action_id), timeout)

    async def cancel(
        self, action_id: str, reason: str = "", *, timeout: timedelta | None = None
    ) -> Action:
        return await self._run(unary.cancel(action_id, reason), timeout)

    async def list_signatures(
        self, *, timeout: timedelta | None = None
    ) -> list[Signature]:
        return await self._run(unary.list_signatures(), timeout)

    async def shutdown(
        self,
        admin_token: str,
        *,
        grace: timedelta | None = None,
        timeout: timedelta | None = None,
    ) -> ShutdownReport:
        return await self._run(unary.shutdown(admin_token, grace), timeout)

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
    ) -> AsyncEventStream:
        """Events as an async iterator; arguments as for ``Client.stream``."""
        return AsyncEventStream(
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

    async def wait(self, action_id: str, *, timeout: timedelta | None = None) -> Action:
        """Wait until the action finished; see ``Client.wait``."""
        deadline = Deadline(timeout)
        async with AsyncEventStream(
            self, requests.wait_stream(action_id), reconnect=True, deadline=deadline
        ) as events:
            await events.start()
            action = await self.get(action_id, timeout=deadline.left())
            if action.finished:
                return action
            async for event in events:
                if event.finished:
                    return await self.get(action_id, timeout=deadline.left())
        raise answers.wait_ended_early(action_id)

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


class AsyncEventStream(StreamCursor):
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
        super().__init__(
            request, reconnect=reconnect, deadline=deadline, backoff=backoff
        )
        self._client = client
        # The open call; everything here runs on the client's event loop.
        self._call: Any = None
        self._closed = False

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
                raise answers.stream_not_started()
            if self._started(message):
                return self.last_sequence or 0

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        while True:
            message = self._pending.popleft() if self._pending else await self._read()
            if message is None:
                raise StopAsyncIteration
            event = self._event(message)
            if event is not None:
                return event

    async def _read(self) -> echo_service_pb2.StreamResponse | None:
        step: Step
        while not self._closed:
            if self._call is None:
                self._call = self._client._open_stream(
                    self._resume_request(), self._deadline
                )
            try:
                message: Any = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    return None
                step = self._broken(exc)
            except asyncio.CancelledError:
                if self._closed:
                    return None
                raise
            else:
                # EOF: ended without a StreamEnd, the connection was cut.
                step = (
                    self._broken(None)
                    if message is grpc.aio.EOF
                    else self._received(message)
                )
            if isinstance(step, echo_service_pb2.StreamResponse):
                return step
            self._call = None
            if isinstance(step, Reopen):
                await asyncio.sleep(step.delay)
            elif step is None:
                return None
            else:
                raise step
        return None


class AsyncSession:
    """The asyncio twin of ``Session``: ``await`` the sends, ``async for``
    the messages."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._ids = requests.RequestIds()
        self.auto_ack = True

    async def _send(self, request: echo_service_pb2.ConnectRequest) -> str:
        await self._call.write(request)
        return request.request_id

    async def assign(
        self,
        name: str,
        *args: object,
        options: Options | action_pb2.ActionOptions | None = None,
        metadata: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> str:
        rid = self._ids.take(request_id)
        return await self._send(
            requests.connect_assign(rid, name, args, options, metadata)
        )

    async def cancel(
        self, action_id: str, reason: str = "", *, request_id: str | None = None
    ) -> str:
        rid = self._ids.take(request_id)
        return await self._send(requests.connect_cancel(rid, action_id, reason))

    async def subscribe(
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
        return await self._send(
            requests.connect_subscribe(
                rid,
                after=after,
                action_ids=action_ids,
                names=names,
                heartbeat=heartbeat,
                states=states,
            )
        )

    async def ack(self, sequence: int) -> None:
        await self._send(requests.connect_ack(self._ids.take(None), sequence))

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
                error = answers.session_error(exc)
                if error is None:
                    return
                raise error from exc
            if message is grpc.aio.EOF:
                return
            out = SessionMessage(message)
            sequence = answers.ack_due(out, auto_ack=self.auto_ack)
            if sequence is not None:
                await self.ack(sequence)
            yield out
