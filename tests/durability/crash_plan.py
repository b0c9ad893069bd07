"""The plan the durability tests serve from a separate ``echo-service``.

``Work(tag)`` appends one line per run to the file named by the environment
variable ``ECHO_TEST_RUNS_FILE``: ``action_id tag pid attempt``. The file
shows what ran, also of runs that a SIGKILL cut short, which the journal
cannot show. Each run then takes a few milliseconds (so that kills land
mid-run) and returns the server's process id, so the action's result names
the run that succeeded.
"""

from __future__ import annotations

import os
import zlib

from echo_service.engine import ExecutionContext, PlanBuilder, ValueType

RUNS_FILE = "ECHO_TEST_RUNS_FILE"

builder = PlanBuilder()


@builder.action(inputs=[ValueType.STRING], output=ValueType.INT)
def Work(ctx: ExecutionContext, tag: str) -> int:  # noqa: N802 - contract style
    """Note this run, work for 5 to 30 ms, return this process's id."""
    line = f"{ctx.action_id} {tag} {os.getpid()} {ctx.attempt}\n".encode()
    fd = os.open(os.environ[RUNS_FILE], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one short O_APPEND write: whole or not at all
    finally:
        os.close(fd)
    ctx.cancellation.wait((5 + zlib.crc32(tag.encode()) % 26) / 1000)
    return os.getpid()


plan = builder.build()
