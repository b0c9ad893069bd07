"""The built-in file plan served for real: its signatures, its five actions,
and refusals that fail at once instead of being retried."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from echo_client import ActionRequest, Client, InvalidArgumentError, State

from echo_service._proto.echo.v1 import echo_service_pb2, echo_service_pb2_grpc
from echo_service.plans import file_plan
from echo_service.server import EchoServer
from tests.conftest import WAIT

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "a.txt").write_text("alpha")
    (tmp_path / "secret.txt").write_text("outside")
    (folder / "escape").symlink_to(tmp_path / "secret.txt")
    return folder


@pytest.fixture
def files(
    make_server: Callable[..., EchoServer], root: Path, tmp_path: Path
) -> Iterator[Client]:
    plan = file_plan(root, reserved=[root / "data"], max_read_bytes=64)
    server = make_server(plan=plan)
    with Client(server.address, timeout=WAIT_TD) as client:
        yield client


def _run(client: Client, name: str, *args: object) -> object:
    done = client.wait(client.assign(name, *args).action.id, timeout=WAIT_TD)
    assert done.state is State.SUCCEEDED, done.error
    return done.result


def test_the_plan_declares_its_five_actions(files: Client) -> None:
    signatures = {s.name: s for s in files.list_signatures()}
    assert sorted(signatures) == ["Hash", "List", "Read", "Stat", "Write"]
    assert signatures["Write"].output == "int"
    assert signatures["Stat"].output == "json"
    assert [p.type for p in signatures["Write"].inputs] == ["string", "string"]


def test_write_read_stat_list_and_hash(files: Client, root: Path) -> None:
    assert _run(files, "Write", "new/b.txt", "héllo") == len("héllo".encode())
    assert (root / "new" / "b.txt").read_text() == "héllo"
    assert _run(files, "Read", "new/b.txt") == "héllo"
    stat = _run(files, "Stat", "new/b.txt")
    assert isinstance(stat, dict)
    assert stat["type"] == "file"
    assert stat["size"] == 6
    listing = _run(files, "List", "docs")
    assert isinstance(listing, dict)
    assert [e["name"] for e in listing["entries"]] == ["a.txt"]
    assert _run(files, "Hash", "docs/a.txt") == hashlib.sha256(b"alpha").hexdigest()


@pytest.mark.parametrize(
    ("name", "args", "error_type"),
    [
        ("Read", ("../secret.txt",), "PathEscapeError"),
        ("Read", ("escape",), "PathEscapeError"),
        ("Write", ("escape", "x"), "PathEscapeError"),
        ("Read", ("/etc/hostname",), "PathEscapeError"),
        ("Read", ("missing.txt",), "FileNotFoundError"),
        ("Write", ("data/echo.db", "x"), "ReservedPathError"),
    ],
)
def test_refusals_fail_at_the_first_attempt_with_a_clear_error(
    files: Client, root: Path, name: str, args: tuple[object, ...], error_type: str
) -> None:
    (root / "data").mkdir(exist_ok=True)
    done = files.wait(files.assign(name, *args).action.id, timeout=WAIT_TD)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.type == error_type
    assert done.error.non_retryable
    assert done.attempt == 1
    assert (root.parent / "secret.txt").read_text() == "outside"


def test_an_oversize_read_fails_clearly(files: Client, root: Path) -> None:
    (root / "big.txt").write_text("x" * 65)
    done = files.wait(files.assign("Read", "big.txt").action.id, timeout=WAIT_TD)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.type == "FileTooLargeError"
    assert "read limit of 64 bytes" in done.error.message


@pytest.fixture
def small_writes(
    make_server: Callable[..., EchoServer], root: Path
) -> Iterator[tuple[EchoServer, Client]]:
    server = make_server(plan=file_plan(root, max_write_bytes=8))
    with Client(server.address, timeout=WAIT_TD) as client:
        yield server, client


def test_the_write_limit_is_stated_in_the_signature(
    small_writes: tuple[EchoServer, Client],
) -> None:
    _, client = small_writes
    [write] = [s for s in client.list_signatures() if s.name == "Write"]
    assert write.inputs[1].name == "content"
    assert "at most 8 bytes" in write.inputs[1].description


def test_the_write_limit_is_a_typed_field_of_the_contract(
    small_writes: tuple[EchoServer, Client],
) -> None:
    server, _ = small_writes
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        answer = stub.ListSignatures(
            echo_service_pb2.ListSignaturesRequest(), timeout=WAIT
        )
    [write] = [s for s in answer.signatures if s.name == "Write"]
    path, content = write.inputs
    assert content.HasField("max_bytes") and content.max_bytes == 8
    assert not path.HasField("max_bytes")


@pytest.mark.parametrize("content", ["123456789", "ééééé"])  # 9 and 10 bytes
def test_an_oversize_write_is_refused_at_assign_naming_the_content(
    small_writes: tuple[EchoServer, Client], root: Path, content: str
) -> None:
    server, client = small_writes
    with pytest.raises(InvalidArgumentError) as refused:
        client.assign("Write", "big.txt", content)
    assert [v.field for v in refused.value.field_violations] == ["action.args[1]"]
    [violation] = refused.value.field_violations
    assert violation.description.startswith("content: ")
    assert "more than the limit of 8" in violation.description
    assert server.store.last_sequence() == 0
    assert not (root / "big.txt").exists()


def test_an_oversize_write_in_a_batch_refuses_the_whole_batch(
    small_writes: tuple[EchoServer, Client],
) -> None:
    server, client = small_writes
    with pytest.raises(InvalidArgumentError) as refused:
        client.assign_many(
            [
                ActionRequest("Write", ("a.txt", "fine")),
                ActionRequest("Write", ("b.txt", "far too long")),
            ]
        )
    assert [v.field for v in refused.value.field_violations] == ["actions[1].args[1]"]
    assert server.store.last_sequence() == 0


def test_a_write_at_the_limit_in_utf8_bytes_is_accepted_and_written(
    small_writes: tuple[EchoServer, Client], root: Path
) -> None:
    _, client = small_writes
    assert _run(client, "Write", "edge.txt", "éééé") == 8
    assert (root / "edge.txt").read_text() == "éééé"
