"""Running one attempt of one action: hooks, handler, timeout, retry decision.

The processor never touches the store directly: it reports through a
``Journal`` (the engine), which owns the in-flight table and the store. It
never sleeps either: a retry goes back to the journal with a due time.

Coroutine handlers run on an event loop owned by the worker thread that runs
them (one loop per worker, made on first use and closed with the engine).
A coroutine therefore occupies its worker while it awaits, like a plain
function does; what it gains is clean cancellation: at its timeout, deadline
or cancel the task is cancelled at its next ``await``.

A plain function is told to stop only through ``ctx.cancellation``. When its
timer fires, the attempt is recorded as timed out however it ends, but a
function that ignores the token keeps its worker thread busy until it
returns. The executor copes by stealing: the busy worker's queued tasks are
taken by the others, so one stuck handler costs one thread, not a queue.

Everything an attempt journals must fit the messages that carry it later:
a result larger than ``max_result_bytes`` fails the attempt (kind
INVALID_RESULT, type ``ResultTooLarge``), and error and progress texts are
cut to ``_MAX_TEXT`` characters. A result that does not fit its output type,
or is too large, is a property of the handler, not of the moment, so it is
never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from echo_service.engine._clock import Clock, TimerHandle, Timers
from echo_service.engine._codec import (
    StoredAction,
    decode_action,
    encode_event,
    encode_outcome,
)
from echo_service.engine._context import (
    CancelCause,
    CancellationToken,
    ContextCache,
    ExecutionContext,
    NonRetryable,
    Retry,
)
from echo_service.engine._model import (
    ActionErrorInfo,
    ActionSpec,
    ErrorKind,
    Progress,
    RetryPolicy,
)
from echo_service.engine._plan import Hook, Plan
from echo_service.engine._retry import next_retry
from echo_service.engine._values import check_value, size_over
from echo_service.store import ActionRecord, State, Transition

__all__ = ["ActionProcessor", "Journal", "Run"]

logger = logging.getLogger(__name__)

_MAX_TEXT = 16 * 1024
"""Characters kept of an error's message and details and of a progress
note (at most 64 KiB each as UTF-8): a handler's text must not make its
event too large to send."""


@dataclass(eq=False, slots=True)
class Run:
    """One claimed action on its way through the executor.

    ``started`` and removal from the in-flight table are guarded by the
    engine's lock; ``token`` is safe from any thread.
    """

    record: ActionRecord
    stored: StoredAction | None = None
    """The payload decoded, when whoever claimed it had it at hand."""
    token: CancellationToken = field(default_factory=CancellationToken)
    started: bool = False
    began_at: float = 0.0

    @property
    def id(self) -> str:
        return self.record.id


class Journal(Protocol):
    """What the processor needs from the engine."""

    def begin(self, run: Run) -> bool:
        """Mark ``run`` started; False when it must not run (cancelled, stopping)."""
        ...

    def record(
        self, transitions: Sequence[Transition], *, linger: bool = False
    ) -> None:
        """Journal transitions of a claimed run; ``linger``: the write may
        wait a little to share a commit with the next one."""
        ...

    def finish(self, run: Run, transition: Transition) -> None:
        """Journal the attempt's last transition and drop ``run`` from flight."""
        ...

    def assign_child(
        self, spec: ActionSpec, parent_id: str, *, key: str | None
    ) -> str: ...


