"""What every RPC handler of one server shares.

Everything here is owned by the server's event loop: handlers read and write
it without locks because they all run on that one thread. Blocking engine and
store calls (get, cancel, a replay page, an assign when the store offers no
durability future) go to ``pool``, a bounded thread pool of their own,
through ``blocking``. An assign waits for the journal's future on the loop,
and a stream holds a pool thread only while one replay page is read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from echo_service.config import Config
from echo_service.engine import ActionSignature, Engine
from echo_service.server._convert import EventMessages, Limits
from echo_service.store import Store

__all__ = ["Closable", "Runtime"]

T = TypeVar("T")


class Closable(Protocol):
    """An open stream or session the server must end when it stops."""

    def interrupt(self) -> None:
        """Ask it to send its final StreamEnd and return. Loop only."""


@dataclass(eq=False)
class Runtime:
    """Shared state of one server; see the module docstring for ownership."""

    engine: Engine
    store: Store
    config: Config
    pool: ThreadPoolExecutor
    request_shutdown: Callable[[timedelta], None]
    """Start draining and stopping the server in the background."""
    limits: Limits = field(default_factory=Limits)
    signatures: Mapping[str, ActionSignature] = field(default_factory=dict)
    draining: bool = False
    """New assigns are refused (UNAVAILABLE) once this is set."""
    closing: bool = False
    """Streams are being ended; new ones are refused."""
    streams: set[Closable] = field(default_factory=set)
    all_streams_ended: asyncio.Event = field(default_factory=asyncio.Event)
    messages: EventMessages = field(init=False)
    """Events converted to protobuf once, shared by every stream and session."""

    def __post_init__(self) -> None:
        if not self.signatures:
            self.signatures = {s.name: s for s in self.engine.signatures}
        self.messages = EventMessages(self.signatures)
        self.all_streams_ended.set()

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the pool and await it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, fn, *args)

    def open_stream(self, stream: Closable) -> None:
        self.streams.add(stream)
        self.all_streams_ended.clear()

    def close_stream(self, stream: Closable) -> None:
        self.streams.discard(stream)
        if not self.streams:
            self.all_streams_ended.set()

    async def end_streams(self, timeout: timedelta) -> int:
        """Interrupt every open stream and wait until they ended; returns how
        many were still open after ``timeout``."""
        self.closing = True
        for stream in list(self.streams):
            stream.interrupt()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.all_streams_ended.wait(), timeout.total_seconds()
            )
        return len(self.streams)
