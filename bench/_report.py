"""What a run leaves behind: the table, the machine it ran on, and the plot."""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ._harness import Record, tool
from ._targets import verdict

__all__ = ["machine", "plot", "table"]

_NUMERIC = (2, 3, 5)  # columns of numbers, right-aligned
_UNITS = {
    "per_s": "per second",
    "ms": "milliseconds",
    "us": "CPU microseconds",
    "s": "seconds",
    "mb": "MB",
    "kb": "KB",
}
_LOWER_IS_BETTER = ("ms", "us", "s", "mb", "kb")


def unit(metric: str) -> str:
    """The unit a metric's name carries: ``per_s`` (also ``rps`` and
    ``per_s_N``), ``ms``, ``us``, ``s``, ``mb``, ``kb``; "" when none."""
    words = metric.split("_")
    pairs = set(itertools.pairwise(words))
    if "rps" in words or ("per", "s") in pairs:
        return "per_s"
    for word in ("ms", "us", "mb", "kb", "s"):
        if word in words:
            return word
    return ""


def _number(value: object) -> str:
    if value is None:
        return "-"
    number = float(value)  # type: ignore[arg-type]
    if abs(number) >= 100:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def table(records: Sequence[Record]) -> str:
    """A Markdown table of the records, with each target and its verdict."""
    header = (
        "scenario",
        "metric",
        "echo",
        "baseline",
        "baseline_name",
        "ratio",
        "target",
    )
    rows = [header]
    for rec in records:
        check = verdict(rec)
        target = ""
        if check is not None:
            mark = {True: "met", False: "MISSED", None: "n/a"}[check.met]
            target = f"{check.target}: {mark}"
        rows.append(
            (
                str(rec["scenario"]),
                str(rec["metric"]),
                _number(rec["echo"]),
                _number(rec["baseline"]),
                str(rec["baseline_name"]),
                _number(rec["ratio"]),
                target,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(width) if i in _NUMERIC and n else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append(
                "|"
                + "|".join(
                    "-" * (w + 1) + ":" if i in _NUMERIC else "-" * (w + 2)
                    for i, w in enumerate(widths)
                )
                + "|"
            )
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(name: str, *args: str) -> str:
    command = tool(name)
    if command is None:
        return "not installed"
    try:
        done = subprocess.run(
            [command, *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine() -> dict[str, object]:
    """Where and with what the run happened."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {
            dist: _version(dist)
            for dist in (
                "echo-service",
                "grpcio",
                "protobuf",
                "celery",
                "dramatiq",
                "redis",
            )
        },
        "sqlite": sqlite3.sqlite_version,
        "redis-server": _tool_version("redis-server", "--version"),
        "ghz": _tool_version("ghz", "--version"),
    }


def plot(records: Sequence[Record], path: Path) -> bool:
    """Echo beside each baseline, one panel per scenario and unit.

    Returns False (and draws nothing) when matplotlib is not installed.
    """
    try:
        # Optional (the bench extra), so imported only when a plot is drawn.
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    panels: dict[tuple[str, str], list[Record]] = {}
    for rec in records:
        if rec["echo"] is None and rec["baseline"] is None:
            continue
        panels.setdefault((str(rec["scenario"]), unit(str(rec["metric"]))), []).append(
            rec
        )
    if not panels:
        return False
    columns = min(3, len(panels))
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(
        rows, columns, figsize=(5.5 * columns, 4.2 * rows), squeeze=False
    )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, ((scenario, suffix), group) in zip(axes.flat, panels.items(), strict=False):
        labels = [
            f"{rec['metric']}\nvs {str(rec['baseline_name']).split(' (')[0]}"
            if len({r["baseline_name"] for r in group}) > 1
            else str(rec["metric"])
            for rec in group
        ]
        xs = range(len(group))
        echo = [float(rec["echo"] or 0) for rec in group]  # type: ignore[arg-type]
        base = [float(rec["baseline"] or 0) for rec in group]  # type: ignore[arg-type]
        width = 0.38
        ax.bar([x - width / 2 for x in xs], echo, width, label="Echo", color="#2a7ab9")
        ax.bar(
            [x + width / 2 for x in xs], base, width, label="baseline", color="#c9812e"
        )
        positive = [v for v in echo + base if v > 0]
        if positive and max(positive) / min(positive) > 20:
            ax.set_yscale("log")
        names = sorted({str(rec["baseline_name"]) for rec in group})
        ax.set_title(
            f"{scenario}: {_UNITS.get(suffix, suffix)}\nbaseline: {', '.join(names)}",
            fontsize=9,
        )
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=6, rotation=12)
        better = "lower is better" if suffix in _LOWER_IS_BETTER else "higher is better"
        ax.set_ylabel(f"{_UNITS.get(suffix, suffix)} ({better})", fontsize=8)
        ax.legend(fontsize=7)
        for x, rec in zip(xs, group, strict=True):
            if rec["ratio"] is not None:
                top = max(echo[x], base[x])
                ax.annotate(
                    f"x{float(rec['ratio']):.2g}",  # type: ignore[arg-type]
                    (x, top),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    figure.suptitle("Echo beside its baselines (ratio above 1: Echo better)")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
