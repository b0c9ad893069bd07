"""The engine: journal, feeder, executor, processor and subscriptions together.

Life of an action::

    assign -> ACCEPTED (SCHEDULED when due later)       journal, durable
    feeder claims it when due and there is room -> QUEUED    executor
    a worker runs an attempt -> RUNNING -> SUCCEEDED / FAILED / CANCELLED
                                       -> RETRYING (back to the journal, due later)

Memory stays bounded: waiting actions live in the journal; the feeder claims
at most ``_capacity`` (a few batches) into memory and sleeps until the next
due time, a wake-up (assign, cancel, retry, room, or in a shared journal any
replica's new work) or a stop. Every state change goes through the store and
comes back, committed and numbered, through the store's listener, which fans
it out to subscriptions.

Claims. Every run holds a claim in the journal under this engine's owner
name: the feeder's claims, and children that a handler assigns, which are
inserted already claimed and run on the handler's worker. Every transition
of a run names that owner, so the store refuses it once the claim is gone
(fencing). In a shared journal claims carry a lease that the ``echo-leases``
chore renews; a run whose claim was lost is told to stop through its token.

Retention. The ``echo-retention`` chore removes actions finished longer than
``retention`` ago, with their events, and idempotency keys older than
``key_retention``.

Delivery. The journal is exactly-once: an acknowledged assign is durable,
an action finishes once (fencing refuses a second account), a key repeated
within its retention returns the first action, and a subscriber resuming
from a sequence misses no event that is still retained. Handlers are run
at-least-once, and these are the ways one runs again:

* the process dies (or is killed) during an attempt, or after the handler
  returned but before its outcome was committed: the attempt runs again
  after the restart, with the next attempt number if its RUNNING event was
  committed, with the same one if not;
* in a shared journal, a replica pauses longer than its lease: another one
  takes the action over and runs it, while the paused handler may still
  finish its side effects (only its journal writes are refused);
* a handler that runs again assigns its children again: ``ctx.assign``
  without an idempotency key makes new children each time (the next action
  is keyed by its parent, so it is made once);
* a repeat of a key after ``key_retention`` (or after the first action was
  purged) is a new action.

Handlers with side effects outside the journal should make them idempotent,
keyed by the action id and, if need be, the attempt.

Locks, outermost first:

* ``_lock`` guards ``_inflight`` (claimed runs), ``_claiming``,
  ``_withdrawn``, ``_running`` and ``_phase``. A worker holds it while it
  marks a run started and while it drops a run *and submits* its last
  transition; ``cancel`` holds it while it decides. So a cancel sees an
  action either in flight (and uses its token) or with its last write already
  queued (and a flush shows the truth). The feeder does *not* hold it across
  ``store.claim`` (a commit wait): it sets ``_claiming`` before the claim,
  and a cancel that finishes a waiting action meanwhile notes its id in
  ``_withdrawn``; the feeder drops those from what it claimed, and gives
  everything back if a drain began meanwhile. The store's threads never take
  ``_lock``.
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
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from echo_service.engine._periodic import Periodic
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
    Inserted,
    NewAction,
    State,
    Store,
    Transition,
)

__all__ = ["Engine"]

logger = logging.getLogger(__name__)

_RETRY_HINT = timedelta(seconds=1)
_ZERO = timedelta(0)
_SETTLE = timedelta(seconds=5)
"""How long drain waits, after cancelling through tokens, for attempts to
come back before it counts them abandoned."""
_Context = tuple[tuple[str, str], ...]
"""A W3C trace carrier as a key."""
_LINGER = timedelta(milliseconds=10)
"""How long a RUNNING write waits for the attempt's outcome to share its
commit: a handler quicker than this costs one commit, not two, and a longer
one's RUNNING shows this much later."""
_CLAIMABLE = frozenset({State.ACCEPTED, State.SCHEDULED, State.RETRYING})
"""Events after which the journal may hold newly claimable work."""


