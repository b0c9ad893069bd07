"""``echoctl`` run as a subprocess against a live server: bad input ends in
one ``echoctl:`` line and the right exit status, never a traceback;
negative numbers are arguments; Ctrl-C ends a stream quietly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from echo_client import Client

from echo_service.server import EchoServer
from tests.clients.python.test_echoctl import ECHOCTL, Run, echoctl
from tests.conftest import WAIT, wait_until
from tests.interop.plan import plan as interop_plan

pytestmark = pytest.mark.timeout(90)

USAGE = 2


def assert_clean(run: Run, code: int, *needles: str) -> None:
    """Exit ``code``, nothing on stdout, one ``echoctl:`` line naming why."""
    assert run.code == code, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("echoctl: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def interop(make_server: Callable[..., EchoServer]) -> EchoServer:
    return make_server(plan=interop_plan.build())


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--priority", "99999999999"], "--priority"),
        (["--priority", "-2147483649"], "--priority"),
        (["--delay", "1e30"], "--delay"),
        (["--delay", "inf"], "--delay"),
        (["--delay", "nan"], "--delay"),
        (["--delay", "-1"], "--delay"),
        (["--delay", "soon"], "--delay"),
        (["--chunk", "0"], "--chunk"),
        (["--bogus"], "--bogus"),
    ],
)
def test_an_assign_flag_outside_its_field_is_a_usage_error(
    server: EchoServer, flags: list[str], named: str
) -> None:
    run = echoctl(server.address, "assign", "Echo", "notes.txt", *flags)
    assert_clean(run, USAGE, named)


def test_priority_at_the_int32_edges_is_accepted(server: EchoServer) -> None:
    for priority in ("2147483647", "-2147483648"):
        run = echoctl(
            server.address, "assign", "Add", "1", "2", "--priority", priority, "--wait"
        )
        assert run.code == 0, run.stderr
        assert run.lines[0]["result"] == 3


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["--timeout", "1e30", "signatures"], "--timeout"),
        (["--timeout", "nan", "signatures"], "--timeout"),
        (["stream", "--after", str(2**63)], "--after"),
        (["stream", "--count", "0"], "--count"),
        (["shutdown", "--admin-token", "x", "--grace", "1e30"], "--grace"),
    ],
)
def test_other_bounded_flags_are_usage_errors(
    server: EchoServer, words: list[str], named: str
) -> None:
    assert_clean(echoctl(server.address, *words), USAGE, named)


@pytest.mark.parametrize("target", ["", "bad target", "localhost:99999"])
def test_a_malformed_target_is_a_usage_error(target: str) -> None:
    run = echoctl("localhost:1", "--target", target, "signatures")
    assert_clean(run, USAGE, "--target")


def test_an_auth_token_that_cannot_be_a_header_is_a_usage_error(
    server: EchoServer,
) -> None:
    run = echoctl(server.address, "signatures", env={"ECHO_AUTH_TOKEN": "a\nb"})
    assert_clean(run, USAGE, "--auth-token")


def test_an_int_argument_outside_64_bits_is_refused_before_sending(
    server: EchoServer,
) -> None:
    run = echoctl(server.address, "assign", "Add", str(2**63), "1")
    assert_clean(run, 1, "a (int)", "64-bit")


@pytest.mark.parametrize("word", ["two", " 7", "1_000", "0x10", "7.0", ""])
def test_an_int_argument_must_be_a_plain_decimal(server: EchoServer, word: str) -> None:
    run = echoctl(server.address, "assign", "Add", word, "1")
    assert_clean(run, 1, "a (int)", "not a decimal integer")


def test_nan_is_not_sent_as_json(server: EchoServer) -> None:
    assert_clean(echoctl(server.address, "assign", "Json", "NaN"), 1, "value (json)")


def test_an_unreadable_from_file_is_a_usage_error(
    server: EchoServer, tmp_path: Path
) -> None:
    missing = echoctl(server.address, "assign", "--from", str(tmp_path / "none"))
    assert_clean(missing, USAGE, "cannot read")
    directory = echoctl(server.address, "assign", "--from", str(tmp_path))
    assert_clean(directory, USAGE, "cannot read", "directory")


def test_bad_lines_are_refused_by_number_and_the_rest_still_run(
    server: EchoServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"name": "Echo", "args": ["\xff"]}\n'
        b'{"name": "Echo", "args": ["\\ud800"]}\n'
        b'{"name": "Json", "args": [NaN]}\n'
        + json.dumps({"name": "Add", "args": [2**63, 1]}).encode()
        + b"\n"
        + json.dumps({"name": "Add", "args": [1, {"priority": 1}]}).encode()
        + b"\n"
        + json.dumps(
            {"name": "Add", "args": [1, 2], "options": {"priority": 2**40}}
        ).encode()
        + b"\n"
        + json.dumps({"name": "Add", "args": [-5, 1]}).encode()
        + b"\n"
    )
    for stdin in (False, True):
        if stdin:
            done = subprocess.run(
                [ECHOCTL, "assign", "--from", "-", "--wait"],
                input=source.read_bytes(),
                capture_output=True,
                env={**os.environ, "ECHO_TARGET": server.address},
                timeout=60,
                check=False,
            )
            code, out, err = done.returncode, done.stdout.decode(), done.stderr.decode()
        else:
            run = echoctl(server.address, "assign", "--from", str(source), "--wait")
            code, out, err = run.code, run.stdout, run.stderr
        assert code == 1, err
        assert "Traceback" not in err
        assert "line 1: not UTF-8 text" in err
        for number in range(2, 7):
            assert f"line {number}:" in err
        [outcome] = [json.loads(line) for line in out.splitlines()]
        assert outcome["line"] == 7
        assert outcome["result"] == -4


def test_words_that_are_not_utf8_are_refused_except_as_bytes(
    interop: EchoServer,
) -> None:
    environ = {**os.environ, "ECHO_TARGET": interop.address}

    def raw(*words: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [ECHOCTL.encode(), *words],
            capture_output=True,
            env=environ,
            timeout=60,
            check=False,
        )

    text = raw(b"assign", b"EchoString", b"\xff")
    assert text.returncode == 1
    assert text.stderr.decode().startswith("echoctl: value (string): not UTF-8")
    key = raw(b"assign", b"EchoInt", b"1", b"--idempotency-key", b"\xff")
    assert key.returncode == USAGE
    assert b"--idempotency-key" in key.stderr
    ident = raw(b"get", b"\xff")
    assert ident.returncode == USAGE
    for done in (text, key, ident):
        assert b"Traceback" not in done.stderr
    as_bytes = raw(b"assign", b"EchoBytes", b"\xff", b"--wait")
    assert as_bytes.returncode == 0, as_bytes.stderr
    assert json.loads(as_bytes.stdout)["result"] == {"base64": "/w=="}


# -- negative numbers and "--" ------------------------------------------------


@pytest.mark.parametrize(
    ("words", "result"),
    [
        (["Add", "-5", "1"], -4),
        (["Add", "--", "-5", "1"], -4),
        (["Add", "-5", "-1", "--priority", "-3"], -6),
        (["--priority", "-3", "Add", "-5", "-1"], -6),
        (["Add", "-5", "--priority=-3", "-1"], -6),
        (["Add", "--", "-5", "--wait"], None),
    ],
)
def test_negative_ints_are_arguments_and_flags_still_work_anywhere(
    server: EchoServer, words: list[str], result: int | None
) -> None:
    run = echoctl(server.address, "assign", "--wait", *words)
    if result is None:
        # After "--" even a flag's name is an argument: here the second b.
        assert_clean(run, 1, "b (int)")
        return
    assert run.code == 0, run.stderr
    [line] = run.lines
    assert line["result"] == result


@pytest.mark.parametrize("word", ["-2.5", "-1e3", "-.5", "-inf"])
def test_negative_doubles_are_arguments(interop: EchoServer, word: str) -> None:
    run = echoctl(interop.address, "assign", "EchoDouble", word, "--wait")
    assert run.code == 0, run.stderr
    assert '"result": ' in run.stdout
    assert float(run.lines[0]["result"]) == float(word)


# -- stream ------------------------------------------------------------------


def test_stream_help_documents_count(server: EchoServer) -> None:
    run = echoctl(server.address, "stream", "--help")
    assert run.code == 0
    assert "--count" in run.stdout
    assert "Ctrl-C" in run.stdout


def test_ctrl_c_ends_an_idle_stream_with_130_and_no_traceback(
    server: EchoServer, client: Client
) -> None:
    action_id = client.assign("Add", 1, 1).action.id
    client.wait(action_id, timeout=timedelta(seconds=WAIT))
    environ = {**os.environ, "ECHO_TARGET": server.address}
    with subprocess.Popen(
        [ECHOCTL, "stream", "--after", "0", "--id", action_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    ) as process:
        assert process.stdout is not None
        try:
            # Every event of the finished action is printed: the stream is
            # now idle, waiting for events that will not come.
            while True:
                line = process.stdout.readline()
                assert line, "the stream ended by itself"
                if json.loads(line)["state"] == "succeeded":
                    break
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=WAIT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=WAIT)
    assert process.returncode == 130
    assert err == ""


def test_a_batch_over_the_message_limit_is_sent_in_halves_and_a_huge_line_refused(
    make_server: Callable[..., EchoServer], tmp_path: Path
) -> None:
    server = make_server(max_message_bytes=64 * 1024)
    lines = [{"name": "Echo", "args": [f"{i:04d}" + "x" * 4000]} for i in range(40)]
    lines.insert(7, {"name": "Echo", "args": ["y" * 100_000]})
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))

    run = echoctl(server.address, "assign", "--from", str(source), "--wait")

    assert run.code == 1, run.stderr
    assert "Traceback" not in run.stderr
    [refused] = run.stderr.splitlines()
    assert refused.startswith("echoctl: line 8: refused:"), refused
    outcomes = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(o["line"] for o in outcomes) == [n for n in range(1, 42) if n != 8]
    assert all(o["state"] == "succeeded" for o in outcomes), outcomes


def test_a_stream_whose_server_goes_away_says_it_reconnects(
    make_server: Callable[..., EchoServer], tmp_path: Path
) -> None:
    server = make_server()
    err = tmp_path / "stderr.txt"
    environ = {**os.environ, "ECHO_TARGET": server.address}
    with (
        err.open("w") as sink,
        subprocess.Popen(
            [ECHOCTL, "stream"], stdout=subprocess.DEVNULL, stderr=sink, env=environ
        ) as process,
    ):
        try:
            assert wait_until(lambda: server.open_streams == 1)
            server.stop()
            assert wait_until(lambda: "event stream reopens" in err.read_text())
        finally:
            process.kill()
            process.wait(timeout=WAIT)
    assert err.read_text().startswith("echoctl: event stream reopens in ")
