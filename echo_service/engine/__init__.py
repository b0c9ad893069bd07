"""Echo's core: plans, the work-stealing executor, and the engine that runs
actions from the journal. It knows nothing of gRPC or protobuf."""

from echo_service.engine._clock import Clock, ManualClock, SystemClock
from echo_service.engine._context import (
    CancellationToken,
    ContextCache,
    ExecutionContext,
    NonRetryable,
    Retry,
)
from echo_service.engine._engine import Engine
from echo_service.engine._executor import WorkerStats, WorkStealingExecutor
from echo_service.engine._model import (
    ActionErrorInfo,
    ActionEvent,
    ActionOptions,
    ActionSpec,
    ActionView,
    Assigned,
    DrainReport,
    EngineStats,
    ErrorKind,
    Progress,
    RetryPolicy,
    State,
)
from echo_service.engine._plan import Handler, Hook, Hooks, Plan, PlanBuilder, PlanError
from echo_service.engine._subscription import Subscription
from echo_service.engine._values import (
    ActionSignature,
    PackedMessage,
    Parameter,
    TypeRef,
    ValueType,
    check_args,
)

__all__ = [
    "ActionErrorInfo",
    "ActionEvent",
    "ActionOptions",
    "ActionSignature",
    "ActionSpec",
    "ActionView",
    "Assigned",
    "CancellationToken",
    "Clock",
    "ContextCache",
    "DrainReport",
    "Engine",
    "EngineStats",
    "ErrorKind",
    "ExecutionContext",
    "Handler",
    "Hook",
    "Hooks",
    "ManualClock",
    "NonRetryable",
    "PackedMessage",
    "Parameter",
    "Plan",
    "PlanBuilder",
    "PlanError",
    "Progress",
    "Retry",
    "RetryPolicy",
    "State",
    "Subscription",
    "SystemClock",
    "TypeRef",
    "ValueType",
    "WorkStealingExecutor",
    "WorkerStats",
    "check_args",
]