class _Phase(Enum):
    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class PendingAssign:
    """Actions validated and prepared by ``Engine.begin_assign``, not yet
    journaled. Hand it to ``finish_assign`` (or ``submit_assign``) once."""

    news: list[NewAction]
    now: float
    local_ids: frozenset[str]
    """Children claimed at insert to run on the assigning worker."""
    specs: list[ActionSpec]
    """The checked specs, in the order of ``news``."""
    stored: list[StoredAction]
    """What each payload encodes, so a run never decodes it again."""
    reserved: int = 0
    """Places in flight held for the actions it may claim at insert."""

    @property
    def ids(self) -> list[str]:
        """The new actions' ids, in order (a repeated idempotency key later
        answers with the first action's id instead)."""
        return [n.id for n in self.news]


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
        retention: timedelta = timedelta(days=7),
        key_retention: timedelta = timedelta(hours=24),
        purge_interval: timedelta = timedelta(minutes=10),
        lease: timedelta = timedelta(seconds=30),
        max_result_bytes: int | None = None,
    ) -> None:
        """
        Args:
            workers: executor threads.
            max_waiting: unfinished actions the journal may hold; past it
                ``assign`` raises ``QueueFull``.
            config: read-only settings handed to handlers as ``ctx.config``.
            clock: time source; tests inject a ``ManualClock``.
            default_retry: the policy of actions that set none.
            batch: actions claimed per store round trip (default 64 per
                worker); at most two batches are held in memory. Each claim
                waits for the journal's writer behind what is queued there,
                so small batches starve the workers while assigns pour in.
            retention: how long a finished action and its events stay in the
                journal; a stream resuming from before that misses them.
            key_retention: how long an idempotency key is kept. The store
                recognises a key for its own ``key_retention``; give both the
                same value. A key goes with its action too, so it lasts at
                most ``retention`` past the action's end.
            purge_interval: how often the retention purge runs (and once at
                start).
            lease: in a shared journal, how long a claim holds unless
                renewed; the engine renews its claims every third of it, so a
                replica that stops renewing (died, or paused longer than
                this) gives its work to the others after at most ``lease``.
                Unused with a single-node journal, whose claims never expire.
            max_result_bytes: the largest result an attempt may return, in
                bytes as the contract encodes it; a larger one fails the
                action at once (kind INVALID_RESULT, type ResultTooLarge),
                so no event is journaled that could not be sent. None: no
                limit.

        Raises:
            ValueError: a retry policy, duration or interval that cannot work.
        """
        if problems := policy_problems(default_retry):
            raise ValueError(f"bad default retry policy: {problems}")
        for option, value in (
            ("retention", retention),
            ("key_retention", key_retention),
            ("purge_interval", purge_interval),
            ("lease", lease),
        ):
            if value <= timedelta(0):
                raise ValueError(f"{option} must be positive, not {value}")
        if max_result_bytes is not None and max_result_bytes < 0:
            raise ValueError(
                f"max_result_bytes must not be negative, not {max_result_bytes}"
            )
        self._plan = plan
        self._store = store
        self._workers = workers
        self._max_waiting = max_waiting
        self._clock: Clock = clock or SystemClock()
        self._owner = f"echo-{uuid.uuid4().hex[:12]}"
        self._tracer = trace.get_tracer(
            "echo_service.engine", tracer_provider=tracer_provider
        )
        self._batch = batch or 64 * workers
        self._capacity = 2 * self._batch
        self._low_water = self._batch

        self._shared = bool(store.shared)
        self._lease = lease
        self._claim_lease = lease if self._shared else None
        self._retention = retention
        self._key_retention = key_retention

        self._lock = threading.Lock()
        self._flight_cond = threading.Condition(self._lock)
        self._inflight: dict[str, Run] = {}
        self._claiming = False  # the feeder is inside store.claim
        self._withdrawn: set[str] = set()  # cancelled while it was
        self._running = 0
        self._phase = _Phase.NEW

        self._feeder_cond = threading.Condition()
        self._feeder_wake = False
        self._feeder_stop = False
        self._feeder_starved = False
        self._feeder: threading.Thread | None = None

        # Fresh actions claimed at insert: _reserved counts the places in
        # flight they hold until started (guarded by _reserve_lock, which is
        # never held around anything else); _handoff carries async inserts
        # from a store thread to the feeder (deque: atomic append/popleft).
        self._reserve_lock = threading.Lock()
        self._reserved = 0
        self._handoff: deque[tuple[PendingAssign, Future[list[Inserted]]]] = deque()

        self._subs_lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()  # copy-on-write
        self._waiting_lock = threading.Lock()
        self._waiting = 0

        self._executor: WorkStealingExecutor | None = None
        self._timers = Timers(self._clock)
        self._purger = Periodic(
            self._clock, self._purge, interval=purge_interval, name="echo-retention"
        )
        self._renewer = (
            Periodic(
                self._clock,
                self._renew,
                interval=lease / 3,
                first=lease / 3,
                name="echo-leases",
            )
            if self._shared
            else None
        )
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
            max_result_bytes=max_result_bytes,
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
        self._purger.start()
        if self._renewer is not None:
            self._renewer.start()
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
        try:
            self._take_handoffs()  # async inserts that committed meanwhile
        except errors.EchoError:
            logger.warning("claims of a late assign stay until the next start")
        self._purger.stop()
        if self._executor is not None and not self._executor.shutdown(timeout=_SETTLE):
            logger.warning("some handlers ignored their cancellation and still run")
        # Renewals go on while handlers may still run: a claim given up
        # early would let another replica start the same action.
        if self._renewer is not None:
            self._renewer.stop()
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
        return self.finish_assign(self.begin_assign(specs))

    def begin_assign(self, specs: Sequence[ActionSpec]) -> PendingAssign:
        """The first half of ``assign``: validate and prepare, no journal I/O.

        Cheap enough for an event loop (per action: checks, an id, a short
        span, an encode). The ids are final from here on, so a listener can
        widen its filter before the actions are journaled. Raises what
        ``assign`` raises for bad input, a full queue or a shutdown.
        """
        return self._begin(specs, prefixes=[f"actions[{i}]" for i in range(len(specs))])

    def finish_assign(self, pending: PendingAssign) -> list[Assigned]:
        """The second half: journal in one transaction; durable on return."""
        try:
            inserted = self._store.insert(pending.news)
        except BaseException:
            self._unreserve(pending)
            raise
        self._journaled(pending, inserted)
        return self.complete_assign(pending, inserted)

    def submit_assign(self, pending: PendingAssign) -> Future[list[Inserted]] | None:
        """Journal without waiting: a future that resolves (on a store thread)
        once durable; pass its result to ``complete_assign`` on the caller's
        side. What must follow the insert (counting, running the actions it
        claimed, waking the feeder) happens whether or not the caller is
        still there to call ``complete_assign``: the feeder does it. None
        when the store has no such call; then use ``finish_assign``."""
        submit = getattr(self._store, "insert_async", None)
        if submit is None:
            return None
        future: Future[list[Inserted]] = submit(pending.news)
        # The callback runs on a store thread, which must never take _lock:
        # the feeder takes it from here.
        future.add_done_callback(lambda f: self._hand_to_feeder(pending, f))
        return future

    def complete_assign(
        self, pending: PendingAssign, inserted: Sequence[Inserted]
    ) -> list[Assigned]:
        """The answers to an assign, from what the journal answered. No
        journal I/O and no lock: fine on an event loop."""
        return [
            Assigned(
                self._view(i.record)
                if i.duplicate
                else _fresh_view(i.record, pending.specs[n]),
                i.duplicate,
            )
            for n, i in enumerate(inserted)
        ]

    def _assign(
        self,
        specs: Sequence[ActionSpec],
        *,
        prefixes: Sequence[str],
        parent_id: str | None = None,
        keys: Sequence[str | None] | None = None,
        local: bool = False,
    ) -> list[Assigned]:
        pending = self._begin(
            specs, prefixes=prefixes, parent_id=parent_id, keys=keys, local=local
        )
        return self.finish_assign(pending)

    def _begin(
        self,
        specs: Sequence[ActionSpec],
        *,
        prefixes: Sequence[str],
        parent_id: str | None = None,
        keys: Sequence[str | None] | None = None,
        local: bool = False,
    ) -> PendingAssign:
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
        if len(checked) > self._max_waiting:
            # Never fits, however long the caller waits: not a full queue.
            why = (
                f"a batch of {len(checked)} actions is more than the queue holds "
                f"({self._max_waiting}); send at most {self._max_waiting} at once"
            )
            field = prefixes[0].rpartition("[")[0] or prefixes[0]
            raise errors.InvalidArgument(why, [FieldViolation(field, why)])
        with self._waiting_lock:
            if self._waiting + len(checked) > self._max_waiting:
                raise errors.QueueFull(
                    f"the queue is full: {self._waiting} of {self._max_waiting} "
                    f"actions wait; {len(checked)} more do not fit",
                    retry_after=_RETRY_HINT,
                )
        now = self._clock.now()
        news, stored = self._prepare_all(checked, now, parent_id, keys)
        due_now = [i for i, n in enumerate(news) if n.due_at <= now]
        run_here = (
            local
            and self._executor is not None
            and self._executor.current_worker() is not None
            and len(self._inflight) < 2 * self._capacity
        )
        if run_here:
            # Children due now: inserted already claimed by us, to run on
            # this worker; no feeder, here or on another replica, can claim
            # them too.
            claim = due_now
        elif not local and due_now and self._phase is _Phase.RUNNING:
            # Due now with room in flight: inserted claimed by us if nothing
            # else waits due (the store checks), and run at once. A claim
            # and a commit fewer on the way from assign to run.
            with self._reserve_lock:
                room = self._capacity - len(self._inflight) - self._reserved
                claim = due_now[: max(0, room)]
                self._reserved += len(claim)
        else:
            claim = []
        lease_until = (
            None
            if self._claim_lease is None
            else now + self._claim_lease.total_seconds()
        )
        for i in claim:
            news[i] = dataclasses.replace(
                news[i],
                owner=self._owner,
                lease_until=lease_until,
                only_if_idle=not run_here,
                also=State.QUEUED,
            )
        return PendingAssign(
            news,
            now,
            frozenset(news[i].id for i in claim) if run_here else frozenset(),
            checked,
            stored,
            0 if run_here else len(claim),
        )

    def _unreserve(self, pending: PendingAssign) -> None:
        if pending.reserved:
            with self._reserve_lock:
                self._reserved -= pending.reserved

    def _journaled(self, pending: PendingAssign, inserted: Sequence[Inserted]) -> None:
        """After the insert committed, on a thread that may take _lock (never
        a store thread): count, start what the insert claimed, wake the
        feeder for the rest."""
        fresh = [(n, i.record) for n, i in enumerate(inserted) if not i.duplicate]
        with self._waiting_lock:
            self._waiting += len(fresh)
        self._metrics.assigned(len(fresh))
        claimed = [(n, r) for n, r in fresh if r.owner == self._owner]
        if claimed:
            self._start(
                [r for _, r in claimed], [pending.stored[n] for n, _ in claimed]
            )
        self._unreserve(pending)
        if any(r.owner is None for _, r in fresh):
            self._wake_feeder()  # claimable now or later: look again

    def _hand_to_feeder(
        self, pending: PendingAssign, future: Future[list[Inserted]]
    ) -> None:
        """Done-callback of an async insert, on a store thread (or the thread
        that cancelled it): the feeder finishes the job (``_journaled``)."""
        self._handoff.append((pending, future))
        with self._feeder_cond:
            self._feeder_cond.notify_all()

    def _take_handoffs(self) -> None:
        """Feeder (or close, once it stopped): finish async inserts."""
        while self._handoff:
            pending, future = self._handoff.popleft()
            if future.cancelled() or future.exception() is not None:
                self._unreserve(pending)
                continue
            self._journaled(pending, future.result())

    def _start(
        self, records: Sequence[ActionRecord], stored: Sequence[StoredAction]
    ) -> None:
        """Run actions the insert claimed for us: children on this worker's
        deque, fresh work on the injector. Stopping: give the claims back."""
        runs = []
        with self._lock:
            running = self._phase is _Phase.RUNNING
            if running:
                for record, decoded in zip(records, stored, strict=True):
                    run = Run(record, stored=decoded)
                    self._inflight[record.id] = run
                    runs.append(run)
        if not running:
            # A drain began: leave them to whoever claims next.
            self._store.release([r.id for r in records])
            return
        assert self._executor is not None
        for run in runs:
            self._executor.submit(
                functools.partial(self._processor.process, run), run.record.priority
            )

    def _prepare_all(
        self,
        specs: Sequence[ActionSpec],
        now: float,
        parent_id: str | None,
        keys: Sequence[str | None] | None,
    ) -> tuple[list[NewAction], list[StoredAction]]:
        """NewActions for one assign call: ids from one read of the random
        source, and one ``echo.assign`` span per trace context in the call
        (nearly always one), whose carrier every action of it continues."""
        raw = os.urandom(16 * len(specs)).hex()
        ids = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        groups: dict[_Context, list[int]] = {}
        for i, spec in enumerate(specs):
            groups.setdefault(tuple(spec.trace_context.items()), []).append(i)
        # Per trace context: the carrier, the trace id and the event payload.
        contexts: dict[
            tuple[tuple[str, str], ...], tuple[dict[str, str], str, bytes]
        ] = {}
        for context, members in groups.items():
            carrier, trace_id = self._assign_span(
                [specs[i] for i in members], [ids[i] for i in members]
            )
            contexts[context] = carrier, trace_id, encode_event(trace_id=trace_id)
        news: list[NewAction] = []
        stored: list[StoredAction] = []
        for i, spec in enumerate(specs):
            options = spec.options
            if options.delay is not None:
                due = now + options.delay.total_seconds()
            elif options.not_before is not None:
                due = options.not_before.timestamp()
            else:
                due = now
            carrier, trace_id, event = contexts[tuple(spec.trace_context.items())]
            key = None if keys is None else keys[i]
            stored.append(StoredAction(spec, carrier, trace_id))
            news.append(
                NewAction(
                    id=ids[i],
                    name=spec.name,
                    payload=encode_action(stored[-1]),
                    priority=options.priority,
                    due_at=due,
                    idempotency_key=key or options.idempotency_key or None,
                    parent_id=parent_id,
                    event_payload=event,
                    # Journaled with the insert: it waits for its time.
                    also=State.SCHEDULED if due > now else None,
                )
            )
        return news, stored

    def _assign_span(
        self, specs: Sequence[ActionSpec], ids: Sequence[str]
    ) -> tuple[dict[str, str], str]:
        """The short span that marks acceptance; returns its W3C carrier and
        trace id. The actions' spans continue the context they came with, or
        else the caller's current one; an action without any context gets a
        trace of its own here."""
        first = specs[0]
        parent = extract(dict(first.trace_context)) if first.trace_context else None
        names = {s.name for s in specs}
        attributes: dict[str, str | int] = {"echo.action.count": len(specs)}
        if len(names) == 1:
            attributes["echo.action.name"] = first.name
        if len(ids) == 1:
            attributes["echo.action.id"] = ids[0]
        span = self._tracer.start_span(
            f"echo.assign {first.name}" if len(names) == 1 else "echo.assign",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(span))
        span.end()
        span_context = span.get_span_context()
        trace_id = (
            format(span_context.trace_id, "032x") if span_context.is_valid else ""
        )
        return carrier, trace_id

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
                # Built directly: dataclasses.replace costs more than the check.
                spec = ActionSpec(
                    spec.name,
                    check_args(signature, spec.args),
                    spec.options,
                    spec.metadata,
                    spec.trace_context,
                )
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
        if o.delay is not None and o.delay < _ZERO:
            out.append(FieldViolation(f"{opt}.delay", "must not be negative"))
        for name, value in (("not_before", o.not_before), ("deadline", o.deadline)):
            if value is not None and value.tzinfo is None:
                out.append(FieldViolation(f"{opt}.{name}", "must carry a time zone"))
        if o.attempt_timeout is not None and o.attempt_timeout <= _ZERO:
            out.append(FieldViolation(f"{opt}.attempt_timeout", "must be positive"))
        if type(o.priority) is not int and (
            isinstance(o.priority, bool) or not isinstance(o.priority, int)
        ):
            out.append(FieldViolation(f"{opt}.priority", "must be an integer"))
        if o.retry_policy is not None:
            out.extend(
                FieldViolation(f"{opt}.retry_policy.{field}", why)
                for field, why in policy_problems(o.retry_policy)
            )
        if spec.metadata:
            unknown = [
                n for n in hook_names(spec.metadata) if self._plan.hook(n) is None
            ]
            if unknown:
                out.append(
                    FieldViolation(
                        f"{prefix}.metadata.hooks",
                        f"unknown hooks: {', '.join(unknown)}",
                    )
                )
        for field, mapping in (
            ("metadata", spec.metadata),
            ("trace_context", spec.trace_context),
        ):
            if mapping and not all(
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
            if self._claiming:
                # The feeder's claim may have taken it before the cancel
                # committed; the cancel dropped that claim, and the feeder
                # must not run it.
                self._withdrawn.add(action_id)
        return self.get(action_id)

    def subscribe(
        self,
        *,
        after: int | None = None,
        action_ids: Iterable[str] = frozenset(),
        names: Iterable[str] = frozenset(),
        states: Iterable[State] = frozenset(),
        buffer: int = 1024,
        notify: Callable[[], None] | None = None,
    ) -> Subscription:
        """Events from now on (``after=None``), or every journaled event above
        ``after`` and then live ones, with no gap and no duplicate. Only
        events of ``action_ids``, of ``names`` and in ``states`` pass (an empty
        filter passes all).

        ``notify`` is called from any thread when events become available or
        the subscription ends; with it, a reader polls ``get(0)`` and runs
        ``fill`` off its event loop (see ``Subscription``)."""
        sub = Subscription(
            after=after,
            action_ids=frozenset(action_ids),
            names=frozenset(names),
            states=frozenset(states),
            buffer=buffer,
            replay=self._replay,
            on_close=self._drop_sub,
            notify=notify,
        )
        with self._subs_lock:
            if self._phase is _Phase.CLOSED:
                raise errors.Unavailable("the engine is closed")
            self._subs = (*self._subs, sub)
        return sub

    @property
    def last_sequence(self) -> int:
        """The highest committed event sequence; 0 for an empty journal."""
        return self._store.last_sequence()

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
        """Store listener, on a store thread: count, wake, and fan out."""
        finished = sum(1 for r in records if r.state.finished)
        if finished:
            with self._waiting_lock:
                self._waiting -= finished
        if self._shared and any(r.state in _CLAIMABLE for r in records):
            # Another replica's assign or retry: this feeder hears of it only
            # here. (Single-node: every such write was ours and woke it.)
            self._wake_feeder()
        subs = self._subs
        if not subs:
            return
        if all(s.action_ids or s.names or s.states for s in subs):
            # Only what someone listens to is worth converting (a session
            # listens to its own few actions among everyone's).
            records = [r for r in records if any(s.matches(r) for s in subs)]
        times: dict[float, datetime] = {}  # the events of one write share one
        events = [_event(r, times) for r in records]
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

    def record(
        self, transitions: Sequence[Transition], *, linger: bool = False
    ) -> None:
        """Transitions of claimed runs (RUNNING, PROGRESS): fenced. With
        ``linger`` the write may wait a little for the next one (the
        attempt's outcome, usually) to share its commit."""
        self._store.record(
            [_owned(t, self._owner) for t in transitions],
            linger=_LINGER if linger else timedelta(0),
        ).add_done_callback(_log_failed_write)

    def finish(self, run: Run, transition: Transition) -> None:
        transition = _owned(transition, self._owner)
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

    # -- chores: retention and leases -------------------------------------

    def _purge(self) -> None:
        """Drop finished actions past ``retention`` and keys past theirs."""
        now = self._clock.now()
        finished_before = now - self._retention.total_seconds()
        keys_before = now - self._key_retention.total_seconds()
        try:
            removed = self._store.purge(
                finished_before=finished_before, keys_before=keys_before
            )
        except errors.EchoError as exc:
            logger.warning("the retention purge failed; next time: %s", exc)
            return
        logger.debug(
            "purged %d actions finished before %s and keys made before %s",
            removed,
            _time(finished_before).isoformat(),
            _time(keys_before).isoformat(),
        )

    def _renew(self) -> None:
        """Extend the leases of every claimed run; stop those whose claim
        another replica holds now (or that were finished by someone else)."""
        with self._lock:
            runs = dict(self._inflight)
        if not runs:
            return
        try:
            held = self._store.renew(
                runs, owner=self._owner, now=self._clock.now(), lease=self._lease
            )
        except errors.EchoError as exc:
            # Try again next time; fencing covers what expires meanwhile.
            logger.warning("could not renew %d leases: %s", len(runs), exc)
            return
        lost = [run for action_id, run in runs.items() if action_id not in held]
        if lost:
            self._lose(lost)

    def _lose(self, runs: Sequence[Run]) -> None:
        reason = "the claim on the action was lost to another runner"
        with self._lock:
            for run in runs:
                if self._inflight.get(run.id) is not run:
                    continue  # it finished (and let go of its claim) meanwhile
                logger.warning(
                    "lost the claim on %s (%s); stopping its attempt",
                    run.id,
                    run.record.name,
                    extra={"action_id": run.id},
                )
                if not run.started:
                    del self._inflight[run.id]  # its task will not begin
                run.token.cancel(CancelCause.LOST, reason)
            if not self._inflight:
                self._flight_cond.notify_all()

    # -- the feeder -----------------------------------------------------

    def _wake_feeder(self) -> None:
        with self._feeder_cond:
            self._feeder_wake = True
            self._feeder_cond.notify_all()

    def _feed(self) -> None:
        """Claim due actions while there is room; sleep until due or woken.

        Two kinds of wake: ``_wake_feeder`` (look at the journal again) and a
        handoff of async inserts (start what they claimed; no need to look
        unless they left work unclaimed, in which case they wake it too).
        """
        look = True  # claim, and read the next due time, this round
        next_due: float | None = None
        claimed = limit = 0
        claimed_at = 0.0
        while True:
            with self._feeder_cond:
                if self._feeder_stop:
                    return
                look = look or self._feeder_wake
                self._feeder_wake = False
            try:
                self._take_handoffs()
            except errors.EchoError:
                logger.exception("the feeder could not start assigned actions")
            if look:
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
                look = False
            with self._feeder_cond:
                if self._feeder_wake or self._feeder_stop or self._handoff:
                    continue
                room = self._capacity - len(self._inflight) - self._reserved
                if self._phase is not _Phase.RUNNING or room <= 0:
                    self._feeder_starved = room <= 0
                    self._clock.wait(self._feeder_cond, None)
                    self._feeder_starved = False
                elif next_due is None or next_due > self._clock.now():
                    self._clock.wait(self._feeder_cond, next_due)
                    look = next_due is not None and self._clock.now() >= next_due
                elif not claimed and next_due <= claimed_at:
                    # Due work that the claim did not return although it was
                    # due when we asked (someone else's lease, say): a short
                    # real-time pause keeps this from spinning.
                    self._feeder_cond.wait(0.05)
                    look = True
                else:
                    look = True  # it fell due after the claim looked

    def _claim_batch(self, now: float) -> tuple[int, int]:
        room = self._capacity - len(self._inflight) - self._reserved
        if room <= 0:
            return 0, 0
        limit = min(self._batch, room)
        with self._lock:
            if self._phase is not _Phase.RUNNING:
                return 0, limit
            self._claiming = True
        decoded: dict[str, StoredAction] = {}
        inflight = self._inflight

        def queued(record: ActionRecord) -> bytes | None:
            # On the store's writer thread, inside the claim: no lock (the
            # membership test is atomic); the checks under _lock below
            # decide what runs. Decoded once here, for the run as well.
            if record.id in inflight:
                return None  # ours already: our own expired claim taken again
            stored = decode_action(record.payload)
            decoded[record.id] = stored
            return encode_event(trace_id=stored.trace_id)

        # Outside _lock: workers begin and finish runs while the claim waits
        # for its commit. See the module docstring for what keeps it safe.
        # The claim journals QUEUED in its own transaction.
        records: list[ActionRecord] = []
        try:
            records = self._store.claim(
                now=now,
                limit=limit,
                owner=self._owner,
                lease=self._claim_lease,
                queued=queued,
            )
        finally:
            runs: list[Run] = []
            give_back: list[str] = []
            with self._lock:
                self._claiming = False
                withdrawn, self._withdrawn = self._withdrawn, set()
                for record in records:
                    if record.id in withdrawn or record.id in self._inflight:
                        # Cancelled while we claimed (the cancel dropped the
                        # claim), or our own expired claim taken again by us.
                        continue
                    if self._phase is not _Phase.RUNNING:
                        give_back.append(record.id)
                        continue
                    run = Run(record, stored=decoded.get(record.id))
                    self._inflight[record.id] = run
                    runs.append(run)
            if give_back:
                self._store.release(give_back)
        if runs:
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


def _fresh_view(record: ActionRecord, spec: ActionSpec) -> ActionView:
    """The view of an action just inserted, from the spec in hand (its
    payload encodes that spec; decoding it again would only cost time)."""
    created = _time(record.created_at)
    return ActionView(
        id=record.id,
        name=record.name,
        args=spec.args,
        options=spec.options,
        metadata=spec.metadata,
        trace_context=spec.trace_context,
        state=record.state,
        attempt=record.attempt,
        result=None,
        error=None,
        created_at=created,
        updated_at=created
        if record.updated_at == record.created_at
        else _time(record.updated_at),
        parent_id=record.parent_id,
    )


def _owned(t: Transition, owner: str) -> Transition:
    """``t`` fenced by ``owner`` (as dataclasses.replace would, for less)."""
    return Transition(
        t.action_id,
        t.state,
        t.attempt,
        t.due_at,
        t.outcome,
        t.event_payload,
        t.release,
        owner,
    )


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _event(
    record: EventRecord, times: dict[float, datetime] | None = None
) -> ActionEvent:
    body = decode_event(record.payload)
    if times is None:
        at = _time(record.at)
    else:
        at = times.get(record.at) or times.setdefault(record.at, _time(record.at))
    return ActionEvent(
        sequence=record.sequence,
        action_id=record.action_id,
        name=record.name,
        state=record.state,
        attempt=record.attempt,
        at=at,
        result=body.result,
        error=body.error,
        progress=body.progress,
        retry_delay=body.retry_delay,
        trace_id=body.trace_id,
    )


def _log_failed_write(future: Future[Any]) -> None:
    exc = future.exception()
    if isinstance(exc, errors.FailedPrecondition):
        # Fenced: the claim moved on (lease lost, or cancelled elsewhere);
        # the journal keeps the new holder's account.
        logger.warning("a write of a run that lost its claim was refused: %s", exc)
    elif exc is not None:
        logger.error("a journal write failed: %s", exc, exc_info=exc)