class Metrics(Protocol):
    def attempt_done(self, seconds: float) -> None: ...
    def succeeded(self) -> None: ...
    def failed(self) -> None: ...
    def retried(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Failure:
    error: ActionErrorInfo
    exception: BaseException | None = None
    retry_delay: timedelta | None = None


class ActionProcessor:
    """Runs attempts. One instance serves every worker; per-attempt state lives
    on the stack, so concurrent attempts of different actions share nothing
    but the plan (immutable), the cache (locked) and ``_spans`` (locked)."""

    def __init__(
        self,
        *,
        plan: Plan,
        journal: Journal,
        clock: Clock,
        timers: Timers,
        default_retry: RetryPolicy,
        config: Mapping[str, object],
        cache: ContextCache,
        tracer: trace.Tracer,
        metrics: Metrics,
        max_result_bytes: int | None = None,
    ) -> None:
        """``max_result_bytes``: the largest result (as ``encoded_size``
        counts it) an attempt may return; None: no limit."""
        self._plan = plan
        self._journal = journal
        self._clock = clock
        self._timers = timers
        self._default_retry = default_retry
        self._config = config
        self._cache = cache
        self._tracer = tracer
        self._metrics = metrics
        self._max_result = max_result_bytes
        # Action spans stay open from an action's first attempt to its end,
        # across retries; _spans_lock guards the table.
        self._spans: dict[str, Span] = {}
        self._spans_lock = threading.Lock()
        self._loops = threading.local()
        self._all_loops: list[asyncio.AbstractEventLoop] = []
        self._loops_lock = threading.Lock()

    # -- the attempt ----------------------------------------------------

    def process(self, run: Run) -> None:
        """The executor task for one claimed action."""
        if not self._journal.begin(run):
            return
        record = run.record
        stored = run.stored if run.stored is not None else decode_action(record.payload)
        spec = stored.spec
        options = spec.options
        attempt = record.attempt + 1
        now = self._clock.now()
        run.began_at = time.perf_counter()
        deadline = None if options.deadline is None else options.deadline.timestamp()
        action_span = self._action_span(record, stored)
        trace_id = stored.trace_id

        if deadline is not None and now >= deadline:
            error = ActionErrorInfo(
                "DeadlineExceeded", "the deadline passed", ErrorKind.DEADLINE
            )
            self._final(
                run,
                stored=stored,
                attempt=attempt - 1,
                failure=_Failure(error),
                span=action_span,
                ctx=None,
                hooks=(),
            )
            return
        entry = self._plan.entry(record.name)
        if entry is None:
            error = ActionErrorInfo(
                "UnknownAction",
                f"the plan has no action {record.name!r}",
                ErrorKind.HANDLER,
                non_retryable=True,
            )
            self._final(
                run,
                stored=stored,
                attempt=attempt - 1,
                failure=_Failure(error),
                span=action_span,
                ctx=None,
                hooks=(),
            )
            return

        # RUNNING lingers for the outcome: a quick attempt journals both in
        # one commit. Anything journaled meanwhile (progress, children)
        # commits it first, so the order of events holds.
        self._journal.record(
            [
                Transition(
                    record.id,
                    State.RUNNING,
                    attempt=attempt,
                    event_payload=encode_event(trace_id=trace_id),
                )
            ],
            linger=True,
        )
        token = run.token
        ctx = ExecutionContext(
            action_id=record.id,
            name=record.name,
            attempt=attempt,
            metadata=spec.metadata,
            config=self._config,
            cache=self._cache,
            cancellation=token,
            trace_id=trace_id,
            progress=lambda fraction, message: self._progress(
                run, attempt, trace_id, fraction, message
            ),
            assign=lambda child: self._journal.assign_child(child, record.id, key=None),
        )
        hooks = self._hooks(spec.metadata)
        attempt_span = self._tracer.start_span(
            f"echo.attempt {record.name}",
            context=trace.set_span_in_context(action_span),
            attributes={
                "echo.action.id": record.id,
                "echo.action.name": record.name,
                "echo.attempt": attempt,
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        timer = self._arm_timer(token, now, options.attempt_timeout, deadline)
        try:
            with trace.use_span(attempt_span, end_on_exit=False):
                result, failure, hooks_ran = self._attempt(
                    handler=entry.handler,
                    ctx=ctx,
                    args=spec.args,
                    hooks=hooks,
                    token=token,
                    output=entry.signature.output,
                )
        finally:
            if timer is not None:
                timer.cancel()
        self._metrics.attempt_done(time.perf_counter() - run.began_at)

        failure = self._token_verdict(token, failure)
        if hooks_ran:
            for hook in reversed(hooks):
                self._quietly(
                    hook.after_attempt,
                    ctx,
                    result,
                    None if failure is None else failure.error,
                )
        if failure is None:
            attempt_span.end()
            self._succeed(run, stored, attempt, result, action_span)
            return
        _end_with_error(attempt_span, failure)
        if token.cause is CancelCause.SHUTDOWN:
            self._give_back(run, attempt, trace_id, failure, action_span)
            return
        if token.cause is CancelCause.LOST:
            # Another runner holds the action now and tells its story; this
            # attempt's give-back is fenced off by the store and only drops
            # the run from flight here.
            action_span.add_event("echo.claim_lost", {"echo.attempt": attempt})
            self._close_span(record.id, action_span, failure)
            self._give_back(run, attempt, trace_id, failure, None)
            return
        self._retry_or_fail(
            run,
            stored=stored,
            attempt=attempt,
            failure=failure,
            span=action_span,
            ctx=ctx,
            hooks=hooks,
            deadline=deadline,
        )

    def _retry_or_fail(
        self,
        run: Run,
        *,
        stored: StoredAction,
        attempt: int,
        failure: _Failure,
        span: Span,
        ctx: ExecutionContext,
        hooks: Sequence[Hook],
        deadline: float | None,
    ) -> None:
        """Put a failed attempt back in the journal with a due time, or end it."""
        record = run.record
        trace_id = stored.trace_id
        action_span = span
        options = stored.spec.options
        policy = options.retry_policy or self._default_retry
        delay = None
        if failure.error.kind in (ErrorKind.HANDLER, ErrorKind.TIMEOUT, ErrorKind.HOOK):
            delay = next_retry(policy, attempt, failure.error, failure.retry_delay)
        due = None if delay is None else self._clock.now() + delay.total_seconds()
        if due is not None and deadline is not None and due >= deadline:
            delay = None
        if delay is None or due is None:
            self._final(
                run,
                stored=stored,
                attempt=attempt,
                failure=failure,
                span=action_span,
                ctx=ctx,
                hooks=hooks,
            )
            return
        for hook in hooks:
            self._quietly(hook.on_retry, ctx, failure.error, delay.total_seconds())
        action_span.add_event(
            "echo.retry",
            {
                "echo.attempt": attempt,
                "echo.retry.delay_s": delay.total_seconds(),
                "echo.error.type": failure.error.type,
            },
        )
        self._metrics.retried()
        ctx.logger.info(
            "attempt %d of %s failed (%s: %s); retrying in %.3fs",
            attempt,
            record.name,
            failure.error.type,
            failure.error.message,
            delay.total_seconds(),
        )
        self._journal.finish(
            run,
            Transition(
                record.id,
                State.RETRYING,
                attempt=attempt,
                due_at=due,
                outcome=encode_outcome(None, failure.error),
                event_payload=encode_event(
                    trace_id=trace_id, error=failure.error, retry_delay=delay
                ),
                release=True,
            ),
        )

    def _attempt(
        self,
        *,
        handler: Callable[..., Any],
        ctx: ExecutionContext,
        args: tuple[object, ...],
        hooks: Sequence[Hook],
        token: CancellationToken,
        output: Any,
    ) -> tuple[object, _Failure | None, bool]:
        """Before hooks, then the handler; returns (result, failure, hooks ran)."""
        for hook in hooks:
            try:
                hook.before_attempt(ctx)
            except Exception as exc:
                return None, _failure(exc, ErrorKind.HOOK), False
        try:
            result = handler(ctx, *args)
            if asyncio.iscoroutine(result):
                result = self._run_coroutine(result, token)
        except Retry as exc:
            failure = _failure(exc, ErrorKind.HANDLER)
            return None, _Failure(failure.error, exc, exc.next_delay), True
        except NonRetryable as exc:
            failure = _failure(exc, ErrorKind.HANDLER)
            error = failure.error
            return (
                None,
                _Failure(
                    ActionErrorInfo(
                        error.type, error.message, error.kind, True, error.details
                    ),
                    exc,
                ),
                True,
            )
        except asyncio.CancelledError as exc:
            # Ours (a fired token) or the handler's own: the token decides.
            return None, _failure(exc, ErrorKind.HANDLER), True
        except Exception as exc:
            return None, _failure(exc, ErrorKind.HANDLER), True
        checked, problem = check_value(output, result)
        if problem is not None:
            error = ActionErrorInfo(
                "InvalidResult", problem, ErrorKind.INVALID_RESULT, non_retryable=True
            )
            return result, _Failure(error), True
        limit = self._max_result
        if limit is not None:
            size = size_over(output, checked, limit)
            if size is not None:
                error = ActionErrorInfo(
                    "ResultTooLarge",
                    f"the result takes {size} bytes, more than the limit of "
                    f"{limit} bytes",
                    ErrorKind.INVALID_RESULT,
                    non_retryable=True,
                )
                return checked, _Failure(error), True
        return checked, None, True

    def _token_verdict(
        self, token: CancellationToken, failure: _Failure | None
    ) -> _Failure | None:
        """A fired token decides the outcome, whatever the handler did."""
        cause = token.cause
        if cause is None:
            return failure
        exc = None if failure is None else failure.exception
        if cause is CancelCause.TIMEOUT:
            error = ActionErrorInfo(
                "Timeout", "the attempt timed out", ErrorKind.TIMEOUT
            )
        elif cause is CancelCause.DEADLINE:
            error = ActionErrorInfo(
                "DeadlineExceeded", "the deadline passed", ErrorKind.DEADLINE
            )
        elif cause is CancelCause.CANCEL:
            error = ActionErrorInfo("Cancelled", token.reason, ErrorKind.CANCELLED)
        elif cause is CancelCause.LOST:
            error = ActionErrorInfo("ClaimLost", token.reason, ErrorKind.LOST)
        else:
            error = ActionErrorInfo(
                "Interrupted", "the attempt was cut short by a stop", ErrorKind.LOST
            )
        return _Failure(error, exc)

    # -- endings --------------------------------------------------------

    def _succeed(
        self, run: Run, stored: StoredAction, attempt: int, result: object, span: Span
    ) -> None:
        record = run.record
        next_spec = stored.spec.options.next_action
        if next_spec is not None:
            try:
                self._journal.assign_child(
                    next_spec,
                    record.id,
                    key=next_spec.options.idempotency_key or f"{record.id}:next",
                )
            except Exception:
                logger.exception("could not assign the next action of %s", record.id)
        self._metrics.succeeded()
        self._close_span(record.id, span, None)
        self._journal.finish(
            run,
            Transition(
                record.id,
                State.SUCCEEDED,
                attempt=attempt,
                outcome=encode_outcome(result, None),
                event_payload=encode_event(
                    trace_id=stored.trace_id, result=result, has_result=True
                ),
            ),
        )

    def _final(
        self,
        run: Run,
        *,
        stored: StoredAction,
        attempt: int,
        failure: _Failure,
        span: Span,
        ctx: ExecutionContext | None,
        hooks: Sequence[Hook],
    ) -> None:
        record = run.record
        if ctx is not None:
            for hook in hooks:
                self._quietly(hook.on_failure, ctx, failure.error)
        cancelled = failure.error.kind is ErrorKind.CANCELLED
        if cancelled:
            logger.debug("action %s cancelled", record.id)
        else:
            self._metrics.failed()
            logger.warning(
                "action %s (%s) failed after %d attempts: %s: %s",
                record.id,
                record.name,
                attempt,
                failure.error.type,
                failure.error.message,
                extra={
                    "action_id": record.id,
                    "attempt": attempt,
                    "trace_id": stored.trace_id,
                },
            )
        self._close_span(record.id, span, failure)
        self._journal.finish(
            run,
            Transition(
                record.id,
                State.CANCELLED if cancelled else State.FAILED,
                attempt=attempt,
                outcome=encode_outcome(None, failure.error),
                event_payload=encode_event(
                    trace_id=stored.trace_id, error=failure.error
                ),
            ),
        )

    def _give_back(
        self,
        run: Run,
        attempt: int,
        trace_id: str,
        failure: _Failure,
        span: Span | None,
    ) -> None:
        """A stop cut the attempt short: back to the journal, due now."""
        if span is not None:
            span.add_event("echo.interrupted", {"echo.attempt": attempt})
        self._journal.finish(
            run,
            Transition(
                run.id,
                State.RETRYING,
                attempt=attempt,
                due_at=self._clock.now(),
                outcome=encode_outcome(None, failure.error),
                event_payload=encode_event(
                    trace_id=trace_id, error=failure.error, retry_delay=timedelta(0)
                ),
                release=True,
            ),
        )

    def cancel_waiting(self, record: ActionRecord, reason: str) -> Transition:
        """The transition that cancels an action nobody is running."""
        stored = decode_action(record.payload)
        error = ActionErrorInfo("Cancelled", reason or "cancelled", ErrorKind.CANCELLED)
        with self._spans_lock:
            span = self._spans.pop(record.id, None)
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, "cancelled"))
            span.end()
        return Transition(
            record.id,
            State.CANCELLED,
            outcome=encode_outcome(None, error),
            event_payload=encode_event(trace_id=stored.trace_id, error=error),
        )

    # -- helpers --------------------------------------------------------

    def _progress(
        self,
        run: Run,
        attempt: int,
        trace_id: str,
        fraction: float | None,
        message: str,
    ) -> None:
        self._journal.record(
            [
                Transition(
                    run.id,
                    State.PROGRESS,
                    event_payload=encode_event(
                        trace_id=trace_id,
                        progress=Progress(fraction, _clip(message)),
                    ),
                )
            ]
        )

    def _hooks(self, metadata: Mapping[str, str]) -> list[Hook]:
        hooks = list(self._plan.global_hooks)
        for name in hook_names(metadata):
            hook = self._plan.hook(name)
            if hook is not None:
                hooks.append(hook)
        return hooks

    def _arm_timer(
        self,
        token: CancellationToken,
        now: float,
        attempt_timeout: timedelta | None,
        deadline: float | None,
    ) -> TimerHandle | None:
        when, cause = None, CancelCause.TIMEOUT
        if attempt_timeout is not None:
            when = now + attempt_timeout.total_seconds()
        if deadline is not None and (when is None or deadline < when):
            when, cause = deadline, CancelCause.DEADLINE
        if when is None:
            return None
        return self._timers.call_at(when, lambda: token.cancel(cause))

    def _run_coroutine(self, coro: Any, token: CancellationToken) -> object:
        """Run a coroutine handler to its end on this worker's own loop.

        Known shortcoming: the worker is held while the coroutine awaits, so
        coroutine handlers get no more concurrency than blocking ones; one
        loop shared by all workers, with the attempt finished from a done
        callback, would free it.
        """
        loop: asyncio.AbstractEventLoop | None = getattr(self._loops, "loop", None)
        if loop is None:
            loop = asyncio.new_event_loop()
            self._loops.loop = loop
            with self._loops_lock:
                self._all_loops.append(loop)
        task = loop.create_task(coro)
        owner = loop

        def stop() -> None:
            # The loop may be closed by now if the token fires very late.
            with contextlib.suppress(RuntimeError):
                owner.call_soon_threadsafe(task.cancel)

        token.on_cancel(stop)
        return loop.run_until_complete(task)

    def _action_span(self, record: ActionRecord, stored: StoredAction) -> Span:
        with self._spans_lock:
            span = self._spans.get(record.id)
            if span is None:
                span = self._tracer.start_span(
                    f"echo.action {record.name}",
                    context=extract(dict(stored.span_parent)),
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "echo.action.id": record.id,
                        "echo.action.name": record.name,
                    },
                    record_exception=False,
                    set_status_on_exception=False,
                )
                self._spans[record.id] = span
        return span

    def _close_span(self, action_id: str, span: Span, failure: _Failure | None) -> None:
        with self._spans_lock:
            self._spans.pop(action_id, None)
        if failure is not None:
            # The exception itself was recorded once, on the attempt's span.
            span.set_status(
                Status(
                    StatusCode.ERROR, f"{failure.error.type}: {failure.error.message}"
                )
            )
        span.end()

    @staticmethod
    def _quietly(fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("a hook raised; the outcome stands")

    def close(self) -> None:
        """End open action spans and close the workers' event loops."""
        with self._spans_lock:
            spans, self._spans = list(self._spans.values()), {}
        for span in spans:
            span.add_event("echo.engine_stopped")
            span.end()
        with self._loops_lock:
            loops, self._all_loops = self._all_loops, []
        for loop in loops:
            if not loop.is_running():
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()


def hook_names(metadata: Mapping[str, str]) -> list[str]:
    """The hook names listed in an action's ``hooks`` metadata, in order."""
    raw = metadata.get("hooks", "")
    return [n.strip() for n in raw.split(",") if n.strip()]


def _failure(exc: BaseException, kind: ErrorKind) -> _Failure:
    """The error as the handler raised it; a signal raised ``from`` an error
    reports that error's type and message."""
    shown: BaseException = exc
    if isinstance(exc, Retry | NonRetryable) and exc.__cause__ is not None:
        shown = exc.__cause__
    details = "".join(traceback.format_exception_only(type(shown), shown)).strip()
    return _Failure(
        ActionErrorInfo(
            type(shown).__name__, _clip(str(shown)), kind, details=_clip(details)
        ),
        exc,
    )


def _clip(text: str) -> str:
    """``text`` cut to ``_MAX_TEXT`` characters, saying how much was left out."""
    if len(text) <= _MAX_TEXT:
        return text
    return f"{text[:_MAX_TEXT]}... ({len(text) - _MAX_TEXT} more characters)"


def _end_with_error(span: Span, failure: _Failure) -> None:
    if failure.exception is not None:
        span.record_exception(failure.exception)
    span.set_status(
        Status(StatusCode.ERROR, f"{failure.error.type}: {failure.error.message}")
    )
    span.end()
