"""Where an event stream stands between its calls, apart from any I/O.

``StreamCursor`` is the base of ``EventStream`` and ``AsyncEventStream``. It
decides what a (re)opened call asks for, which messages are handed out,
which events a resume already delivered, and whether a call that broke or
ended is reopened (after how long) or is the answer. The subclasses open
calls, read them, wait and raise; the cursor never blocks nor raises.

Heartbeats only advance ``last_sequence``, the sequence up to which every
matching event was seen, which is where a reconnect resumes. A cursor
belongs to one reader: its fields are not guarded by a lock.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

import grpc

from echo_client import _answers as answers
from echo_client import _requests as requests
from echo_client._call import RETRYABLE_STREAM_CODES, Backoff, Deadline
from echo_client._errors import EchoError
from echo_client._proto.echo.v1 import echo_service_pb2
from echo_client._types import Event, StreamEnd

__all__ = ["Reopen", "Step", "StreamCursor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reopen:
    """Drop the call and open a new one after ``delay`` seconds."""

    delay: float


# What to do with what a call produced: hand out the message; drop the call
# and reopen; drop it and raise the error (the failure is the answer); or
# drop it and stop (None: the server ended the stream for good).
Step = echo_service_pb2.StreamResponse | Reopen | EchoError | None


class StreamCursor:
    """The state and decisions of a reconnecting, resuming event stream."""

    def __init__(
        self,
        request: echo_service_pb2.StreamRequest,
        *,
        reconnect: bool,
        deadline: Deadline,
        backoff: Backoff | None = None,
    ) -> None:
        self._request = request
        self._reconnect = reconnect
        self._deadline = deadline
        self._backoff = backoff or Backoff()
        # Messages read by ``start`` ahead of the first heartbeat, handed out
        # before anything read later.
        self._pending: collections.deque[echo_service_pb2.StreamResponse] = (
            collections.deque()
        )
        self.last_sequence: int | None = (
            request.after_sequence if request.HasField("after_sequence") else None
        )
        self.end: StreamEnd | None = None
        self.reconnects = 0

    def _resume_request(self) -> echo_service_pb2.StreamRequest:
        """The request of the next call: resume after the last sequence seen."""
        return requests.resume(self._request, self.last_sequence)

    def _received(self, message: echo_service_pb2.StreamResponse) -> Step:
        """A message arrived on the open call.

        Only an event resets the backoff. Every call to a server that ends
        each stream at once still brings a heartbeat and a StreamEnd; were
        those enough, it would be reconnected at the initial delay forever.
        A heartbeat does show the server is there, so it restarts the
        give-up clock (``Backoff.alive``): a quiet stream is never dropped
        for a few cuts between its rare events.
        """
        kind = message.WhichOneof("kind")
        if kind == "event":
            self._backoff.reset()
        elif kind == "heartbeat":
            self._backoff.alive()
            self._advance(message.heartbeat.last_sequence)
        elif kind == "end":
            end = message.end
            self.end = answers.stream_end(end)
            if not (end.retryable and self._reconnect):
                return None
            self._advance(end.last_sequence)
            return self._reopen(None, f"a StreamEnd ({end.reason})")
        return message

    def _broken(self, error: grpc.RpcError | None) -> Reopen | EchoError:
        """The call failed with ``error``, or ended without a StreamEnd
        (None: the connection was cut). The failure is the answer when
        reconnecting is off, the code is not worth a retry, or retrying ran
        out of time."""
        code = error.code() if error is not None else grpc.StatusCode.UNAVAILABLE
        if not self._reconnect or code not in RETRYABLE_STREAM_CODES:
            return answers.stream_cut(error)
        return self._reopen(error, code.name)

    def _reopen(self, error: grpc.RpcError | None, cause: str) -> Reopen | EchoError:
        delay = self._backoff.next_delay()
        if delay is None or self._deadline.expired:
            return answers.stream_gave_up(error)
        remaining = self._deadline.remaining()
        if remaining is not None:
            delay = min(delay, remaining)
        self.reconnects += 1
        logger.info(
            "event stream reopens in %.3fs after %s (reconnect %d)",
            delay,
            cause,
            self.reconnects,
            extra={"echo.last_sequence": self.last_sequence},
        )
        return Reopen(delay)

    def _advance(self, sequence: int) -> None:
        self.last_sequence = max(self.last_sequence or 0, sequence)

    def _started(self, message: echo_service_pb2.StreamResponse) -> bool:
        """True for the first heartbeat, which says the subscription is in
        place; anything before it is kept for the iteration."""
        if message.WhichOneof("kind") == "heartbeat":
            return True
        self._pending.append(message)
        return False

    def _event(self, message: echo_service_pb2.StreamResponse) -> Event | None:
        """The event to hand out, or None for a heartbeat or an event a
        resumed call delivered again."""
        if message.WhichOneof("kind") != "event":
            return None
        event = message.event
        if self.last_sequence is not None and event.sequence <= self.last_sequence:
            return None
        self.last_sequence = event.sequence
        return Event.from_proto(event)
