"""The engine's public names are the ones the internal API agreement lists."""

from __future__ import annotations

import sys
from pathlib import Path

from echo_service import engine

AGREED = {
    "ValueType",
    "TypeRef",
    "PackedMessage",
    "Parameter",
    "ActionSignature",
    "check_args",
    "PlanBuilder",
    "Plan",
    "PlanError",
    "Hook",
    "Hooks",
    "RetryPolicy",
    "ActionOptions",
    "ActionSpec",
    "State",
    "ActionErrorInfo",
    "ErrorKind",
    "ActionView",
    "Progress",
    "ActionEvent",
    "Assigned",
    "Engine",
    "Subscription",
    "ExecutionContext",
    "CancellationToken",
    "Retry",
    "NonRetryable",
    "Clock",
    "SystemClock",
    "DrainReport",
    "EngineStats",
}


def test_every_agreed_name_is_exported() -> None:
    assert set(engine.__all__) >= AGREED
    assert all(hasattr(engine, name) for name in engine.__all__)


def test_the_engine_never_imports_grpc_or_protobuf() -> None:
    source_modules = [m for m in sys.modules if m.startswith("echo_service.engine")]
    for name in source_modules:
        module = sys.modules[name]
        text = Path(str(module.__file__)).read_text(encoding="utf-8")
        assert "import grpc" not in text and "google.protobuf" not in text
