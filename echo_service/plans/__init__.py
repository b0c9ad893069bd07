"""Built-in plans, and loading a user's own.

``file_plan`` serves files under one root directory; ``load_plan`` imports a
plan named ``package.module:attribute``.
"""

from echo_service.plans._files import (
    DEFAULT_MAX_READ_BYTES,
    DEFAULT_MAX_WRITE_BYTES,
    file_plan,
)
from echo_service.plans._loading import PlanLoadError, load_plan
from echo_service.plans._sandbox import (
    FileTooLargeError,
    InvalidPathError,
    NotRegularFileError,
    PathEscapeError,
    ReservedPathError,
    Sandbox,
    SandboxError,
)

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "DEFAULT_MAX_WRITE_BYTES",
    "FileTooLargeError",
    "InvalidPathError",
    "NotRegularFileError",
    "PathEscapeError",
    "PlanLoadError",
    "ReservedPathError",
    "Sandbox",
    "SandboxError",
    "file_plan",
    "load_plan",
]
