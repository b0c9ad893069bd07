"""Running one test body with either Python client, sync or asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from echo_client import AsyncClient, Client

from tests.conftest import WAIT

WAIT_TD = timedelta(seconds=WAIT)
KINDS = ["sync", "asyncio"]


def use_client(kind: str, address: str, use: Callable[[Any], Any]) -> Any:
    """``use(client)`` with a client of ``kind``; for the asyncio client
    ``use`` returns an awaitable, awaited on a loop of its own."""
    if kind == "sync":
        with Client(address, timeout=WAIT_TD) as client:
            return use(client)

    async def scenario() -> Any:
        async with AsyncClient(address, timeout=WAIT_TD) as client:
            return await use(client)

    return asyncio.run(scenario())
