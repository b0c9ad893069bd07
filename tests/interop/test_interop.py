"""The Python, TypeScript and Go clients play the same scenarios against one
live server, and third-party gRPC tools drive it too.

Each language's runner plays every scenario of ``scenarios.json`` once and
prints a result line per scenario; each (language, scenario) pair is its own
test, so a failure names both. The Node and Go clients' own test suites run
here as well, against the live server, which runs their README examples for
real. ghz puts a short load on Assign.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop._support import (
    GO_CLIENT,
    NODE_CLIENT,
    ROOT,
    TOOLS,
    LiveServer,
    missing,
    need,
)

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios.json"
SCENARIO_NAMES = [s["name"] for s in json.loads(SCENARIOS.read_text())["scenarios"]]
LANGUAGES = ["python", "node", "go"]
RUN_TIMEOUT = 90.0


@dataclass(frozen=True)
class Played:
    """What one runner printed: its result per scenario, and its output."""

    results: dict[str, dict[str, object]]
    output: str


@dataclass(frozen=True)
class Command:
    argv: list[str]
    cwd: Path


def _python_runner(target: str, tmp: Path) -> Command:
    runner = str(HERE / "runner.py")
    argv = [sys.executable, runner, "--target", target, "--scenarios", str(SCENARIOS)]
    return Command(argv, ROOT)


def _node_runner(target: str, tmp: Path) -> Command:
    node = need("node")
    if not (NODE_CLIENT / "node_modules" / ".bin" / "tsx").exists():
        missing("clients/node has no node_modules (run: bash scripts/install_tools.sh)")
    runner = "interop/runner.ts"
    argv = [node, "--import", "tsx", runner, "--target", target]
    return Command([*argv, "--scenarios", str(SCENARIOS)], NODE_CLIENT)


def _go_runner(target: str, tmp: Path) -> Command:
    go = need("go")
    binary = tmp / "interop"
    build = subprocess.run(
        [go, "build", "-o", str(binary), "./cmd/interop"],
        cwd=GO_CLIENT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"the Go runner did not build:\n{build.stderr}")
    argv = [str(binary), "-target", target, "-scenarios", str(SCENARIOS)]
    return Command(argv, GO_CLIENT)


RUNNERS: dict[str, Callable[[str, Path], Command]] = {
    "python": _python_runner,
    "node": _node_runner,
    "go": _go_runner,
}


@pytest.fixture(scope="module")
def played(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Played]]:
    """Plays a language's runner on first use and remembers what it printed."""
    cache: dict[str, Played] = {}

    def play(language: str) -> Played:
        if language not in cache:
            tmp = tmp_path_factory.mktemp(language)
            command = RUNNERS[language](live_server.target, tmp)
            done = subprocess.run(
                command.argv,
                cwd=command.cwd,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
            results = {}
            for line in done.stdout.splitlines():
                if line.startswith("{"):
                    result = json.loads(line)
                    results[result["scenario"]] = result
            output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            cache[language] = Played(results, output)
        return cache[language]

    yield play


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_each_client_plays_each_scenario(
    played: Callable[[str], Played], language: str, scenario: str
) -> None:
    outcome = played(language)
    result = outcome.results.get(scenario)
    assert result is not None, (
        f"{language} printed no result for {scenario}\n{outcome.output}"
    )
    assert result["ok"], f"{language} failed {scenario}: {result['detail']}"


def test_every_runner_closes_with_its_tally(played: Callable[[str], Played]) -> None:
    for language in LANGUAGES:
        outcome = played(language)
        tally = f"{len(SCENARIO_NAMES)} passed, 0 failed"
        assert tally in outcome.output, f"{language}:\n{outcome.output}"


def _suite(command: list[str], cwd: Path, target: str) -> None:
    env = {**os.environ, "ECHO_TARGET": target}
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"


def test_the_node_client_suite_and_readme_example_pass_against_the_server(
    live_server: LiveServer,
) -> None:
    npm = need("npm")
    if not (NODE_CLIENT / "node_modules").is_dir():
        missing("clients/node has no node_modules (run: bash scripts/install_tools.sh)")
    _suite([npm, "test", "--silent"], NODE_CLIENT, live_server.target)


def test_the_go_client_suite_and_example_pass_against_the_server(
    live_server: LiveServer,
) -> None:
    go = need("go")
    _suite([go, "test", "-count=1", "./..."], GO_CLIENT, live_server.target)


def test_ghz_puts_a_short_load_on_assign_without_errors(
    live_server: LiveServer,
) -> None:
    ghz = need("ghz", where=TOOLS)
    requests = 300
    done = subprocess.run(
        [
            ghz,
            "--insecure",
            "--proto",
            str(ROOT / "proto" / "echo" / "v1" / "echo_service.proto"),
            "--import-paths",
            str(ROOT / "proto"),
            "--call",
            "echo.v1.EchoService/Assign",
            "--data",
            json.dumps(
                {
                    "action": {
                        "name": "Add",
                        "args": [{"intValue": "1"}, {"intValue": "2"}],
                    }
                }
            ),
            "--total",
            str(requests),
            "--concurrency",
            "8",
            "--connections",
            "2",
            "--timeout",
            "10s",
            "--format",
            "json",
            live_server.target,
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["count"] == requests
    assert report["statusCodeDistribution"] == {"OK": requests}, report
    assert report["errorDistribution"] in ({}, None), report["errorDistribution"]
    assert report["rps"] > 0


def test_ghz_finds_assign_through_server_reflection(live_server: LiveServer) -> None:
    ghz = need("ghz", where=TOOLS)
    done = subprocess.run(
        [
            ghz,
            "--insecure",
            "--call",
            "echo.v1.EchoService/Assign",
            "--data",
            '{"action": {"name": "EchoString", "args": [{"stringValue": "x"}]}}',
            "--total",
            "5",
            live_server.target,
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
