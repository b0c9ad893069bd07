"""The built-in file plan: read, write, inspect and hash files under one root.

It is the plan ``echo-service serve`` runs when no ``--plan`` is given. Every
path is relative to the root and resolved by ``Sandbox``, which refuses any
path that would leave the root, also through symlinks or races.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from echo_service.engine import (
    ActionSignature,
    ExecutionContext,
    Parameter,
    Plan,
    PlanBuilder,
    TypeRef,
    ValueType,
)
from echo_service.plans._sandbox import Sandbox

__all__ = ["DEFAULT_MAX_READ_BYTES", "DEFAULT_MAX_WRITE_BYTES", "file_plan"]

DEFAULT_MAX_READ_BYTES = 16 << 20
DEFAULT_MAX_WRITE_BYTES = 16 << 20

_PATH = Parameter("path", TypeRef(ValueType.STRING), "relative to the root")


def file_plan(
    root: Path,
    *,
    reserved: Iterable[Path] = (),
    max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
    max_write_bytes: int = DEFAULT_MAX_WRITE_BYTES,
) -> Plan:
    """Build the file plan rooted at ``root``.

    Args:
        root: the directory all paths are relative to.
        reserved: directories under the root that no action may enter, such
            as the journal's data directory.
        max_read_bytes: ``Read`` fails for larger files. ``Hash`` streams and
            has no limit.
        max_write_bytes: ``Write`` content larger than this (as UTF-8) is
            refused at assign with a field violation on ``args[1]``, so it
            is never journaled; the sandbox checks it again when it writes.
    """
    box = Sandbox(
        root,
        reserved=reserved,
        max_read_bytes=max_read_bytes,
        max_write_bytes=max_write_bytes,
    )

    def read(ctx: ExecutionContext, path: str) -> str:
        return box.read(path)

    def write(ctx: ExecutionContext, path: str, content: str) -> int:
        return box.write(path, content.encode("utf-8"))

    def stat(ctx: ExecutionContext, path: str) -> dict[str, object]:
        return box.stat(path)

    def list_dir(ctx: ExecutionContext, path: str) -> dict[str, object]:
        return box.list(path)

    def hash_file(ctx: ExecutionContext, path: str) -> str:
        return box.hash(path, cancelled=lambda: ctx.cancellation.cancelled)

    string, json = TypeRef(ValueType.STRING), TypeRef(ValueType.JSON)
    content = Parameter(
        "content",
        string,
        f"UTF-8 text, at most {max_write_bytes} bytes",
        max_bytes=max_write_bytes,
    )
    builder = PlanBuilder()
    for signature, handler in (
        (
            ActionSignature(
                "Read",
                (_PATH,),
                string,
                f"a UTF-8 text file, at most {max_read_bytes} bytes",
            ),
            read,
        ),
        (
            ActionSignature(
                "Write",
                (_PATH, content),
                TypeRef(ValueType.INT),
                "replace a file atomically (parents are made); returns bytes written",
            ),
            write,
        ),
        (
            ActionSignature(
                "Stat",
                (_PATH,),
                json,
                "type, size, mode and modification time; symlinks are not followed",
            ),
            stat,
        ),
        (
            ActionSignature(
                "List", (_PATH,), json, "a directory's entries (name, type, size)"
            ),
            list_dir,
        ),
        (
            ActionSignature("Hash", (_PATH,), string, "SHA-256 of a file, as hex"),
            hash_file,
        ),
    ):
        builder.register(signature, handler)
    return builder.build()
