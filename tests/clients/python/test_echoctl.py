"""``echoctl`` run as a subprocess against a live server: output, errors,
exit statuses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from echo_client import Client, State

from echo_service.server import EchoServer
from echo_service.server._security import server_credentials
from tests.conftest import WAIT, Gates
from tests.production._certs import Authority

pytestmark = pytest.mark.timeout(90)

ECHOCTL = str(Path(sys.executable).with_name("echoctl"))


class Run:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def echoctl(
    target: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> Run:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    environ.update({"ECHO_TARGET": target, **(env or {})})
    done = subprocess.run(
        [ECHOCTL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    return Run(done)


def test_signatures_prints_one_json_line_per_action(server: EchoServer) -> None:
    run = echoctl(server.address, "signatures")
    assert run.code == 0, run.stderr
    by_name = {line["name"]: line for line in run.lines}
    assert by_name["Add"]["inputs"] == [
        {"name": "a", "type": "int"},
        {"name": "b", "type": "int"},
    ]
    assert by_name["Add"]["output"] == "int"


def test_assign_with_wait_prints_the_typed_result(server: EchoServer) -> None:
    run = echoctl(server.address, "assign", "Add", "2", "40", "--wait")
    assert run.code == 0, run.stderr
    [line] = run.lines
    assert line["state"] == "succeeded"
    assert line["result"] == 42
    assert '"result": 42' in run.stdout  # an int, never 42.0


def test_assign_then_get_prints_the_action_with_its_state(
    server: EchoServer, client: Client
) -> None:
    run = echoctl(server.address, "assign", "Json", '{"n": 1}')
    assert run.code == 0, run.stderr
    [accepted] = run.lines
    client.wait(accepted["id"], timeout=timedelta(seconds=WAIT))
    got = echoctl(server.address, "get", accepted["id"])
    assert got.code == 0, got.stderr
    [action] = got.lines
    assert action["state"] == "succeeded"
    assert action["result"] == {"n": 1}


def test_an_argument_of_the_wrong_type_is_refused_before_sending(
    server: EchoServer,
) -> None:
    run = echoctl(server.address, "assign", "Add", "two", "1")
    assert run.code == 1
    assert "a (int)" in run.stderr
    assert run.stdout == ""


def test_a_failed_action_exits_non_zero_with_its_error(server: EchoServer) -> None:
    run = echoctl(server.address, "assign", "Fail", "broken", "--wait")
    assert run.code == 1
    [line] = run.lines
    assert line["state"] == "failed"
    assert line["error"]["type"] == "ValueError"


def test_assign_from_a_file_reports_bad_lines_by_number(
    server: EchoServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"name": "Add", "args": [1, 2]}),
                "this is not json",
                json.dumps({"name": "Add", "args": [1]}),
                "",
                json.dumps({"name": "Missing"}),
                json.dumps(
                    {"name": "Echo", "args": ["hi"], "options": {"delay": "0s"}}
                ),
                json.dumps({"name": "Add", "args": [1, 2], "options": {"bogus": 1}}),
                json.dumps(
                    {
                        "name": "Add",
                        "args": [3, 4],
                        "options": {"retryPolicy": {"maximumAttempts": 0}},
                    }
                ),
            ]
        )
        + "\n"
    )
    run = echoctl(server.address, "assign", "--from", str(source), "--wait")
    assert run.code == 1
    outcomes = {line["line"]: line for line in run.lines}
    assert sorted(outcomes) == [1, 6, 8]
    assert outcomes[1]["result"] == 3
    assert outcomes[6]["result"] == "hi"
    assert outcomes[8]["result"] == 7
    for number in (2, 3, 5, 7):
        assert f"line {number}:" in run.stderr
    assert "line 4:" not in run.stderr  # blank lines are skipped


def test_assign_from_stdin_without_wait_prints_ids(server: EchoServer) -> None:
    lines = "".join(
        json.dumps({"name": "Add", "args": [i, i]}) + "\n" for i in range(7)
    )
    run = echoctl(server.address, "assign", "--from", "-", "--chunk", "3", stdin=lines)
    assert run.code == 0, run.stderr
    assert [line["line"] for line in run.lines] == list(range(1, 8))
    assert len({line["id"] for line in run.lines}) == 7


def test_a_server_refusal_names_the_line(server: EchoServer) -> None:
    lines = (
        json.dumps({"name": "Add", "args": [1, 1]})
        + "\n"
        + json.dumps({"name": "Add", "args": [1, 1], "options": {"delay": "-5s"}})
        + "\n"
    )
    run = echoctl(server.address, "assign", "--from", "-", "--wait", stdin=lines)
    assert run.code == 1
    assert "line 2: refused" in run.stderr
    assert [line["line"] for line in run.lines] == [1]


def test_duplicate_lines_by_idempotency_key_give_one_outcome(
    server: EchoServer,
) -> None:
    line = json.dumps(
        {"name": "Add", "args": [5, 5], "options": {"idempotencyKey": "same"}}
    )
    run = echoctl(
        server.address, "assign", "--from", "-", "--wait", stdin=f"{line}\n{line}\n"
    )
    assert run.code == 0, run.stderr
    [outcome] = run.lines
    assert outcome["result"] == 10
    assert outcome["line"] == 1
    assert "line 2: the action of line 1 again" in run.stderr


def test_cancel_prints_the_action_and_a_second_cancel_fails(
    server: EchoServer, client: Client, gates: Gates
) -> None:
    action_id = client.assign("Block", "cli").action.id
    assert gates.wait_entered("cli")
    run = echoctl(server.address, "cancel", action_id, "--reason", "test")
    assert run.code == 0, run.stderr
    assert run.lines[0]["id"] == action_id
    done = client.wait(action_id, timeout=timedelta(seconds=WAIT))
    assert done.state is State.CANCELLED
    again = echoctl(server.address, "cancel", action_id)
    assert again.code == 1
    assert "FAILED_PRECONDITION" in again.stderr


def test_get_of_an_unknown_id_exits_one(server: EchoServer) -> None:
    run = echoctl(server.address, "get", "nope")
    assert run.code == 1
    assert "NOT_FOUND" in run.stderr


def test_stream_prints_events_as_json_lines(server: EchoServer, client: Client) -> None:
    client.wait(client.assign("Add", 1, 1).action.id, timeout=timedelta(seconds=WAIT))
    run = echoctl(server.address, "stream", "--after", "0", "--count", "4")
    assert run.code == 0, run.stderr
    assert [line["sequence"] for line in run.lines] == [1, 2, 3, 4]
    assert run.lines[-1]["state"] == "succeeded"


def test_stream_prints_only_the_states_asked_for(
    server: EchoServer, client: Client
) -> None:
    for a, b in ((1, 1), (2, 2)):
        client.wait(
            client.assign("Add", a, b).action.id, timeout=timedelta(seconds=WAIT)
        )
    run = echoctl(
        server.address,
        "stream",
        "--after",
        "0",
        "--state",
        "SUCCEEDED",
        "--state",
        "running",
        "--count",
        "4",
    )
    assert run.code == 0, run.stderr
    assert [(line["state"], line.get("result")) for line in run.lines] == [
        ("running", None),
        ("succeeded", 2),
        ("running", None),
        ("succeeded", 4),
    ]


@pytest.mark.parametrize("name", ["done", "unspecified"])
def test_stream_refuses_a_state_name_that_is_none(
    server: EchoServer, name: str
) -> None:
    run = echoctl(server.address, "stream", "--state", name, "--count", "1")
    assert run.code == 2
    assert f"--state {name!r}" in run.stderr
    assert "succeeded" in run.stderr


def test_an_unreachable_server_exits_three(unused_port: int) -> None:
    run = echoctl(f"127.0.0.1:{unused_port}", "--timeout", "1", "signatures")
    assert run.code == 3


def test_shutdown_needs_the_right_token(make_server: Callable[..., EchoServer]) -> None:
    server = make_server(admin_token="let-me-stop")
    missing = echoctl(server.address, "shutdown", env={"ECHO_ADMIN_TOKEN": ""})
    assert missing.code == 2
    wrong = echoctl(server.address, "shutdown", "--admin-token", "nope")
    assert wrong.code == 1
    assert "PERMISSION_DENIED" in wrong.stderr
    right = echoctl(server.address, "shutdown", env={"ECHO_ADMIN_TOKEN": "let-me-stop"})
    assert right.code == 0, right.stderr
    assert right.lines == [{"running": 0, "waiting": 0}]
    assert server.wait(timedelta(seconds=WAIT))


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_bearer_token_is_sent_when_the_server_asks_for_one(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(auth_token="t0ken")
    refused = echoctl(server.address, "signatures")
    assert refused.code == 1
    assert "UNAUTHENTICATED" in refused.stderr
    allowed = echoctl(server.address, "signatures", env={"ECHO_AUTH_TOKEN": "t0ken"})
    assert allowed.code == 0, allowed.stderr
    assert allowed.lines


def test_tls_and_mutual_tls_options_reach_the_channel(
    make_server: Callable[..., EchoServer], tmp_path: Path
) -> None:
    authority = Authority.create(tmp_path)
    leaf = authority.issue(tmp_path, "localhost", server=True)
    mine = authority.issue(tmp_path, "echoctl", server=False)
    server = make_server(
        host="localhost",
        credentials=server_credentials(leaf.cert, leaf.key, client_ca=authority.path),
    )
    target = f"localhost:{server.port}"
    assert echoctl(target, "--timeout", "2", "signatures").code != 0
    tls = ["--tls-ca", str(authority.path)]
    assert echoctl(target, *tls, "--timeout", "2", "signatures").code != 0
    mutual = [*tls, "--tls-cert", str(mine.cert), "--tls-key", str(mine.key)]
    run = echoctl(target, *mutual, "signatures")
    assert run.code == 0, run.stderr
    assert run.lines
