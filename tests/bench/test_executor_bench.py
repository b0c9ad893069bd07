"""The executor benchmark counts every completion and refuses a wrong count."""

from __future__ import annotations

import pytest

from bench import executor


def test_every_task_of_the_fanout_tree_is_counted_once() -> None:
    total, body = executor._fanout(5, 3)
    ran: list[object] = []

    def submit(task: executor.Task) -> None:
        ran.append(task)
        task()

    completions = executor._Completions(total)
    body(submit, completions.finished)

    assert total == 1 + 5 + 5 * 3 == len(ran)
    assert completions.done.is_set()
    completions.check()


def test_a_pool_that_runs_a_task_twice_fails_the_measurement() -> None:
    total, body = executor._noop(10)

    def twice(task: executor.Task) -> None:
        task()
        task()

    with pytest.raises(RuntimeError, match="20 task completions counted, 10"):
        _, completions = executor._measure(twice, total, body)
        completions.check()


def test_a_pool_that_loses_a_task_never_reports_a_rate() -> None:
    total, body = executor._noop(10)
    completions = executor._Completions(total)
    kept: list[executor.Task] = []
    body(kept.append, completions.finished)
    for task in kept[1:]:
        task()

    assert not completions.done.is_set()
    with pytest.raises(RuntimeError, match="9 task completions counted, 10"):
        completions.check()


def test_the_echo_pool_and_the_plain_loop_both_run_every_task() -> None:
    total, body = executor._fanout(10, 5)

    assert executor._echo_rate(total, body) > 0
    assert executor._loop(total, body) > 0
