"""Retry decisions: backoff within jitter bounds, limits, non-retryable types."""

from __future__ import annotations

from datetime import timedelta

import pytest

from echo_service.engine import ActionErrorInfo, ErrorKind, RetryPolicy
from echo_service.engine._retry import backoff, next_retry, policy_problems

ERR = ActionErrorInfo("ValueError", "bad", ErrorKind.HANDLER)


def test_delays_grow_by_the_coefficient_and_stay_within_the_jitter_bounds() -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        jitter=0.2,
        maximum_attempts=0,
    )
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)]:
        seen = [backoff(policy, attempt).total_seconds() for _ in range(200)]
        assert all(base * 0.8 - 1e-9 <= s <= base * 1.2 + 1e-9 for s in seen)
        assert max(seen) - min(seen) > 0  # jitter really spreads them


def test_delays_are_capped_at_the_maximum_interval() -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=5),
        jitter=0.5,
        maximum_attempts=0,
    )
    assert all(backoff(policy, 10) <= timedelta(seconds=5) for _ in range(100))


def test_an_unset_maximum_interval_means_a_hundred_times_the_initial_one() -> None:
    policy = RetryPolicy(initial_interval=timedelta(milliseconds=10), jitter=0)
    assert backoff(policy, 30) == timedelta(seconds=1)


def test_retries_stop_at_the_attempt_limit() -> None:
    policy = RetryPolicy(maximum_attempts=3, jitter=0)
    assert next_retry(policy, 1, ERR) == timedelta(seconds=1)
    assert next_retry(policy, 2, ERR) == timedelta(seconds=2)
    assert next_retry(policy, 3, ERR) is None


def test_explicit_zeros_mean_what_they_say() -> None:
    unlimited = RetryPolicy(maximum_attempts=0, initial_interval=timedelta(0), jitter=0)
    assert next_retry(unlimited, 1000, ERR) == timedelta(0)
    once = RetryPolicy(maximum_attempts=1)
    assert next_retry(once, 1, ERR) is None


def test_non_retryable_errors_stop_at_once() -> None:
    policy = RetryPolicy(non_retryable_error_types=frozenset({"ValueError"}))
    assert next_retry(policy, 1, ERR) is None
    flagged = ActionErrorInfo("KeyError", "k", ErrorKind.HANDLER, non_retryable=True)
    assert next_retry(RetryPolicy(), 1, flagged) is None


def test_a_handlers_next_delay_overrides_the_backoff_but_not_the_limit() -> None:
    policy = RetryPolicy(maximum_attempts=2)
    assert next_retry(policy, 1, ERR, timedelta(seconds=42)) == timedelta(seconds=42)
    assert next_retry(policy, 2, ERR, timedelta(seconds=42)) is None


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (RetryPolicy(backoff_coefficient=0.5), "backoff_coefficient"),
        (RetryPolicy(maximum_attempts=-1), "maximum_attempts"),
        (RetryPolicy(jitter=1.5), "jitter"),
        (RetryPolicy(initial_interval=timedelta(seconds=-1)), "initial_interval"),
        (
            RetryPolicy(
                initial_interval=timedelta(seconds=2),
                maximum_interval=timedelta(seconds=1),
            ),
            "maximum_interval",
        ),
    ],
)
def test_nonsense_policies_are_reported_by_field(
    policy: RetryPolicy, field: str
) -> None:
    assert [f for f, _ in policy_problems(policy)] == [field]
