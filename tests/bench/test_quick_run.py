"""``python -m bench --quick`` runs every scenario whose tools exist here.

Each scenario runs in a child process exactly as a user runs it; the test
checks the exit status, the shape of the JSON records, the metric names the
issue asks for, the ratio's orientation, and the plot. A scenario whose
tools are missing (the benchmark says so and skips it) is skipped here with
the benchmark's own reason.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import SCENARIOS
from bench._harness import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

KEYS = ["scenario", "metric", "echo", "baseline", "baseline_name", "ratio"]

# The metrics each scenario must report (others may come in addition).
REQUIRED: dict[str, set[str]] = {
    "executor": {"noop_per_s", "1ms_per_s", "fanout_per_s"},
    "journal": set(),
    "assign": {"unary_1_thread_per_s", "unary_8_threads_per_s"},
    "bulk": {"actions_per_s", "stream_actions_per_s"},
    "e2e": {"throughput_per_s", "rtt_p50_ms", "rtt_p99_ms"},
    "fanout": {"events_per_s_1", "events_per_s_10", "events_per_s_100"},
    "memory": {"rss_1m_queued_mb", "rss_per_stream_kb"},
    "ghz": {"assign_rps", "assign_p50_ms", "assign_p99_ms"},
}


def _lower_is_better(metric: str) -> bool:
    """Latencies, CPU time, memory and durations: ``_ms``, ``_us``, ``_mb``,
    ``_kb`` anywhere in the name, or a name ending in seconds (``_s``)."""
    words = metric.split("_")
    if {"ms", "us", "mb", "kb"} & set(words):
        return True
    return words[-1] == "s" and words[-2:] != ["per", "s"] and "per" not in words


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_quick_run_writes_well_formed_records(scenario: str, tmp_path: Path) -> None:
    out = tmp_path / f"{scenario}.json"

    done = subprocess.run(
        [sys.executable, "-m", "bench", scenario, "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-4000:]
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    if scenario in meta["skipped"]:
        pytest.skip(f"{scenario}: {meta['skipped'][scenario]}")
    records = json.loads(out.read_text())
    assert records, f"{scenario} wrote no records"
    for rec in records:
        assert list(rec) == KEYS
        assert rec["scenario"] == scenario
        assert isinstance(rec["metric"], str) and rec["metric"]
        assert isinstance(rec["baseline_name"], str) and rec["baseline_name"]
        assert isinstance(rec["echo"], int | float) and rec["echo"] >= 0
        if rec["baseline"] is None:
            assert rec["ratio"] is None
            continue
        assert isinstance(rec["baseline"], int | float)
        if rec["ratio"] is not None:
            echo, base = float(rec["echo"]), float(rec["baseline"])
            expected = base / echo if _lower_is_better(rec["metric"]) else echo / base
            assert math.isclose(rec["ratio"], expected, rel_tol=0.02, abs_tol=0.002)
    assert REQUIRED[scenario] <= {rec["metric"] for rec in records}
    if importlib.util.find_spec("matplotlib") is not None:
        assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert scenario in done.stdout  # the table names it
