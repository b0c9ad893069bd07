"""The file sandbox: every way out of the root is refused, nothing outside is
touched, and symlinks swapped in while a call runs cannot lead out."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from echo_service.engine import NonRetryable
from echo_service.plans import (
    FileTooLargeError,
    InvalidPathError,
    NotRegularFileError,
    PathEscapeError,
    ReservedPathError,
    Sandbox,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A root with a few files, and a sibling ``outside`` holding a secret."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "hello.txt").write_text("hello")
    (root / "sub" / "inner.txt").write_text("inner")
    (outside / "secret.txt").write_text("secret")
    return root, outside


def test_read_returns_a_files_text(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    box = Sandbox(root)
    assert box.read("hello.txt") == "hello"
    assert box.read("./sub//inner.txt") == "inner"
    assert box.read("sub/../hello.txt") == "hello"


def test_a_trailing_slash_names_a_directory(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    box = Sandbox(root)
    assert box.stat("sub/")["type"] == "directory"
    for call in (
        lambda: box.stat("hello.txt/"),
        lambda: box.read("hello.txt/"),
        lambda: box.hash("hello.txt/"),
        lambda: box.write("fresh/", b"x"),
        lambda: box.write("hello.txt/", b"x"),
    ):
        with pytest.raises(NonRetryable, match="directory"):
            call()
    assert not (root / "fresh").exists()
    assert (root / "hello.txt").read_text() == "hello"


@pytest.mark.parametrize(
    "path",
    ["../outside/secret.txt", "sub/../../outside/secret.txt", "..", "sub/../.."],
)
def test_dot_dot_above_the_root_is_refused(tree: tuple[Path, Path], path: str) -> None:
    root, _ = tree
    with pytest.raises(PathEscapeError):
        Sandbox(root).read(path)


def test_an_absolute_path_is_refused(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    with pytest.raises(PathEscapeError):
        Sandbox(root).read(str(outside / "secret.txt"))


@pytest.mark.parametrize("path", ["", "a\0b", "x/" * 3000])
def test_malformed_paths_are_refused(tree: tuple[Path, Path], path: str) -> None:
    root, _ = tree
    with pytest.raises(InvalidPathError):
        Sandbox(root).read(path)


def test_refusals_are_non_retryable() -> None:
    assert issubclass(PathEscapeError, NonRetryable)
    assert issubclass(FileTooLargeError, NonRetryable)


def test_a_symlinked_file_leading_out_is_refused(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "link.txt").symlink_to(outside / "secret.txt")
    box = Sandbox(root)
    for call in (box.read, box.hash):
        with pytest.raises(PathEscapeError):
            call("link.txt")


def test_a_relative_symlink_leading_out_is_refused(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "sub" / "up").symlink_to("../../outside")
    with pytest.raises(PathEscapeError):
        Sandbox(root).read("sub/up/secret.txt")


def test_a_symlinked_directory_leading_out_is_refused(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "out").symlink_to(outside)
    box = Sandbox(root)
    with pytest.raises(PathEscapeError):
        box.read("out/secret.txt")
    with pytest.raises(PathEscapeError):
        box.list("out")


def test_symlinks_that_stay_inside_are_followed(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "alias").symlink_to("sub")
    (root / "sub" / "back.txt").symlink_to("../hello.txt")
    box = Sandbox(root)
    assert box.read("alias/inner.txt") == "inner"
    assert box.read("sub/back.txt") == "hello"
    assert box.stat("alias")["type"] == "symlink"


def test_a_symlink_loop_fails_without_hanging(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(NonRetryable):
        Sandbox(root).read("a")


def test_write_through_a_symlink_leading_out_touches_nothing_outside(
    tree: tuple[Path, Path],
) -> None:
    root, outside = tree
    (root / "out").symlink_to(outside)
    (root / "evil.txt").symlink_to(outside / "secret.txt")
    (root / "fresh.txt").symlink_to(outside / "new.txt")
    box = Sandbox(root)
    for path in ("out/secret.txt", "evil.txt", "fresh.txt", "out/new.txt"):
        with pytest.raises(PathEscapeError):
            box.write(path, b"pwned")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"


def test_write_replaces_atomically_and_makes_parents(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    box = Sandbox(root)
    assert box.write("new/deeper/file.txt", "héllo".encode()) == 6
    assert (root / "new" / "deeper" / "file.txt").read_text() == "héllo"
    (root / "hello.txt").chmod(0o640)
    assert box.write("hello.txt", b"bye") == 3
    assert (root / "hello.txt").read_text() == "bye"
    assert (root / "hello.txt").stat().st_mode & 0o777 == 0o640
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".echo-")]
    assert leftovers == []


def test_write_onto_a_directory_fails_and_leaves_no_temporary_file(
    tree: tuple[Path, Path],
) -> None:
    root, _ = tree
    with pytest.raises(NonRetryable):
        Sandbox(root).write("sub", b"x")
    assert sorted(p.name for p in (root / "sub").iterdir()) == ["inner.txt"]
    assert [p for p in root.iterdir() if p.name.startswith(".echo-")] == []


def test_oversize_read_and_write_fail_clearly(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "big.txt").write_text("x" * 101)
    box = Sandbox(root, max_read_bytes=100, max_write_bytes=10)
    with pytest.raises(FileTooLargeError, match="read limit of 100 bytes"):
        box.read("big.txt")
    with pytest.raises(FileTooLargeError, match="write limit of 10 bytes"):
        box.write("w.txt", b"x" * 11)
    assert not (root / "w.txt").exists()
    # Hash streams, so the read limit does not apply to it.
    assert box.hash("big.txt") == hashlib.sha256(b"x" * 101).hexdigest()


def test_hash_streams_a_file_larger_than_one_chunk(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    data = os.urandom((1 << 20) * 2 + 123)
    (root / "blob").write_bytes(data)
    assert Sandbox(root).hash("blob") == hashlib.sha256(data).hexdigest()


def test_a_fifo_is_refused_without_blocking(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.mkfifo(root / "pipe")
    with pytest.raises(NotRegularFileError):
        Sandbox(root).read("pipe")


def test_reading_a_directory_is_refused(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    with pytest.raises(NonRetryable):
        Sandbox(root).read("sub")
    with pytest.raises(NonRetryable):
        Sandbox(root).read(".")


def test_a_missing_file_is_a_non_retryable_file_not_found(
    tree: tuple[Path, Path],
) -> None:
    root, _ = tree
    with pytest.raises(NonRetryable) as caught:
        Sandbox(root).read("missing.txt")
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_stat_and_list_describe_entries(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    box = Sandbox(root)
    info = box.stat("hello.txt")
    assert info["type"] == "file"
    assert info["size"] == 5
    assert isinstance(info["modified"], str)
    assert box.stat(".")["type"] == "directory"
    listing = box.list(".")
    assert listing["entries"] == [
        {"name": "hello.txt", "type": "file", "size": 5},
        {"name": "sub", "type": "directory", "size": (root / "sub").stat().st_size},
    ]
    assert listing["truncated"] is False


def test_a_reserved_directory_cannot_be_entered_by_any_name(
    tree: tuple[Path, Path],
) -> None:
    root, _ = tree
    data = root / "data"
    data.mkdir()
    (data / "echo.db").write_text("journal")
    (root / "alias").symlink_to("data")
    box = Sandbox(root, reserved=[data])
    for call, path in [
        (box.read, "data/echo.db"),
        (box.read, "alias/echo.db"),
        (box.list, "data"),
        (box.stat, "data"),
    ]:
        with pytest.raises(ReservedPathError):
            call(path)
    with pytest.raises(ReservedPathError):
        box.write("data/echo.db", b"overwritten")
    assert (data / "echo.db").read_text() == "journal"


def test_a_directory_swapped_for_an_outside_symlink_mid_walk_stays_inside(
    tree: tuple[Path, Path],
) -> None:
    """Given the walk has opened ``sub``, when ``sub`` is replaced by a symlink
    to the outside, then the rest of the walk still reads the original."""
    root, outside = tree
    (outside / "inner.txt").write_text("outside!")

    def swap(name: str) -> None:
        if name == "sub":
            (root / "sub").rename(root / "sub-moved")
            (root / "sub").symlink_to(outside)

    box = Sandbox(root, _after_step=swap)
    assert box.read("sub/inner.txt") == "inner"


def test_racing_symlink_swaps_never_reach_the_outside(
    tree: tuple[Path, Path],
) -> None:
    """A thread flips ``sub`` between a real directory and a symlink to the
    outside as fast as it can while reads run; no read ever returns outside
    content."""
    root, outside = tree
    (outside / "inner.txt").write_text("outside!")
    (root / "real").mkdir()
    (root / "real" / "inner.txt").write_text("inner")
    (root / "sub" / "inner.txt").unlink()
    (root / "sub").rmdir()
    (root / "evil").symlink_to(outside)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.symlink("real", root / "tmp-link")
            os.replace(root / "tmp-link", root / "sub")
            os.symlink(str(outside), root / "tmp-link")
            os.replace(root / "tmp-link", root / "sub")

    flipper = threading.Thread(target=flip)
    flipper.start()
    box = Sandbox(root)
    outcomes: dict[str, int] = {}
    try:
        for _ in range(2000):
            try:
                text = box.read("sub/inner.txt")
            except PathEscapeError:
                text = "refused"
            except NonRetryable:
                text = "gone"
            assert text != "outside!"
            outcomes[text] = outcomes.get(text, 0) + 1
    finally:
        stop.set()
        flipper.join()
    assert outcomes.get("inner", 0) + outcomes.get("refused", 0) > 0
