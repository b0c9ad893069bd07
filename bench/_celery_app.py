"""The Celery baseline: the same no-op task, a Redis broker and result backend.

The worker is started as ``celery -A bench._celery_app worker`` with the
Redis URL in ``ECHO_BENCH_REDIS``; the benchmark's client builds its own app
with ``make_app`` on the same URL.
"""

from __future__ import annotations

import os

from celery import Celery  # type: ignore[import-untyped]

__all__ = ["app", "make_app"]


def make_app(url: str) -> Celery:
    """A Celery app on ``url`` with plain settings: JSON, results kept."""
    celery = Celery("echo_bench", broker=url, backend=url)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=False,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )

    @celery.task(name="noop")  # type: ignore[untyped-decorator]
    def noop() -> None:
        return None

    return celery


app = make_app(os.environ.get("ECHO_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
