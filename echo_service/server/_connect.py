"""Connect: one bidirectional session of assigns, cancels, subscriptions, acks.

A session answers every request with a message carrying the request's id:
``assigned``, ``cancelled``, ``subscribed`` or a ``RequestError`` (the
session goes on after an error). Events of actions assigned in the session
carry the assign's request id; events of a subscription carry the
subscribe's id.

How assigned actions' events are found: the session's first assign opens one
feed (``own``) whose subscription listens to no action at first and whose
id filter grows: each assign adds its action's id after the engine prepared
it and before it is journaled, so the engine drops every other action's
events and none of the session's is missed. An event of an action whose
assign is still waiting for the journal is held: its id is not routed yet.
When the assign returns, its held events follow its ``assigned`` answer in
order; when no assign is waiting, held events that matched none are dropped.

Known gap: an assign that repeats an idempotency key answers with the first
action, whose id joins the filter only with the answer; events of that
action between its journal commit and the answer are not sent.

Flow control: at most ``config.session_window`` events are sent and not yet
acknowledged; beyond that the feeds wait (their subscriptions' bounded
buffers absorb the rest, and an overflow resumes from the journal), and the
events an assign's answer releases queue in order behind the window. Answers,
errors and heartbeats are never held back by the window.

The session ends with a StreamEnd when the server stops (after flushing what
its feeds hold), when the engine stops, or once the client has half-closed
and every assign was answered and every assigned action finished. It ends
with an error status, at once, when its request stream breaks or one of its
tasks fails (``_fail``); a subscription whose feed fails (a journal read)
gets a RequestError and is dropped, and the session goes on.

Ownership: every attribute is owned by the event loop; the tasks of one
session interleave only at ``await``, and each block that reads and then
changes the routing state (``_owned``, ``_held``, ``_pending_assigns``) has
no ``await`` inside.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from echo_service import errors
from echo_service._proto.echo.v1 import echo_service_pb2
from echo_service.engine import ActionEvent
from echo_service.errors import FieldViolation, InvalidArgument
from echo_service.server._common import (
    FINISHED_STATES,
    cancel,
    heartbeat,
    heartbeat_interval,
    resume_point,
    stream_filters,
    subscribe,
)
from echo_service.server._feed import CLOSED, Feed, StreamFilter
from echo_service.server._runtime import Runtime
from echo_service.server._status import problem_for, request_error

if TYPE_CHECKING:
    from echo_service.server._servicer import EchoServicer

__all__ = ["Session"]

logger = logging.getLogger(__name__)

_MAX_PENDING_REQUESTS = 1024
_MAX_SUBSCRIPTIONS = 64
_RETRY_LATER = timedelta(seconds=1)
_FLUSH_TIMEOUT = 5.0


class Session:
    """One Connect call. See the module docstring."""

    def __init__(
        self, runtime: Runtime, servicer: EchoServicer, trace: dict[str, str]
    ) -> None:
        self._rt = runtime
        self._servicer = servicer
        self._trace = trace
        self._out: asyncio.Queue[echo_service_pb2.ConnectResponse | None] = (
            asyncio.Queue()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._forwarders: set[asyncio.Task[None]] = set()
        self._own: Feed | None = None
        self._own_opening: asyncio.Lock = asyncio.Lock()
        # Every action id the own feed listens for. The "" id matches no
        # action, and it keeps the filter from being empty (all actions).
        self._own_ids: frozenset[str] = frozenset({""})
        self._owned: dict[str, str] = {}  # action id -> its assign's request id
        self._held: list[ActionEvent] = []
        self._pending_assigns = 0
        self._pending_other = 0
        self._subs: dict[str, Feed] = {}  # subscribe request id -> its feed
        self._active: set[str] = set()  # request ids still in use
        self._unacked: list[int] = []  # sequences sent and not acknowledged
        # Events routed while the window was full (an assign's events held
        # until its answer), sent in order as acks open the window.
        self._overflow: collections.deque[tuple[str, ActionEvent]] = collections.deque()
        self._window = asyncio.Condition()
        self._interval = runtime.config.heartbeat_interval
        self._last_sent = asyncio.get_running_loop().time()
        self._position = 0  # the highest sequence sent
        self._half_closed = False
        self._flushing = False
        self._ended = False
        self._failure: BaseException | None = None
        """Why the session broke; ``run`` raises it so the call ends with
        its status (only the call's own task may end the call)."""

    # -- the call ---------------------------------------------------------

    async def run(
        self, requests: AsyncIterator[echo_service_pb2.ConnectRequest]
    ) -> AsyncIterator[echo_service_pb2.ConnectResponse]:
        loop = asyncio.get_running_loop()
        self._spawn(self._read(requests))
        self._spawn(self._beat())
        while True:
            message = await self._out.get()
            if message is None:
                if self._failure is not None:
                    raise self._failure
                return
            self._last_sent = loop.time()
            yield message

    def interrupt(self) -> None:
        """The server stops: flush what the feeds hold, then end."""
        if not self._ended and not self._flushing:
            self._spawn(self._shutdown())

    async def close(self) -> None:
        """Cancel the session's tasks and close its feeds."""
        self._ended = True
        current = asyncio.current_task()
        tasks = [t for t in self._tasks | self._forwarders if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        feeds = list(self._subs.values())
        if self._own is not None:
            feeds.append(self._own)
        for feed in feeds:
            await feed.aclose()

    # -- plumbing -----------------------------------------------------------

    def _spawn(
        self, coro: Coroutine[Any, Any, None], *, forwarder: bool = False
    ) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        group = self._forwarders if forwarder else self._tasks
        group.add(task)
        task.add_done_callback(group.discard)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """No task of the session fails unseen: one that raised ends the
        session with the error's status. Tasks are cancelled only by
        ``close``, after ``_ended`` is set."""
        if self._ended:
            return
        if task.cancelled():
            self._fail(errors.Unavailable("the session was cut short"))
            return
        exc = task.exception()
        if exc is not None:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """End the session with ``exc`` as the call's status."""
        if self._ended:
            return
        self._failure = exc
        self._ended = True
        self._out.put_nowait(None)

    def _send(self, message: echo_service_pb2.ConnectResponse) -> None:
        if not self._ended:
            self._out.put_nowait(message)

    def _end(self, reason: str, *, retryable: bool) -> None:
        if self._ended:
            return
        # The end says the session is over: what waits behind the window goes
        # first, so the end's last_sequence covers everything sent.
        while self._overflow:
            self._send_event(*self._overflow.popleft())
        self._send(
            echo_service_pb2.ConnectResponse(
                end=echo_service_pb2.StreamEnd(
                    reason=reason, retryable=retryable, last_sequence=self._position
                )
            )
        )
        self._ended = True
        self._out.put_nowait(None)

    def _error(self, request_id: str, exc: BaseException, what: str) -> None:
        problem = problem_for(exc, rpc=f"Connect.{what}")
        self._send(
            echo_service_pb2.ConnectResponse(
                request_id=request_id, error=request_error(problem)
            )
        )

    def _emit(self, request_id: str, event: ActionEvent) -> None:
        """Send one event, or queue it behind the window when that is full.
        No ``await``: order is kept."""
        full = len(self._unacked) >= self._rt.config.session_window
        if self._overflow or (full and not self._flushing):
            self._overflow.append((request_id, event))
            return
        self._send_event(request_id, event)

    def _send_event(self, request_id: str, event: ActionEvent) -> None:
        self._unacked.append(event.sequence)
        self._position = max(self._position, event.sequence)
        self._send(
            echo_service_pb2.ConnectResponse(
                request_id=request_id, event=self._rt.messages.event(event)
            )
        )

    async def _wait_for_window(self) -> None:
        limit = self._rt.config.session_window
        async with self._window:
            await self._window.wait_for(
                lambda: (
                    (len(self._unacked) < limit and not self._overflow)
                    or self._flushing
                    or self._ended
                )
            )

    def _maybe_finish(self) -> None:
        if (
            self._half_closed
            and not self._pending_assigns
            and not self._pending_other
            and not self._owned
        ):
            self._end("the client closed its side", retryable=False)

    # -- requests -------------------------------------------------------------

    async def _read(
        self, requests: AsyncIterator[echo_service_pb2.ConnectRequest]
    ) -> None:
        """Handle requests until the client half-closes. A frame that is
        not a ConnectRequest ends the session at once with INVALID_ARGUMENT;
        a request stream that breaks otherwise (a transport error, a
        cancellation not of our making) with UNAVAILABLE, rather than leave
        the call open until its deadline."""
        iterator = aiter(requests)
        while True:
            try:
                request = await anext(iterator)
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                if self._ended:  # close() cancels us: the call is over
                    raise
                logger.info("Connect: the request stream was cancelled")
                self._fail(errors.Unavailable("the request stream was cancelled"))
                return
            except InvalidArgument as exc:  # a frame that is no ConnectRequest
                logger.info("Connect: %s", exc)
                self._fail(exc)
                return
            except Exception as exc:
                logger.info("Connect: reading requests failed: %r", exc)
                self._fail(
                    errors.Unavailable(
                        "reading the session's requests failed",
                        retry_after=_RETRY_LATER,
                    )
                )
                return
            await self._handle(request)
        self._half_closed = True
        self._maybe_finish()

    async def _handle(self, request: echo_service_pb2.ConnectRequest) -> None:
        rid = request.request_id
        kind = request.WhichOneof("kind")
        problem: BaseException | None = None
        if not rid:
            problem = InvalidArgument(
                "a request id is required", [FieldViolation("request_id", "required")]
            )
        elif kind is None:
            problem = InvalidArgument(
                "the request asks nothing", [FieldViolation("kind", "required")]
            )
        elif kind != "ack" and rid in self._active:
            problem = InvalidArgument(
                "request id in use",
                [FieldViolation("request_id", "already in use in this session")],
            )
        elif kind != "ack" and (
            self._pending_assigns + self._pending_other >= _MAX_PENDING_REQUESTS
        ):
            problem = errors.QueueFull(
                "too many requests in flight in this session", retry_after=_RETRY_LATER
            )
        if problem is not None:
            self._error(rid, problem, kind or "request")
            return
        if kind == "ack":
            await self._ack(request.ack.sequence)
        elif kind == "assign":
            self._active.add(rid)
            self._pending_assigns += 1
            self._spawn(self._assign(rid, request.assign))
        elif kind == "cancel":
            self._active.add(rid)
            self._pending_other += 1
            self._spawn(self._cancel(rid, request.cancel))
        elif kind == "subscribe":
            self._active.add(rid)
            self._pending_other += 1
            self._spawn(self._subscribe(rid, request.subscribe))

    async def _ack(self, sequence: int) -> None:
        async with self._window:
            self._unacked = [s for s in self._unacked if s > sequence]
            limit = self._rt.config.session_window
            while self._overflow and len(self._unacked) < limit:
                self._send_event(*self._overflow.popleft())
            self._window.notify_all()

    async def _assign(self, rid: str, request: echo_service_pb2.AssignRequest) -> None:
        try:
            if self._rt.draining:
                raise errors.Unavailable(
                    "the server is shutting down", retry_after=_RETRY_LATER
                )
            if not request.HasField("action"):
                raise InvalidArgument(
                    "an action is required", [FieldViolation("action", "required")]
                )
            await self._ensure_own_feed()
            response = await self._servicer.assign_one(
                request.action, self._trace, before_journal=self._listen_for
            )
        except Exception as exc:
            self._error(rid, exc, "assign")
            self._active.discard(rid)
            self._assign_done()
            return
        # From here to the end: no await, so no event can slip in between.
        action_id = response.action.id
        if response.duplicate:
            self._listen_for([action_id])
        self._send(echo_service_pb2.ConnectResponse(request_id=rid, assigned=response))
        if response.action.state in FINISHED_STATES:
            self._active.discard(rid)
        else:
            self._owned[action_id] = rid
        mine = [e for e in self._held if e.action_id == action_id]
        if mine:
            self._held = [e for e in self._held if e.action_id != action_id]
            for event in mine:
                self._route_own(event)
        self._assign_done()

    def _assign_done(self) -> None:
        self._pending_assigns -= 1
        if not self._pending_assigns:
            self._held.clear()
        self._maybe_finish()

    async def _cancel(self, rid: str, request: echo_service_pb2.CancelRequest) -> None:
        try:
            response = await cancel(self._rt, request, "cancel")
        except Exception as exc:
            self._error(rid, exc, "cancel")
        else:
            self._send(
                echo_service_pb2.ConnectResponse(request_id=rid, cancelled=response)
            )
        finally:
            self._active.discard(rid)
            self._pending_other -= 1
            self._maybe_finish()

    async def _subscribe(
        self, rid: str, request: echo_service_pb2.StreamRequest
    ) -> None:
        try:
            if len(self._subs) >= _MAX_SUBSCRIPTIONS:
                raise errors.QueueFull(
                    f"at most {_MAX_SUBSCRIPTIONS} subscriptions a session",
                    retry_after=_RETRY_LATER,
                )
            interval = heartbeat_interval(request, self._rt, "subscribe")
            only = stream_filters(request, "subscribe")
            after = await resume_point(request, self._rt, "subscribe")
            feed, start = await subscribe(self._rt, after=after, only=only)
        except Exception as exc:
            self._error(rid, exc, "subscribe")
            self._active.discard(rid)
        else:
            if self._ended:
                await feed.aclose()
                return
            if request.HasField("heartbeat_interval"):
                self._interval = interval
            self._subs[rid] = feed
            self._send(
                echo_service_pb2.ConnectResponse(
                    request_id=rid,
                    subscribed=echo_service_pb2.Subscribed(last_sequence=start),
                )
            )
            self._spawn(self._forward_subscription(rid, feed), forwarder=True)
        finally:
            self._pending_other -= 1
            self._maybe_finish()

    # -- events ---------------------------------------------------------------

    async def _ensure_own_feed(self) -> None:
        async with self._own_opening:
            if self._own is None:
                feed, _ = await subscribe(
                    self._rt, after=None, only=StreamFilter(self._own_ids)
                )
                self._own = feed
                self._spawn(self._forward_own(), forwarder=True)

    def _listen_for(self, action_ids: list[str]) -> None:
        """Widen the own feed's filter. No ``await``: the ids are in the
        filter before the assign that made them goes on to the journal."""
        self._own_ids = self._own_ids | frozenset(action_ids)
        if self._own is not None:
            self._own.subscription.add_action_ids(action_ids)

    def _route_own(self, event: ActionEvent) -> None:
        rid = self._owned.get(event.action_id)
        if rid is None:
            if self._pending_assigns:
                self._held.append(event)
            return
        self._emit(rid, event)
        if event.state.finished:
            del self._owned[event.action_id]
            self._active.discard(rid)
            self._maybe_finish()

    async def _forward_own(self) -> None:
        while True:
            assert self._own is not None
            try:
                item = await self._own.next(None)
            except errors.SlowConsumer as exc:
                await self._own.aclose()
                # Every id the session listens for, read after the last await:
                # an id added while the old feed closed is in the new one, and
                # the replay from the old position brings its events.
                self._own, _ = await subscribe(
                    self._rt,
                    after=exc.last_sequence,
                    only=StreamFilter(self._own_ids),
                )
                continue
            except errors.Unavailable:
                self._end("server shutting down", retryable=True)
                return
            if item is CLOSED:
                return
            assert isinstance(item, ActionEvent)
            await self._wait_for_window()
            self._route_own(item)

    async def _forward_subscription(self, rid: str, feed: Feed) -> None:
        while True:
            try:
                item = await feed.next(None)
            except errors.SlowConsumer as exc:
                feed = self._subs[rid] = await self._resubscribe(
                    feed, exc.last_sequence
                )
                continue
            except errors.Unavailable:
                self._end("server shutting down", retryable=True)
                return
            except errors.EchoError as exc:
                # This subscription alone failed: say so under its id.
                self._error(rid, exc, "subscribe")
                self._subs.pop(rid, None)
                self._active.discard(rid)
                await feed.aclose()
                return
            if item is CLOSED:
                return
            assert isinstance(item, ActionEvent)
            await self._wait_for_window()
            self._emit(rid, item)

    async def _resubscribe(self, feed: Feed, last_sequence: int) -> Feed:
        """A feed fell behind: replay it from the journal where it stopped."""
        await feed.aclose()
        fresh, _ = await subscribe(self._rt, after=last_sequence, only=feed.only)
        return fresh

    # -- heartbeats and shutdown ------------------------------------------------

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._ended:
            due = self._last_sent + self._interval.total_seconds()
            if loop.time() >= due:
                self._send(
                    echo_service_pb2.ConnectResponse(
                        heartbeat=heartbeat(self._position)
                    )
                )
                # The generator stamps _last_sent when it sends; until then
                # wait a whole interval rather than queue heartbeats.
                await asyncio.sleep(self._interval.total_seconds())
            else:
                await asyncio.sleep(due - loop.time())

    async def _shutdown(self) -> None:
        self._flushing = True
        async with self._window:
            self._window.notify_all()
        feeds = list(self._subs.values())
        if self._own is not None:
            feeds.append(self._own)
        for feed in feeds:
            feed.interrupt()
        forwarders = list(self._forwarders)
        if forwarders:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*forwarders, return_exceptions=True), _FLUSH_TIMEOUT
                )
        for rid, feed in list(self._subs.items()):
            for event in await _flush(feed):
                self._emit(rid, event)
        if self._own is not None:
            for event in await _flush(self._own):
                self._route_own(event)
        self._end("server shutting down", retryable=True)


async def _flush(feed: Feed) -> list[ActionEvent]:
    try:
        return await feed.flush()
    except errors.EchoError:
        return []
