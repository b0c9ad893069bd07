"""The benchmark harness: records, child processes, the raw baseline, reports."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from bench._harness import Child, percentile, record
from bench._profile import summarize
from bench._raw_server import default_assign_response
from bench._report import plot, table
from bench._servers import raw_server
from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has stopped all the same.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_a_throughput_ratio_is_echo_over_the_baseline() -> None:
    rec = record("assign", "x_per_s", echo=900.0, baseline=1000.0, baseline_name="b")

    assert rec["ratio"] == 0.9
    assert list(rec) == [
        "scenario",
        "metric",
        "echo",
        "baseline",
        "baseline_name",
        "ratio",
    ]


def test_a_latency_or_memory_ratio_is_the_baseline_over_echo() -> None:
    rec = record(
        "e2e",
        "rtt_p50_ms",
        echo=2.0,
        baseline=10.0,
        baseline_name="b",
        lower_is_better=True,
    )

    assert rec["ratio"] == 5.0


def test_a_record_without_a_baseline_figure_has_no_ratio() -> None:
    rec = record("memory", "rss_mb", echo=5.0, baseline=None, baseline_name="skipped")

    assert rec["ratio"] is None
    assert rec["baseline"] is None


def test_the_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_the_table_marks_each_target_met_or_missed() -> None:
    records = [
        record(
            "assign",
            "unary_1_thread_per_s",
            echo=900,
            baseline=1000,
            baseline_name="raw",
        ),
        record("bulk", "actions_per_s", echo=5000, baseline=90000, baseline_name="raw"),
    ]

    text = table(records)

    assert "ratio >= 0.8: met" in text
    assert ">= 20,000 /s: MISSED" in text


def test_the_plot_is_written_as_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    records = [
        record(
            "e2e", "throughput_per_s", echo=5000, baseline=400, baseline_name="Celery"
        ),
        record(
            "e2e",
            "rtt_p50_ms",
            echo=2,
            baseline=5,
            baseline_name="Celery",
            lower_is_better=True,
        ),
    ]

    assert plot(records, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_child_and_what_it_started_are_stopped_when_the_block_ends(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time\n"
        "sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        "grandchild = subprocess.Popen(sleeper)\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{grandchild.pid}}')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )

    with Child([sys.executable, "-c", script], ready="ready"):
        child_pid, grandchild_pid = map(int, pids.read_text().split())
        assert _alive(child_pid) and _alive(grandchild_pid)

    assert not _alive(child_pid)
    assert not _alive(grandchild_pid)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = Child(
        [sys.executable, "-c", script], ready="ready", stop_grace=timedelta(seconds=0.5)
    )

    with child:
        pid = child.pid

    assert not _alive(pid)  # the grace ran out and KILL ended it


def test_a_child_that_exits_before_it_is_ready_fails_with_its_output() -> None:
    child = Child([sys.executable, "-c", "print('no luck')"], ready="never printed")

    with pytest.raises(RuntimeError, match="no luck"), child:
        pass


@pytest.mark.parametrize("style", ["sync", "aio"])
def test_the_raw_server_answers_with_exactly_the_captured_message(style: str) -> None:
    captured = default_assign_response()
    captured.action.metadata["size"] = "x" * 300
    data = captured.SerializeToString()

    with (
        raw_server(style=style, assign_response=data) as raw,
        grpc.insecure_channel(raw.address) as channel,
    ):
        stub = rpc.EchoServiceStub(channel)
        one = stub.Assign(echo_service_pb2.AssignRequest(), timeout=10)
        many = stub.AssignMany(
            echo_service_pb2.AssignManyRequest(actions=[action_pb2.Action()] * 3),
            timeout=10,
        )
        events = list(
            stub.Stream(
                echo_service_pb2.StreamRequest(),
                metadata=(("x-bench-count", "5"),),
                timeout=10,
            )
        )

    assert one.SerializeToString() == data
    assert [r.SerializeToString() for r in many.results] == [data] * 3
    assert len(events) == 5


def test_cancelled_idle_streams_give_the_raw_server_its_threads_back() -> None:
    # Two pool threads, both held by idle streams; once the clients cancel,
    # a unary call must get a thread again instead of waiting for ever.
    with (
        raw_server(style="sync", threads=2) as raw,
        grpc.insecure_channel(raw.address) as channel,
    ):
        stub = rpc.EchoServiceStub(channel)
        idle = (("x-bench-mode", "idle"),)
        calls = [
            stub.Stream(echo_service_pb2.StreamRequest(), metadata=idle)
            for _ in range(2)
        ]
        for call in calls:
            next(call)  # the stream is up and holds its thread
        for call in calls:
            call.cancel()

        answer = stub.Assign(echo_service_pb2.AssignRequest(), timeout=10)

    assert answer.action.name == "Noop"


def test_a_profile_summary_ranks_functions_by_their_share_of_samples(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "samples.txt"
    raw.write_text(
        "main (x/app.py:1);commit (echo_service/store/_sqlite.py:10) 30\n"
        "main (x/app.py:1);commit (echo_service/store/_sqlite.py:12) 30\n"
        "main (x/app.py:2);encode (echo_service/engine/_codec.py:5) 40\n"
    )

    text = summarize(raw)

    assert "100 samples" in text
    assert " 60.0%  commit (echo_service/store/_sqlite.py)" in text
    assert "100.0%  main (x/app.py)" in text
