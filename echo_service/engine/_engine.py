"""The engine: journal, feeder, executor, processor and subscriptions together.

Life of an action::

    assign -> ACCEPTED (SCHEDULED when due later)       journal, durable
    feeder claims it when due and there is room -> QUEUED    executor
    a worker runs an attempt -> RUNNING -> SUCCEEDED / FAILED / CANCELLED
                                       -> RETRYING (back to the journal, due later)

Memory stays bounded: waiting actions live in the journal; the feeder claims
at most ``_capacity`` (a few batches) into memory and sleeps until the next
due time, a wake-up (assign, cancel, retry, room) or a stop. Every state
change goes through the store and comes back, committed and numbered, through
the store's listener, which fans it out to subscriptions.

Locks, outermost first:

* ``_lock`` guards ``_inflight`` (claimed runs), ``_local_ids``, ``_running``
  and ``_state``. The feeder holds it across ``store.claim``; a worker holds
  it while it marks a run started and while it drops a run *and submits* its
  last transition; ``cancel`` holds it while it decides. So a cancel sees an
  action either in flight (and uses its token) or with its last write already
  queued (and a flush shows the truth), and a claim never races a cancel.
  The store's writer thread never takes it.
* ``_feeder_cond`` guards the feeder's wake flag; ``_subs_lock`` the
  subscription list; ``_waiting_lock`` the waiting count.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind, TracerProvider

from echo_service import errors
from echo_service.engine._clock import Clock, SystemClock, Timers
from echo_service.engine._codec import (
    StoredAction,
    decode_action,
    decode_event,
    decode_outcome,
    encode_action,
    encode_event,
)
from echo_service.engine._context import CancelCause, ContextCache
from echo_service.engine._executor import WorkStealingExecutor
from echo_service.engine._model import (
    ActionEvent,
    ActionSpec,
    ActionView,
    Assigned,
    DrainReport,
    EngineStats,
    RetryPolicy,
)
from echo_service.engine._plan import Plan
from echo_service.engine._processor import ActionProcessor, Run, hook_names
from echo_service.engine._retry import policy_problems
from echo_service.engine._subscription import Subscription
from echo_service.engine._telemetry import EngineMetrics
from echo_service.engine._values import ActionSignature, check_args
from echo_service.errors import FieldViolation
from echo_service.store import (
    ActionRecord,
    EventRecord,
    NewAction,
    State,
    Store,
    Transition,
)

__all__ = ["Engine"]

logger = logging.getLogger(__name__)

_RETRY_HINT = timedelta(seconds=1)
_SETTLE = timedelta(seconds=5)
"""How long drain waits, after cancelling through tokens, for attempts to
come back before it counts them abandoned."""


class _Phase(Enum):
    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    CLOSED = "closed"


class Engine:
    """Echo's runtime. See the module docstring for how the parts fit."""

    def __init__(
        self,
        plan: Plan,
        store: Store,
        *,
        workers: int = os.cpu_count() or 2,
        max_waiting: int = 1_000_000,
        config: Mapping[str, object] = MappingProxyType({}),
        clock: Clock | None = None,
        default_retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen value
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        batch: int | None = None,
    ) -> None:
        """
        Args:
            workers: executor threads.
            max_waiting: unfinished actions the journal may hold; past it
                ``assign`` raises ``QueueFull``.
            config: read-only settings handed to handlers as ``ctx.config``.
            clock: time source; tests inject a ``ManualClock``.
            default_retry: the policy of actions that set none.
            batch: actions claimed per store round trip (default 8 per
                worker, at least 16); at most two batches are held in memory.
        """
        if problems := policy_problems(default_retry):
            raise ValueError(f"bad default retry policy: {problems}")
        self._plan = plan
        self._store = store
        self._workers = workers
        self._max_waiting = max_waiting
        self._clock: Clock = clock or SystemClock()
        self._owner = f"echo-{uuid.uuid4().hex[:12]}"
        self._tracer = trace.get_tracer(
            "echo_service.engine", tracer_provider=tracer_provider
        )
        self._batch = batch or max(16, 8 * workers)
        self._capacity = 2 * self._batch
        self._low_water = self._batch

        self._lock = threading.Lock()
        self._flight_cond = threading.Condition(self._lock)
        self._inflight: dict[str, Run] = {}
        self._local_ids: set[str] = set()
        self._running = 0
        self._phase = _Phase.NEW

        self._feeder_cond = threading.Condition()
        self._feeder_wake = False
        self._feeder_stop = False
        self._feeder_starved = False
        self._feeder: threading.Thread | None = None

        self._subs_lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()  # copy-on-write
        self._waiting_lock = threading.Lock()
        self._waiting = 0

        self._executor: WorkStealingExecutor | None = None
        self._timers = Timers(self._clock)
        self._metrics = EngineMetrics(
            meter_provider,
            waiting=lambda: self._waiting,
            in_flight=lambda: len(self._inflight),
            stolen=lambda: sum(w.stolen for w in self._worker_stats()),
        )
        self._processor = ActionProcessor(
            plan=plan,
            journal=self,
            clock=self._clock,
            timers=self._timers,
            default_retry=default_retry,
            config=MappingProxyType(dict(config)),
            cache=ContextCache(),
            tracer=self._tracer,
            metrics=self._metrics,
        )
        store.add_listener(self._on_events)

    # -- lifecycle ------------------------------------------------------

    def start(self) -> None:
        """Recover the journal, then start the workers and the feeder."""
        with self._lock:
            if self._phase is not _Phase.NEW:
                raise RuntimeError("an engine starts once")
        released = self._store.recover(self._owner)
        with self._waiting_lock:
            self._waiting = self._store.waiting()
        self._executor = WorkStealingExecutor(self._workers)
        with self._lock:
            self._phase = _Phase.RUNNING
        self._feeder = threading.Thread(
            target=self._feed, name="echo-feeder", daemon=True
        )
        self._feeder.start()
        logger.debug(
            "engine %s started: %d workers, %d waiting, %d recovered",
            self._owner,
            self._workers,
            self._waiting,
            released,
        )

    def drain(self, grace: timedelta) -> DrainReport:
        """Refuse new assigns, let running attempts finish within ``grace``,
        then cancel the rest through their tokens. Unfinished actions stay in
        the journal, claimable again."""
        with self._lock:
            if self._phase is not _Phase.RUNNING:
                self._phase = (
                    _Phase.CLOSED if self._phase is _Phase.NEW else self._phase
                )
                return DrainReport(0, 0, 0)
            self._phase = _Phase.DRAINING
            queued = [r for r in self._inflight.values() if not r.started]
            for run in queued:
                del self._inflight[run.id]
            running = len(self._inflight)
        if queued:
            self._store.release([r.id for r in queued])
        self._wake_feeder()
        until = self._clock.now() + grace.total_seconds()
        with self._flight_cond:
            while self._inflight and self._clock.now() < until:
                self._clock.wait(self._flight_cond, until)
            remaining = list(self._inflight.values())
        for run in remaining:
            run.token.cancel(CancelCause.SHUTDOWN, "the engine is stopping")
        with self._flight_cond:
            self._flight_cond.wait_for(
                lambda: not self._inflight, _SETTLE.total_seconds()
            )
            abandoned = len(self._inflight)
        report = DrainReport(running - len(remaining), len(remaining), abandoned)
        logger.debug("engine %s drained: %s", self._owner, report)
        return report

    def close(self) -> None:
        """Stop every thread and flush the store; idempotent. The store itself
        stays open: whoever opened it closes it."""
        with self._lock:
            phase = self._phase
        if phase is _Phase.CLOSED:
            return
        if phase is _Phase.RUNNING:
            self.drain(timedelta(0))
        with self._lock:
            self._phase = _Phase.CLOSED
        with self._feeder_cond:
            self._feeder_stop = True
            self._feeder_cond.notify_all()
        if self._feeder is not None:
            self._feeder.join()
        if self._executor is not None and not self._executor.shutdown(timeout=_SETTLE):
            logger.warning("some handlers ignored their cancellation and still run")
        self._timers.close()
        self._processor.close()
        try:
            self._store.flush()
        except errors.EchoError:
            logger.exception("the journal could not be flushed on close")
        with self._subs_lock:
            subs, self._subs = self._subs, ()
        for sub in subs:
            sub.engine_closed()

    def healthy(self) -> bool:
        executor = self._executor
        feeder = self._feeder
        return (
            self._phase is _Phase.RUNNING
            and executor is not None
            and executor.alive()
            and feeder is not None
            and feeder.is_alive()
            and self._store.healthy()
        )

    @property
    def stats(self) -> EngineStats:
        return EngineStats(
            waiting=self._waiting,
            running=self._running,
            in_flight=len(self._inflight),
            workers=self._worker_stats(),
        )

    @property
    def signatures(self) -> tuple[ActionSignature, ...]:
        return self._plan.signatures

    def _worker_stats(self) -> tuple[Any, ...]:
        return () if self._executor is None else self._executor.stats()

    # -- assigning ------------------------------------------------------

    def assign(self, specs: Sequence[ActionSpec]) -> list[Assigned]:
        """Validate every spec, journal all in one transaction, durable on
        return. Field paths in errors are ``actions[i]....``."""
        return self._assign(
            specs, prefixes=[f"actions[{i}]" for i in range(len(specs))]
        )

    def _assign(
        self,
        specs: Sequence[ActionSpec],
        *,
        prefixes: Sequence[str],
        parent_id: str | None = None,
        keys: Sequence[str | None] | None = None,
        local: bool = False,
    ) -> list[Assigned]:
        if self._phase in (_Phase.DRAINING, _Phase.CLOSED):
            raise errors.Unavailable(
                "the engine is shutting down", retry_after=_RETRY_HINT
            )
        checked: list[ActionSpec] = []
        violations: list[FieldViolation] = []
        for spec, prefix in zip(specs, prefixes, strict=True):
            good, bad = self._validate(spec, prefix)
            checked.append(good)
            violations.extend(bad)
        if violations:
            raise errors.InvalidArgument("invalid actions", violations)
        with self._waiting_lock:
            if self._waiting + len(checked) > self._max_waiting:
                raise errors.QueueFull(
                    f"{self._waiting} actions wait already", retry_after=_RETRY_HINT
                )
        now = self._clock.now()
        news = [
            self._prepare(spec, now, parent_id, None if keys is None else keys[i])
            for i, spec in enumerate(checked)
        ]
        run_here = (
            local
            and self._executor is not None
            and self._executor.current_worker() is not None
            and len(self._inflight) < 2 * self._capacity
        )
        local_ids = [n.id for n in news if n.due_at <= now] if run_here else []
        if local_ids:
            with self._lock:
                self._local_ids.update(local_ids)
        try:
            inserted = self._store.insert(news)
        finally:
            if local_ids:
                with self._lock:
                    self._local_ids.difference_update(local_ids)
        fresh = [i.record for i in inserted if not i.duplicate]
        with self._waiting_lock:
            self._waiting += len(fresh)
        self._metrics.assigned(len(fresh))
        later = [r for r in fresh if r.due_at > now]
        if later:
            self._record(
                [
                    Transition(
                        r.id,
                        State.SCHEDULED,
                        event_payload=encode_event(
                            trace_id=decode_action(r.payload).trace_id
                        ),
                    )
                    for r in later
                ]
            )
        if local_ids:
            self._run_locally([r for r in fresh if r.id in set(local_ids)])
        elif fresh:
            self._wake_feeder()
        return [Assigned(self._view(i.record), i.duplicate) for i in inserted]

    def _run_locally(self, records: Iterable[ActionRecord]) -> None:
        """Children due now go to this worker's deque, claimed by us in memory."""
        runs = []
        with self._lock:
            if self._phase is not _Phase.RUNNING:
                return
            for record in records:
                run = Run(record)
                self._inflight[record.id] = run
                runs.append(run)
        assert self._executor is not None
        for run in runs:
            self._executor.submit(
                functools.partial(self._processor.process, run), run.record.priority
            )

    def _prepare(
        self, spec: ActionSpec, now: float, parent_id: str | None, key: str | None
    ) -> NewAction:
        options = spec.options
        if options.delay is not None:
            due = now + options.delay.total_seconds()
        elif options.not_before is not None:
            due = options.not_before.timestamp()
        else:
            due = now
        action_id = uuid.uuid4().hex
        # The action's spans continue the W3C context it came with, or else
        # the caller's current one; the short assign span marks acceptance
        # and gives an action without any context a trace of its own.
        parent = extract(dict(spec.trace_context)) if spec.trace_context else None
        span = self._tracer.start_span(
            f"echo.assign {spec.name}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={"echo.action.id": action_id, "echo.action.name": spec.name},
        )
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(span))
        span.end()
        span_context = span.get_span_context()
        trace_id = (
            format(span_context.trace_id, "032x") if span_context.is_valid else ""
        )
        return NewAction(
            id=action_id,
            name=spec.name,
            payload=encode_action(StoredAction(spec, carrier, trace_id)),
            priority=options.priority,
            due_at=due,
            idempotency_key=key or options.idempotency_key or None,
            parent_id=parent_id,
            event_payload=encode_event(trace_id=trace_id),
        )

    def _validate(
        self, spec: ActionSpec, prefix: str
    ) -> tuple[ActionSpec, list[FieldViolation]]:
        out: list[FieldViolation] = []
        signature = self._plan.signature(spec.name)
        if signature is None:
            out.append(
                FieldViolation(f"{prefix}.name", f"no action named {spec.name!r}")
            )
        else:
            try:
                spec = dataclasses.replace(spec, args=check_args(signature, spec.args))
            except errors.InvalidArgument as exc:
                out.extend(
                    FieldViolation(f"{prefix}.{v.field}", v.description)
                    for v in exc.violations
                )
        o = spec.options
        opt = f"{prefix}.options"
        if o.delay is not None and o.not_before is not None:
            out.append(
                FieldViolation(f"{opt}.not_before", "set delay or not_before, not both")
            )
        if o.delay is not None and o.delay < timedelta(0):
            out.append(FieldViolation(f"{opt}.delay", "must not be negative"))
        for name in ("not_before", "deadline"):
            value = getattr(o, name)
            if value is not None and value.tzinfo is None:
                out.append(FieldViolation(f"{opt}.{name}", "must carry a time zone"))
        if o.attempt_timeout is not None and o.attempt_timeout <= timedelta(0):
            out.append(FieldViolation(f"{opt}.attempt_timeout", "must be positive"))
        if isinstance(o.priority, bool) or not isinstance(o.priority, int):
            out.append(FieldViolation(f"{opt}.priority", "must be an integer"))
        if o.retry_policy is not None:
            out.extend(
                FieldViolation(f"{opt}.retry_policy.{field}", why)
                for field, why in policy_problems(o.retry_policy)
            )
        unknown = [n for n in hook_names(spec.metadata) if self._plan.hook(n) is None]
        if unknown:
            out.append(
                FieldViolation(
                    f"{prefix}.metadata.hooks", f"unknown hooks: {', '.join(unknown)}"
                )
            )
        for field, mapping in (
            ("metadata", spec.metadata),
            ("trace_context", spec.trace_context),
        ):
            if not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                out.append(
                    FieldViolation(
                        f"{prefix}.{field}", "keys and values must be strings"
                    )
                )
        if o.next_action is not None:
            nxt, bad = self._validate(o.next_action, f"{opt}.next_action")
            out.extend(bad)
            spec = dataclasses.replace(
                spec, options=dataclasses.replace(o, next_action=nxt)
            )
        return spec, out

    # -- reading and cancelling -----------------------------------------

    def get(self, action_id: str) -> ActionView:
        record = self._store.get(action_id)
        if record is None:
            raise errors.NotFound(f"no action {action_id!r}")
        return self._view(record)

    def cancel(self, action_id: str, reason: str = "") -> ActionView:
        """Cancel a waiting action at once, a running one through its token
        (its CANCELLED event follows when the attempt returns)."""
        with self._lock:
            run = self._inflight.get(action_id)
            if run is not None and run.started:
                run.token.cancel(CancelCause.CANCEL, reason or "cancelled")
                return self.get(action_id)
            if run is not None:
                del self._inflight[action_id]
                run.token.cancel(CancelCause.CANCEL, reason or "cancelled")
                record: ActionRecord | None = run.record
            else:
                # Any last write of this action was queued under this lock;
                # the flush makes it visible.
                self._store.flush()
                record = self._store.get(action_id)
                if record is None:
                    raise errors.NotFound(f"no action {action_id!r}")
                if record.state.finished:
                    raise errors.FailedPrecondition(
                        f"action {action_id} already {record.state}"
                    )
            assert record is not None
            self._store.record(
                [self._processor.cancel_waiting(record, reason)]
            ).result()
        return self.get(action_id)

    def subscribe(
        self,
        *,
        after: int | None = None,
        action_ids: Iterable[str] = frozenset(),
        names: Iterable[str] = frozenset(),
        buffer: int = 1024,
    ) -> Subscription:
        """Events from now on (``after=None``), or every journaled event above
        ``after`` and then live ones, with no gap and no duplicate."""
        sub = Subscription(
            after=after,
            action_ids=frozenset(action_ids),
            names=frozenset(names),
            buffer=buffer,
            replay=self._replay,
            on_close=self._drop_sub,
        )
        with self._subs_lock:
            if self._phase is _Phase.CLOSED:
                raise errors.Unavailable("the engine is closed")
            self._subs = (*self._subs, sub)
        return sub

    def _drop_sub(self, sub: Subscription) -> None:
        with self._subs_lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def _replay(
        self, after: int, limit: int, ids: frozenset[str], names: frozenset[str]
    ) -> list[ActionEvent]:
        records = self._store.events_after(
            after, limit=limit, action_ids=ids, names=names
        )
        return [_event(r) for r in records]

    def _on_events(self, records: Sequence[EventRecord]) -> None:
        """Store listener, on the writer thread: count and fan out."""
        finished = sum(1 for r in records if r.state.finished)
        if finished:
            with self._waiting_lock:
                self._waiting -= finished
        subs = self._subs
        if not subs:
            return
        events = [_event(r) for r in records]
        for sub in subs:
            sub.offer(events)

    # -- the Journal the processor reports to ----------------------------

    def begin(self, run: Run) -> bool:
        with self._lock:
            if self._inflight.get(run.id) is not run or run.token.cancelled:
                return False
            run.started = True
            self._running += 1
            return True

    def record(self, transitions: Sequence[Transition]) -> None:
        self._record(transitions)

    def finish(self, run: Run, transition: Transition) -> None:
        with self._lock:
            if self._inflight.get(run.id) is run:
                del self._inflight[run.id]
            if run.started:
                run.started = False
                self._running -= 1
            future = self._store.record([transition])
            if not self._inflight:
                self._flight_cond.notify_all()
        future.add_done_callback(_log_failed_write)
        if transition.release or (
            self._feeder_starved and len(self._inflight) <= self._low_water
        ):
            self._wake_feeder()

    def assign_child(self, spec: ActionSpec, parent_id: str, *, key: str | None) -> str:
        [assigned] = self._assign(
            [spec], prefixes=["action"], parent_id=parent_id, keys=[key], local=True
        )
        return assigned.action.id

    def _record(self, transitions: Sequence[Transition]) -> None:
        self._store.record(transitions).add_done_callback(_log_failed_write)

    # -- the feeder -----------------------------------------------------

    def _wake_feeder(self) -> None:
        with self._feeder_cond:
            self._feeder_wake = True
            self._feeder_cond.notify_all()

    def _feed(self) -> None:
        """Claim due actions while there is room; sleep until due or woken."""
        while True:
            with self._feeder_cond:
                if self._feeder_stop:
                    return
                self._feeder_wake = False
            claimed_at = self._clock.now()
            try:
                claimed, limit = self._claim_batch(claimed_at)
                next_due = None if claimed == limit else self._store.next_due()
            except errors.EchoError:
                logger.exception("the feeder could not read the journal")
                claimed, limit = 0, 1
                next_due = claimed_at + _RETRY_HINT.total_seconds()
            if claimed and claimed == limit:
                continue
            with self._feeder_cond:
                if self._feeder_wake or self._feeder_stop:
                    continue
                room = self._capacity - len(self._inflight)
                if self._phase is not _Phase.RUNNING or room <= 0:
                    self._feeder_starved = room <= 0
                    self._clock.wait(self._feeder_cond, None)
                    self._feeder_starved = False
                elif next_due is None or next_due > self._clock.now():
                    self._clock.wait(self._feeder_cond, next_due)
                elif not claimed and next_due <= claimed_at:
                    # Due work that the claim did not return although it was
                    # due when we asked (someone else's lease, say): a short
                    # real-time pause keeps this from spinning.
                    self._feeder_cond.wait(0.05)
                # Otherwise it fell due after the claim looked: loop now.

    def _claim_batch(self, now: float) -> tuple[int, int]:
        room = self._capacity - len(self._inflight)
        if room <= 0:
            return 0, 0
        limit = min(self._batch, room)
        with self._lock:
            if self._phase is not _Phase.RUNNING:
                return 0, limit
            records = self._store.claim(now=now, limit=limit, owner=self._owner)
            runs = []
            for record in records:
                if record.id in self._inflight or record.id in self._local_ids:
                    continue  # a child already running on the worker that made it
                run = Run(record)
                self._inflight[record.id] = run
                runs.append(run)
        if runs:
            self._record(
                [
                    Transition(
                        r.id,
                        State.QUEUED,
                        event_payload=encode_event(
                            trace_id=decode_action(r.record.payload).trace_id
                        ),
                    )
                    for r in runs
                ]
            )
            assert self._executor is not None
            for run in runs:
                self._executor.submit(
                    functools.partial(self._processor.process, run), run.record.priority
                )
        return len(records), limit

    # -- views ----------------------------------------------------------

    def _view(self, record: ActionRecord) -> ActionView:
        stored = decode_action(record.payload)
        outcome = decode_outcome(record.outcome)
        spec = stored.spec
        return ActionView(
            id=record.id,
            name=record.name,
            args=spec.args,
            options=spec.options,
            metadata=spec.metadata,
            trace_context=spec.trace_context,
            state=record.state,
            attempt=record.attempt,
            result=outcome.result if record.state is State.SUCCEEDED else None,
            error=outcome.error,
            created_at=_time(record.created_at),
            updated_at=_time(record.updated_at),
            parent_id=record.parent_id,
        )


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _event(record: EventRecord) -> ActionEvent:
    body = decode_event(record.payload)
    return ActionEvent(
        sequence=record.sequence,
        action_id=record.action_id,
        name=record.name,
        state=record.state,
        attempt=record.attempt,
        at=_time(record.at),
        result=body.result,
        error=body.error,
        progress=body.progress,
        retry_delay=body.retry_delay,
        trace_id=body.trace_id,
    )


def _log_failed_write(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        logger.error("a journal write failed: %s", exc, exc_info=exc)
