"""The issue's targets, checked against the records of a run.

A target is either a floor on the ratio (Echo against its baseline) or a
bound on Echo's own figure; a record without a target gets none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._harness import Record

__all__ = ["Verdict", "verdict"]


@dataclass(frozen=True)
class Verdict:
    target: str
    met: bool | None
    """None when the record lacks the figure the target needs."""


def _ratio_at_least(floor: float) -> Callable[[Record], Verdict]:
    def check(rec: Record) -> Verdict:
        ratio = rec["ratio"]
        met = None if ratio is None else float(ratio) >= floor  # type: ignore[arg-type]
        return Verdict(f"ratio >= {floor:g}", met)

    return check


def _echo_at_least(floor: float, unit: str) -> Callable[[Record], Verdict]:
    def check(rec: Record) -> Verdict:
        echo = rec["echo"]
        met = None if echo is None else float(echo) >= floor  # type: ignore[arg-type]
        return Verdict(f">= {floor:,.0f} {unit}", met)

    return check


def _echo_below(ceiling: float, unit: str) -> Callable[[Record], Verdict]:
    def check(rec: Record) -> Verdict:
        echo = rec["echo"]
        met = None if echo is None else float(echo) < ceiling  # type: ignore[arg-type]
        return Verdict(f"< {ceiling:,.0f} {unit}", met)

    return check


# (scenario, metric, baseline name prefix or "") -> check
_TARGETS: dict[tuple[str, str, str], Callable[[Record], Verdict]] = {
    ("assign", "unary_1_thread_per_s", ""): _ratio_at_least(0.8),
    ("assign", "unary_8_threads_per_s", ""): _ratio_at_least(0.8),
    ("bulk", "actions_per_s", ""): _echo_at_least(20_000, "/s"),
    ("bulk", "stream_actions_per_s", ""): _echo_at_least(20_000, "/s"),
    ("e2e", "throughput_per_s", "Celery"): _ratio_at_least(10),
    ("e2e", "throughput_per_s", "Dramatiq"): _ratio_at_least(3),
    ("e2e", "rtt_p50_ms", ""): _ratio_at_least(1),
    ("e2e", "rtt_p99_ms", ""): _ratio_at_least(1),
    ("memory", "rss_1m_queued_mb", ""): _echo_below(500, "MB"),
}


def verdict(rec: Record) -> Verdict | None:
    """The target this record is held to, and whether it was met."""
    name = str(rec["baseline_name"])
    for (scenario, metric, prefix), check in _TARGETS.items():
        if (rec["scenario"], rec["metric"]) == (scenario, metric) and name.startswith(
            prefix
        ):
            return check(rec)
    return None
