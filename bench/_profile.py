"""Where Echo's server spends its time: sampled with py-spy while it is loaded.

``python -m bench --profile DIR`` starts every Echo server under ``py-spy
record`` (which launches it: attaching to a running process needs ptrace
rights a sandbox may not grant), stops the profiler before the server so it
writes its samples, and leaves beside them a summary: the functions that
were on CPU themselves (self) and those under which the CPU time was spent
(inclusive). py-spy leaves out threads it sees idle; a thread waiting in a
C call that released the GIL (a selector, a sync) may still be counted, so
read the shares as samples of threads at work, not of pure CPU time.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from ._harness import tool

__all__ = ["profile_argv", "summarize"]

_ENV_DIR = "ECHO_BENCH_PROFILE"
_ENV_LABEL = "ECHO_BENCH_SCENARIO"
_LINE = re.compile(r":\d+\)$")
_counter = [0]


def profile_argv(argv: list[str]) -> tuple[list[str], Path | None]:
    """``argv`` under py-spy when profiling is on, and where samples go."""
    folder = os.environ.get(_ENV_DIR)
    command = tool("py-spy")
    if not folder or command is None:
        return argv, None
    _counter[0] += 1
    label = os.environ.get(_ENV_LABEL, "echo")
    out = Path(folder) / f"{label}-{_counter[0]}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapped = [
        command,
        "record",
        "--format",
        "raw",
        "--rate",
        "200",
        "--nonblocking",
        "--output",
        str(out),
        "--",
        *argv,
    ]
    return wrapped, out


def _frame(frame: str) -> str:
    """``func (path:line)`` -> ``func (short path)``, merging lines."""
    frame = _LINE.sub(")", frame)
    head, _, path = frame.partition(" (")
    parts = path.rstrip(")").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "echo_service" in parts:
        parts = parts[parts.index("echo_service") :]
    else:
        parts = parts[-2:]
    return f"{head} ({'/'.join(parts)})"


def summarize(raw: Path, *, top: int = 25) -> str:
    """A text summary of py-spy's raw (collapsed) samples."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            under[name] += count
    if not total:
        return f"{raw.name}: no samples\n"
    lines = [f"{raw.name}: {total} samples of CPU time", "", "self (on CPU itself):"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive (time spent under it):"]
    lines += [
        f"  {n * 100 / total:5.1f}%  {name}" for name, n in under.most_common(top)
    ]
    return "\n".join(lines) + "\n"
