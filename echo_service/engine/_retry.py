"""Retry decisions. All of the engine's use of tenacity lives here.

tenacity supplies the arithmetic (its stop and wait strategies); it never
drives a loop or sleeps. The caller passes the action's own attempt number,
read from the journal, so concurrent actions never share a counter, and it
puts a retried action back in the journal with a due time instead of waiting.
"""

from __future__ import annotations

import functools
from datetime import timedelta

import tenacity

from echo_service.engine._model import ActionErrorInfo, RetryPolicy

__all__ = ["backoff", "next_retry", "policy_problems"]


def policy_problems(policy: RetryPolicy) -> list[tuple[str, str]]:
    """``(field, why)`` for each bad value; empty when the policy is usable."""
    out: list[tuple[str, str]] = []
    if policy.initial_interval < timedelta(0):
        out.append(("initial_interval", "must not be negative"))
    if policy.backoff_coefficient < 1.0:
        out.append(("backoff_coefficient", "must be at least 1"))
    if (
        policy.maximum_interval is not None
        and policy.maximum_interval < policy.initial_interval
    ):
        out.append(("maximum_interval", "must not be below initial_interval"))
    if policy.maximum_attempts < 0:
        out.append(("maximum_attempts", "must not be negative (0 is unlimited)"))
    if not 0.0 <= policy.jitter <= 1.0:
        out.append(("jitter", "must be between 0 and 1"))
    return out


class _ProportionalJitter(tenacity.wait.wait_base):
    """Spread another strategy's delay by +/- ``fraction`` of itself, capped."""

    def __init__(self, inner: tenacity.wait.wait_base, fraction: float, cap: float):
        self._inner = inner
        self._fraction = fraction
        self._cap = cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        base = self._inner(retry_state)
        spread = tenacity.wait_random(
            min=-self._fraction * base, max=self._fraction * base
        )(retry_state)
        return max(0.0, min(base + spread, self._cap))


@functools.lru_cache(maxsize=256)
def _strategies(
    policy: RetryPolicy,
) -> tuple[tenacity.stop.stop_base, tenacity.wait.wait_base]:
    cap = policy.effective_maximum_interval.total_seconds()
    exponential = tenacity.wait_exponential(
        multiplier=policy.initial_interval.total_seconds(),
        exp_base=policy.backoff_coefficient,
        max=cap,
    )
    wait: tenacity.wait.wait_base = (
        _ProportionalJitter(exponential, policy.jitter, cap)
        if policy.jitter
        else exponential
    )
    stop: tenacity.stop.stop_base = (
        tenacity.stop_after_attempt(policy.maximum_attempts)
        if policy.maximum_attempts
        else tenacity.stop_never
    )
    return stop, wait


def _state(attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return state


def backoff(policy: RetryPolicy, attempt: int) -> timedelta:
    """The delay after failed attempt number ``attempt`` (1-based)."""
    _, wait = _strategies(policy)
    return timedelta(seconds=wait(_state(attempt)))


def next_retry(
    policy: RetryPolicy,
    attempt: int,
    error: ActionErrorInfo,
    override: timedelta | None = None,
) -> timedelta | None:
    """The delay before the next attempt, or None when this failure is final.

    ``override`` (from a handler's ``Retry(next_delay=...)``) replaces the
    backoff but not the attempt limit.
    """
    if error.non_retryable or error.type in policy.non_retryable_error_types:
        return None
    stop, _ = _strategies(policy)
    if stop(_state(attempt)):
        return None
    if override is not None:
        return max(override, timedelta(0))
    return backoff(policy, attempt)
