"""File access confined to one directory tree, safe against symlink races.

A client names files by relative paths; nothing it names may reach outside
the root, whatever symlinks the tree holds or grows while a call runs. Path
strings are never handed to the kernel whole. Every component is opened with
``O_NOFOLLOW`` relative to the descriptor of the directory before it
(``dir_fd``), starting from a descriptor of the root. A symlink met on the way
is read (``readlink``) and its target walked the same way; ``..`` pops back to
the previous directory descriptor and may never pop the root. A directory
swapped for a symlink after it was opened changes nothing: the walk goes on
inside the descriptor it already holds. Linux offers ``openat2`` with
``RESOLVE_BENEATH`` for exactly this, but Python does not expose it, so the
walk does by hand what that flag does in the kernel.

Descriptors: every descriptor opened here is owned by the call that opened it
and closed before the call returns, also on errors.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from echo_service.engine import NonRetryable

__all__ = [
    "FileTooLargeError",
    "InvalidPathError",
    "NotRegularFileError",
    "PathEscapeError",
    "ReservedPathError",
    "Sandbox",
    "SandboxError",
]

_MAX_SYMLINKS = 40  # as the kernel's own limit on links in one lookup
_MAX_PATH_BYTES = 4096
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO or a device must never hang a worker; the file
# is refused right after as not regular.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors about the request itself: retrying cannot help, so they stop at once.
# Others (EIO, ENOSPC, EMFILE, ...) may be passing and take the retry policy.
_PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EEXIST,
        errno.EINVAL,
        errno.EXDEV,
        errno.EROFS,
    }
)


class SandboxError(NonRetryable):
    """A request the sandbox refuses; retrying it cannot succeed."""


class InvalidPathError(SandboxError):
    """The path is empty, too long or holds a NUL byte."""


class PathEscapeError(SandboxError):
    """The path, or a symlink on it, leads outside the root."""


class ReservedPathError(SandboxError):
    """The path leads into a directory the service keeps for itself."""


class NotRegularFileError(SandboxError):
    """The path names a directory, a device, a FIFO or a socket."""


class FileTooLargeError(SandboxError):
    """The file or the content is larger than the configured limit."""


@dataclass(frozen=True, slots=True)
class _Entry:
    """The last component of a path: its parent's descriptor and its name.

    ``name`` is empty when the path names a directory reached by the walk
    itself (the root, ``.``, ``a/..``); ``parent`` is then that directory.
    """

    parent: int
    name: str


class Sandbox:
    """File operations confined to ``root``.

    Args:
        root: the directory every path is relative to.
        reserved: directories inside the root that no path may enter (the
            journal's data directory, say). They are identified by device and
            inode when a call runs, so another name for one (a symlink, a bind
            mount) is refused too.
        max_read_bytes: the largest file ``read`` returns.
        max_write_bytes: the largest content ``write`` accepts.
        max_list_entries: ``list`` returns at most this many entries.
    """

    def __init__(
        self,
        root: Path,
        *,
        reserved: Iterable[Path] = (),
        max_read_bytes: int = 16 << 20,
        max_write_bytes: int = 16 << 20,
        max_list_entries: int = 10_000,
        _after_step: Callable[[str], None] | None = None,
    ) -> None:
        self._root = Path(os.path.realpath(root))
        if not self._root.is_dir():
            raise NotADirectoryError(f"sandbox root {root} is not a directory")
        self._reserved = tuple(Path(p) for p in reserved)
        self._max_read = max_read_bytes
        self._max_write = max_write_bytes
        self._max_list = max_list_entries
        # Test seam: called after each directory on the way is opened, so a
        # test can swap the tree at the worst moment. None in production.
        self._after_step = _after_step

    @property
    def root(self) -> Path:
        return self._root

    # -- operations -----------------------------------------------------

    def read(self, path: str) -> str:
        """The file's content as UTF-8 text."""
        with self._guard(path), self._open_file(path) as fd:
            size = os.fstat(fd).st_size
            if size > self._max_read:
                raise FileTooLargeError(
                    f"{path}: {size} bytes, more than the read limit of "
                    f"{self._max_read} bytes"
                )
            data = _read_at_most(fd, self._max_read + 1)
            if len(data) > self._max_read:  # it grew while we read it
                raise FileTooLargeError(
                    f"{path}: more than the read limit of {self._max_read} bytes"
                )
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NonRetryable(f"{path}: not UTF-8 text ({exc.reason})") from exc

    def hash(self, path: str, *, cancelled: Callable[[], bool] = bool) -> str:
        """The SHA-256 of the file as hex, read in chunks of 1 MiB.

        ``cancelled`` is polled between chunks; when it turns true the read
        stops with ``InterruptedError``.
        """
        digest = hashlib.sha256()
        with self._guard(path), self._open_file(path) as fd:
            while chunk := os.read(fd, _CHUNK):
                digest.update(chunk)
                if cancelled():
                    raise InterruptedError(f"{path}: hashing was cancelled")
        return digest.hexdigest()

    def write(self, path: str, content: bytes) -> int:
        """Replace the file atomically with ``content``; returns its length.

        The content goes to a fresh temporary file in the same directory,
        which is synced and renamed over the target, so a reader sees the old
        or the new file, never a part. Missing parent directories are made.
        A symlink at the target inside the root is written through.
        """
        if len(content) > self._max_write:
            raise FileTooLargeError(
                f"{path}: content of {len(content)} bytes, more than the write "
                f"limit of {self._max_write} bytes"
            )
        with self._guard(path), ExitStack() as fds:
            entry = self._walk(path, fds, final="write")
            if not entry.name:
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            mode = _existing_mode(entry)
            tmp = f".echo-{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, _TMP_FLAGS, 0o600, dir_fd=entry.parent)
            try:
                try:
                    os.fchmod(fd, mode)
                    _write_all(fd, content)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(
                    tmp, entry.name, src_dir_fd=entry.parent, dst_dir_fd=entry.parent
                )
            except BaseException:
                _unlink_quietly(tmp, entry.parent)
                raise
            os.fsync(entry.parent)  # make the rename itself durable
        return len(content)

    def stat(self, path: str) -> dict[str, object]:
        """Describe the entry itself; a symlink is reported, not followed."""
        with self._guard(path), ExitStack() as fds:
            # "name/" names a directory, as it does for stat(2).
            last = "dir" if path.endswith("/") else "entry"
            entry = self._walk(path, fds, final=last)
            if entry.name:
                st = os.stat(entry.name, dir_fd=entry.parent, follow_symlinks=False)
                self._refuse_reserved(st, path)
            else:
                st = os.fstat(entry.parent)
            info: dict[str, object] = {
                "path": path,
                "type": _kind(st.st_mode),
                "size": st.st_size,
                "mode": stat.S_IMODE(st.st_mode),
                "modified": _rfc3339(st.st_mtime_ns),
            }
            if stat.S_ISLNK(st.st_mode):
                info["target"] = os.readlink(entry.name, dir_fd=entry.parent)
            return info

    def list(self, path: str) -> dict[str, object]:
        """The directory's entries sorted by name, at most ``max_list_entries``."""
        with self._guard(path), ExitStack() as fds:
            entry = self._walk(path, fds, final="dir")
            entries: list[dict[str, object]] = []
            truncated = False
            with os.scandir(entry.parent) as listing:
                for item in listing:
                    if len(entries) >= self._max_list:
                        truncated = True
                        break
                    try:
                        st = item.stat(follow_symlinks=False)
                    except FileNotFoundError:  # removed while we listed
                        continue
                    entries.append(
                        {
                            "name": item.name,
                            "type": _kind(st.st_mode),
                            "size": st.st_size,
                        }
                    )
            entries.sort(key=lambda e: str(e["name"]))
            return {"path": path, "entries": entries, "truncated": truncated}

    # -- the walk -------------------------------------------------------

    @contextmanager
    def _open_file(self, path: str) -> Iterator[int]:
        """A read descriptor of a regular file; closed on exit."""
        with ExitStack() as fds:
            entry = self._walk(path, fds, final="file")
            yield entry.parent

    @contextmanager
    def _guard(self, path: str) -> Iterator[None]:
        """Check the path's form; turn permanent OS errors into non-retryable."""
        if not isinstance(path, str) or not path:
            raise InvalidPathError("the path is empty")
        if "\0" in path:
            raise InvalidPathError("the path holds a NUL byte")
        if len(path.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
            raise InvalidPathError(f"the path is longer than {_MAX_PATH_BYTES} bytes")
        if path.startswith("/"):
            raise PathEscapeError(f"{path}: absolute paths are refused")
        try:
            yield
        except OSError as exc:
            if exc.errno in _PERMANENT_ERRNOS:
                raise NonRetryable(f"{path}: {exc.strerror or exc}") from exc
            raise

    def _walk(self, path: str, fds: ExitStack, *, final: str) -> _Entry:
        """Resolve ``path`` under the root; every descriptor goes into ``fds``.

        ``final`` says what to do with the last component: ``"file"`` opens it
        as a regular file, ``"dir"`` as a directory (both following symlinks
        inside the root), ``"write"`` follows a symlink but does not open,
        ``"entry"`` neither follows nor opens. The returned entry's ``parent``
        is the opened file or directory for ``"file"`` and ``"dir"``.
        """
        if path.endswith("/") and final in ("file", "write"):
            raise NotADirectoryError(
                errno.ENOTDIR, "a path ending in / names a directory", path
            )
        reserved = self._reserved_ids()
        root = os.open(self._root, _DIR_FLAGS)
        fds.callback(os.close, root)
        stack = [root]  # descriptors of the directories walked, root first
        pending = _components(path)
        links = 0
        while pending:
            name = pending.pop()
            if name == "..":
                if len(stack) == 1:
                    raise PathEscapeError(f"{path}: leads above the root")
                stack.pop()  # its descriptor stays in fds and closes at the end
                continue
            last = not pending
            if last and final == "entry":
                return _Entry(stack[-1], name)
            step: int | str | None
            if last and final == "write":
                step = _link_target(name, stack[-1])
                if step is None:
                    return _Entry(stack[-1], name)
            else:
                step = _open_or_link(
                    name,
                    stack[-1],
                    _FILE_FLAGS if last and final == "file" else _DIR_FLAGS,
                    make_missing_dir=final == "write" and not last,
                )
            if isinstance(step, int):
                fds.callback(os.close, step)
                st = os.fstat(step)
                if last and final == "file":
                    if not stat.S_ISREG(st.st_mode):
                        raise NotRegularFileError(f"{path}: not a regular file")
                    os.set_blocking(step, True)
                    return _Entry(step, name)
                if (st.st_dev, st.st_ino) in reserved:
                    raise ReservedPathError(f"{path}: reserved by the service")
                stack.append(step)
                if self._after_step is not None:
                    self._after_step(name)
                continue
            assert step is not None
            target = step
            # ``name`` is a symlink to ``target``: walk the target instead.
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            if target.startswith("/"):
                raise PathEscapeError(f"{path}: a symlink on it leads outside the root")
            pending.extend(_components(target))
        # Every component was consumed by directories: the path names one.
        if final == "file":
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return _Entry(stack[-1], "")

    def _reserved_ids(self) -> frozenset[tuple[int, int]]:
        ids = set()
        for folder in self._reserved:
            try:
                st = os.stat(folder)
            except OSError:
                continue
            ids.add((st.st_dev, st.st_ino))
        return frozenset(ids)

    def _refuse_reserved(self, st: os.stat_result, path: str) -> None:
        if (st.st_dev, st.st_ino) in self._reserved_ids():
            raise ReservedPathError(f"{path}: reserved by the service")


def _components(path: str) -> list[str]:
    """The path's components, reversed so that ``pop`` yields the next one."""
    return [c for c in reversed(path.split("/")) if c not in ("", ".")]


def _link_target(name: str, dir_fd: int) -> str | None:
    """The symlink's target, or None when ``name`` is not a symlink (or gone)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return None
        raise


def _open_or_link(
    name: str, dir_fd: int, flags: int, *, make_missing_dir: bool
) -> int | str:
    """Open ``name`` in ``dir_fd`` without following it: its descriptor, or
    the target when it is a symlink. With ``make_missing_dir`` a missing
    directory is made first (a few times, should another caller race us)."""
    for _ in range(3):
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT and make_missing_dir:
                # Made by someone else meanwhile: fine, open it next turn.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=dir_fd)
                continue
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            target = _link_target(name, dir_fd)
            if target is None:  # really not a directory
                raise
            return target
    raise FileNotFoundError(errno.ENOENT, "removed while being made", name)


def _existing_mode(entry: _Entry) -> int:
    """The permission bits the written file keeps: the old file's, or 0644."""
    try:
        st = os.stat(entry.name, dir_fd=entry.parent, follow_symlinks=False)
    except FileNotFoundError:
        return 0o644
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", entry.name)
    return stat.S_IMODE(st.st_mode)


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, min(left, _CHUNK))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _rfc3339(ns: int) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")
