"""The EchoService servicer: every RPC of the contract, on ``grpc.aio``.

Handlers run on the server's event loop. An assign is prepared on the loop
and then awaits the journal's durability future there, when the store offers
one (``Engine.submit_assign``); otherwise, like get and cancel that read the
journal, it goes to the runtime's bounded pool, so a burst of slow calls
queues there instead of stalling the loop, and the loop stays free for every
stream and for Shutdown. Streams
wait on ``Feed`` objects that hold no pool thread.

Every error leaves through ``_fail``, which maps it to one status code with
google.rpc details (``_status``); an exception nobody expected is logged and
answered INTERNAL, and the server goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import grpc.aio

from echo_service import errors
from echo_service._proto.echo.v1 import (
    action_pb2,
    echo_service_pb2,
    echo_service_pb2_grpc,
)
from echo_service.engine import ActionSpec, Assigned
from echo_service.errors import FieldViolation, InvalidArgument
from echo_service.server._common import (
    call_trace_context,
    cancel,
    heartbeat,
    heartbeat_interval,
    rename_paths,
    require_id,
    resume_point,
    stream_filters,
    subscribe,
)
from echo_service.server._connect import Session
from echo_service.server._convert import (
    action_to_proto,
    signature_to_proto,
    spec_from_proto,
)
from echo_service.server._feed import CLOSED, TIMEOUT, Feed
from echo_service.server._runtime import Runtime
from echo_service.server._security import check_admin
from echo_service.server._status import problem_for, rpc_status_for
from echo_service.store import Inserted

if TYPE_CHECKING:
    # The engine's package does not name this type yet.
    from echo_service.engine._engine import PendingAssign

__all__ = ["EchoServicer"]

logger = logging.getLogger(__name__)

_RETRY_WHILE_STOPPING = timedelta(seconds=1)
_PREPARE_ON_LOOP = 16
"""Batches up to this many actions are validated and prepared on the loop;
larger ones on the pool, so one big batch never stalls every stream."""
_LONGEST_GRACE = timedelta(hours=1)
"""A drain longer than this is a mistake, and would overflow the timers."""


class EchoServicer(echo_service_pb2_grpc.EchoServiceServicer):
    """The contract's RPCs over one ``Runtime``."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- helpers ------------------------------------------------------------

    async def _fail(
        self, context: grpc.aio.ServicerContext, exc: BaseException, rpc: str
    ) -> NoReturn:
        problem = problem_for(exc, rpc=rpc)
        await context.abort_with_status(rpc_status_for(problem))
        raise AssertionError("abort returned")  # pragma: no cover

    def _refuse_if_draining(self) -> None:
        if self._rt.draining:
            raise errors.Unavailable(
                "the server is shutting down", retry_after=_RETRY_WHILE_STOPPING
            )

    def _spec(
        self, action: action_pb2.Action, path: str, trace: dict[str, str]
    ) -> ActionSpec:
        return spec_from_proto(
            action,
            path=path,
            signatures=self._rt.signatures,
            limits=self._rt.limits,
            call_trace_context=trace,
        )

    def _assigned(self, assigned: Assigned) -> echo_service_pb2.AssignResponse:
        return echo_service_pb2.AssignResponse(
            action=action_to_proto(assigned.action, self._rt.signatures),
            duplicate=assigned.duplicate,
        )

    async def _assign_specs(
        self,
        specs: Sequence[ActionSpec],
        *,
        before_journal: Callable[[list[str]], None] | None = None,
    ) -> list[Assigned]:
        """Validate and prepare on the loop (a batch on the pool), then wait
        for the journal without holding a pool thread when the store can.

        ``before_journal`` sees the new ids before the actions are journaled,
        so a session can listen for them without missing an event.
        """
        self._refuse_if_draining()
        rt = self._rt
        engine = rt.engine
        if len(specs) <= _PREPARE_ON_LOOP:
            pending = engine.begin_assign(specs)
        else:
            pending = await rt.blocking(engine.begin_assign, list(specs))
        if before_journal is not None:
            before_journal(pending.ids)
        future = engine.submit_assign(pending)
        if future is None:
            return await rt.blocking(engine.finish_assign, pending)
        # Shielded: a caller that goes away must not cancel the write (the
        # writer may have taken it) nor skip the engine's bookkeeping after it
        # (waiting count, SCHEDULED events, the feeder's wake-up).
        return await asyncio.shield(self._complete(pending, future))

    async def _complete(
        self, pending: PendingAssign, future: Future[list[Inserted]]
    ) -> list[Assigned]:
        engine = self._rt.engine
        inserted = await asyncio.wrap_future(future)
        if any(n.due_at > pending.now for n in pending.news):
            # Delayed actions get a SCHEDULED write, which may wait for room
            # in the journal's queue: not on the loop.
            return await self._rt.blocking(engine.complete_assign, pending, inserted)
        return engine.complete_assign(pending, inserted)

    # -- unary --------------------------------------------------------------

    async def Assign(  # noqa: N802 - the contract's RPC name
        self, request: echo_service_pb2.AssignRequest, context: grpc.aio.ServicerContext
    ) -> echo_service_pb2.AssignResponse:
        try:
            self._refuse_if_draining()
            if not request.HasField("action"):
                raise InvalidArgument(
                    "an action is required", [FieldViolation("action", "required")]
                )
            spec = self._spec(request.action, "action", call_trace_context(context))
            [assigned] = await self._assign_specs([spec])
        except Exception as exc:
            await self._fail(
                context, rename_paths(exc, "actions[0]", "action"), "Assign"
            )
        return self._assigned(assigned)

    async def AssignMany(  # noqa: N802 - the contract's RPC name
        self,
        request: echo_service_pb2.AssignManyRequest,
        context: grpc.aio.ServicerContext,
    ) -> echo_service_pb2.AssignManyResponse:
        try:
            self._refuse_if_draining()
            self._check_count(len(request.actions))
            trace = call_trace_context(context)
            specs: list[ActionSpec] = []
            violations: list[FieldViolation] = []
            for i, action in enumerate(request.actions):
                try:
                    specs.append(self._spec(action, f"actions[{i}]", trace))
                except InvalidArgument as exc:
                    violations.extend(exc.violations)
            if violations:
                raise InvalidArgument("invalid actions", violations)
            assigned = await self._assign_specs(specs)
        except Exception as exc:
            await self._fail(context, exc, "AssignMany")
        return echo_service_pb2.AssignManyResponse(
            results=[self._assigned(a) for a in assigned]
        )

    def _check_count(self, count: int) -> None:
        if count == 0:
            raise InvalidArgument(
                "no actions", [FieldViolation("actions", "at least one action")]
            )
        if count > self._rt.config.max_batch:
            raise InvalidArgument(
                f"too many actions: {count}, at most {self._rt.config.max_batch} a "
                "call",
                [
                    FieldViolation(
                        "actions", f"at most {self._rt.config.max_batch} actions a call"
                    )
                ],
            )

    async def AssignStream(  # noqa: N802 - the contract's RPC name
        self,
        request_iterator: AsyncIterator[echo_service_pb2.AssignStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> echo_service_pb2.AssignStreamResponse:
        try:
            self._refuse_if_draining()
            trace = call_trace_context(context)
            specs: list[ActionSpec] = []
            async for message in request_iterator:
                start = len(specs)
                if start + len(message.actions) > self._rt.config.max_batch:
                    self._check_count(start + len(message.actions))
                violations: list[FieldViolation] = []
                for i, action in enumerate(message.actions, start):
                    try:
                        specs.append(self._spec(action, f"actions[{i}]", trace))
                    except InvalidArgument as exc:
                        violations.extend(exc.violations)
                if violations:
                    # Fail fast: the client learns of it while still sending.
                    raise InvalidArgument("invalid actions", violations)
            self._check_count(len(specs))
            assigned = await self._assign_specs(specs)
        except Exception as exc:
            await self._fail(context, exc, "AssignStream")
        return echo_service_pb2.AssignStreamResponse(
            results=[self._assigned(a) for a in assigned]
        )

    async def GetAction(  # noqa: N802 - the contract's RPC name
        self,
        request: echo_service_pb2.GetActionRequest,
        context: grpc.aio.ServicerContext,
    ) -> echo_service_pb2.GetActionResponse:
        try:
            require_id(request.id, "id")
            view = await self._rt.blocking(self._rt.engine.get, request.id)
        except Exception as exc:
            await self._fail(context, exc, "GetAction")
        return echo_service_pb2.GetActionResponse(
            action=action_to_proto(view, self._rt.signatures)
        )

    async def Cancel(  # noqa: N802 - the contract's RPC name
        self, request: echo_service_pb2.CancelRequest, context: grpc.aio.ServicerContext
    ) -> echo_service_pb2.CancelResponse:
        try:
            response = await cancel(self._rt, request, "")
        except Exception as exc:
            await self._fail(context, exc, "Cancel")
        return response

    async def ListSignatures(  # noqa: N802 - the contract's RPC name
        self,
        request: echo_service_pb2.ListSignaturesRequest,
        context: grpc.aio.ServicerContext,
    ) -> echo_service_pb2.ListSignaturesResponse:
        signatures = sorted(self._rt.signatures.values(), key=lambda s: s.name)
        return echo_service_pb2.ListSignaturesResponse(
            signatures=[signature_to_proto(s) for s in signatures]
        )

    async def Shutdown(  # noqa: N802 - the contract's RPC name
        self,
        request: echo_service_pb2.ShutdownRequest,
        context: grpc.aio.ServicerContext,
    ) -> echo_service_pb2.ShutdownResponse:
        try:
            check_admin(context.invocation_metadata(), self._rt.config.admin_token)
            grace = self._rt.config.drain_grace
            if request.HasField("grace"):
                span = request.grace
                if span.seconds < 0 or span.nanos < 0:
                    raise InvalidArgument(
                        "bad grace", [FieldViolation("grace", "must not be negative")]
                    )
                if span.seconds >= _LONGEST_GRACE.total_seconds():
                    raise InvalidArgument(
                        "bad grace",
                        [FieldViolation("grace", f"must be under {_LONGEST_GRACE}")],
                    )
                grace = span.ToTimedelta()
            stats = self._rt.engine.stats
        except Exception as exc:
            await self._fail(context, exc, "Shutdown")
        logger.warning(
            "shutdown requested by %s; draining with a grace of %ss",
            context.peer(),
            grace.total_seconds(),
        )
        self._rt.draining = True
        self._rt.request_shutdown(grace)
        return echo_service_pb2.ShutdownResponse(
            running=stats.running, waiting=stats.waiting
        )

    # -- streams ------------------------------------------------------------

    async def Stream(  # noqa: N802 - the contract's RPC name
        self, request: echo_service_pb2.StreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[echo_service_pb2.StreamResponse]:
        rt = self._rt
        try:
            interval = heartbeat_interval(request, rt, "")
            only = stream_filters(request, "")
            if rt.closing:
                raise errors.Unavailable(
                    "the server is shutting down", retry_after=_RETRY_WHILE_STOPPING
                )
            after = await resume_point(request, rt, "")
            feed, start = await subscribe(rt, after=after, only=only)
        except Exception as exc:
            await self._fail(context, exc, "Stream")
        rt.open_stream(feed)
        try:
            # A heartbeat at once tells the client that its subscription is in
            # place and from which sequence it is complete.
            yield echo_service_pb2.StreamResponse(heartbeat=heartbeat(start))
            async for message in _stream_messages(feed, interval, rt):
                yield message
        except Exception as exc:  # a slow listener, a journal read that failed
            await self._fail(context, exc, "Stream")
        finally:
            rt.close_stream(feed)
            await feed.aclose()

    async def Connect(  # noqa: N802 - the contract's RPC name
        self,
        request_iterator: AsyncIterator[echo_service_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[echo_service_pb2.ConnectResponse]:
        if self._rt.closing:
            await self._fail(
                context,
                errors.Unavailable(
                    "the server is shutting down", retry_after=_RETRY_WHILE_STOPPING
                ),
                "Connect",
            )
        session = Session(self._rt, self, call_trace_context(context))
        self._rt.open_stream(session)
        try:
            try:
                async for message in session.run(request_iterator):
                    yield message
            except Exception as exc:  # the session broke; see Session._fail
                await self._fail(context, exc, "Connect")
        finally:
            self._rt.close_stream(session)
            await session.close()

    # -- used by Connect sessions ---------------------------------------------

    async def assign_one(
        self,
        action: action_pb2.Action,
        trace: dict[str, str],
        *,
        before_journal: Callable[[list[str]], None] | None = None,
    ) -> echo_service_pb2.AssignResponse:
        """Assign for a session; errors name the field ``action``."""
        try:
            spec = self._spec(action, "action", trace)
            [assigned] = await self._assign_specs([spec], before_journal=before_journal)
        except Exception as exc:
            raise rename_paths(exc, "actions[0]", "action") from exc
        return self._assigned(assigned)


def _end(reason: str, *, retryable: bool, last: int) -> echo_service_pb2.StreamResponse:
    return echo_service_pb2.StreamResponse(
        end=echo_service_pb2.StreamEnd(
            reason=reason, retryable=retryable, last_sequence=last
        )
    )


async def _stream_messages(
    feed: Feed, interval: timedelta, rt: Runtime
) -> AsyncIterator[echo_service_pb2.StreamResponse]:
    """Events, heartbeats when idle, and a StreamEnd when the server ends it.

    A listener that fell behind its buffer gets a retryable StreamEnd with
    the position to resume from, and then the call ends RESOURCE_EXHAUSTED
    (raised here, after the final message): a client that reads to the end
    of the call learns why without parsing the reason.
    """
    seconds = interval.total_seconds()
    messages = rt.messages
    try:
        while True:
            item: Any = await feed.next(seconds)
            if item is TIMEOUT:
                yield echo_service_pb2.StreamResponse(
                    heartbeat=heartbeat(feed.position)
                )
            elif item is CLOSED:
                for event in await feed.flush():
                    yield messages.stream_response(event)
                yield _end("server shutting down", retryable=True, last=feed.position)
                return
            else:
                yield messages.stream_response(item)
    except errors.SlowConsumer as exc:
        logger.info("ended a stream that fell behind at sequence %d", exc.last_sequence)
        yield _end("listener too slow", retryable=True, last=exc.last_sequence)
        raise
    except errors.Unavailable:
        yield _end("server shutting down", retryable=True, last=feed.position)
