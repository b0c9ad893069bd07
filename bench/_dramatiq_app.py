"""The Dramatiq baseline: the same no-op actor, Redis broker and results.

Dramatiq binds actors to a global broker at import, so the Redis URL comes
from ``ECHO_BENCH_REDIS`` in both the workers (``dramatiq
bench._dramatiq_app``) and the benchmark, which sets it before importing.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

__all__ = ["broker", "noop"]

_URL = os.environ.get("ECHO_BENCH_REDIS", "redis://127.0.0.1:6379/0")

broker = RedisBroker(url=_URL)  # type: ignore[no-untyped-call]
broker.add_middleware(Results(backend=RedisBackend(url=_URL)))  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def noop() -> None:
    return None
