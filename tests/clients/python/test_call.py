"""Timeouts both clients derive for their calls: no deadline means none, and
a call inside a longer operation never gets more time than is left of it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from echo_client._call import Deadline, unary_timeout

pytestmark = pytest.mark.timeout(30)


def test_a_calls_own_timeout_wins_over_the_clients_default() -> None:
    assert unary_timeout(timedelta(seconds=2), timedelta(seconds=30)) == 2.0
    assert unary_timeout(None, timedelta(seconds=30)) == 30.0
    assert unary_timeout(timedelta(0), timedelta(seconds=30)) == 0.0


def test_no_timeout_and_no_default_send_no_deadline() -> None:
    assert unary_timeout(None, None) is None
    assert Deadline(None).left() is None


def test_the_time_left_of_an_operation_never_exceeds_its_timeout() -> None:
    left = Deadline(timedelta(seconds=2)).left()
    assert left is not None
    assert timedelta(0) < left <= timedelta(seconds=2)
    spent = Deadline(timedelta(0)).left()
    assert spent == timedelta(milliseconds=1)
