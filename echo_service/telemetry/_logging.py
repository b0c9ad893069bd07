"""Log lines for people (text) or for collectors (one JSON object per line).

Echo's modules pass context in ``extra``: ``action_id``, ``attempt`` and
``trace_id``. Both formats show them; when a record carries no ``trace_id``
the current span's is used, so a line logged while serving an RPC joins the
caller's trace in any log backend. Logs go to stderr: stdout belongs to the
CLI's own output.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "TextFormatter", "configure_logging"]

#: The ``extra`` keys Echo's modules use for context, in display order.
CONTEXT_FIELDS: tuple[str, ...] = ("action_id", "attempt", "trace_id", "span_id")

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime", "taskName"}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context fields, with the current span's ids as fallback."""
    found = {
        key: getattr(record, key)
        for key in CONTEXT_FIELDS
        if getattr(record, key, None) not in (None, "")
    }
    if "trace_id" not in found:
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            found["trace_id"] = trace.format_trace_id(span.trace_id)
            found.setdefault("span_id", trace.format_span_id(span.span_id))
    return found


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, extras.

    ``time`` is UTC in RFC 3339 with milliseconds. Extra fields that are not
    JSON values are written as their ``str()``; an exception comes as its
    formatted traceback in ``exception``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = _jsonable(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message [action_id=... attempt=... trace_id=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        context.pop("span_id", None)
        if not context:
            return line
        fields = " ".join(f"{key}={value}" for key, value in context.items())
        head, newline, rest = line.partition("\n")  # keep tracebacks below
        return f"{head} [{fields}]{newline}{rest}"


class _EchoHandler(logging.StreamHandler[TextIO]):
    """Marks the handler ``configure_logging`` installed, to replace it later."""


def configure_logging(
    level: int | str = logging.INFO, *, json: bool = False, stream: TextIO | None = None
) -> None:
    """Send every log record at ``level`` and above to ``stream`` (stderr).

    Calling it again replaces the handler it installed before, so the CLI
    and tests may call it more than once; handlers installed by others stay.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _EchoHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _EchoHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
