"""The Store contract, run against every implementation."""

from __future__ import annotations

import dataclasses
import threading
import tracemalloc
from datetime import timedelta

import pytest

from echo_service import errors
from echo_service.store import NewAction, State, Store, Transition

from .conftest import (
    Collector,
    FakeClock,
    StoreFactory,
    all_events,
    new_action,
    run_threads,
)

# -- insert and events ---------------------------------------------------------


def test_insert_answers_with_the_accepted_records_and_journals_one_event_each(
    store: Store, clock: FakeClock
) -> None:
    actions = [new_action(priority=p, due_at=5.0) for p in (1, 2, 3)]

    inserted = store.insert(actions)

    assert [i.duplicate for i in inserted] == [False, False, False]
    assert [i.record.id for i in inserted] == [a.id for a in actions]
    first = inserted[0].record
    assert (first.state, first.attempt, first.priority, first.due_at) == (
        State.ACCEPTED,
        0,
        1,
        5.0,
    )
    assert first.created_at == clock.now
    assert store.get(first.id) == first
    events = all_events(store)
    assert [(e.sequence, e.action_id, e.state) for e in events] == [
        (1, actions[0].id, State.ACCEPTED),
        (2, actions[1].id, State.ACCEPTED),
        (3, actions[2].id, State.ACCEPTED),
    ]
    assert events[0].payload == b"accepted"
    assert store.last_sequence() == 3
    assert store.waiting() == 3


def test_insert_async_resolves_once_durable_with_what_insert_answers(
    store: Store,
) -> None:
    seen = Collector()
    store.add_listener(seen)
    action = new_action(key="async")

    future = store.insert_async([action])
    [inserted] = future.result(timeout=10)

    assert (inserted.record.id, inserted.duplicate) == (action.id, False)
    stored = store.get(action.id)
    assert stored is not None and stored.state is State.ACCEPTED
    store.flush()
    assert [e.action_id for e in seen.events] == [action.id]
    [again] = store.insert_async([new_action(key="async")]).result(timeout=10)
    assert (again.record.id, again.duplicate) == (action.id, True)


def test_an_empty_journal_has_sequence_zero_and_nothing_to_claim(store: Store) -> None:
    assert store.last_sequence() == 0
    assert store.waiting() == 0
    assert store.next_due() is None
    assert store.claim(now=1e12, limit=10, owner="w") == []
    assert store.events_after(0, limit=10) == []
    assert store.get("nothing") is None


def test_sequences_are_strictly_increasing_without_gaps_under_concurrent_writers(
    store: Store,
) -> None:
    def writer(i: int) -> None:
        for _ in range(20):
            [ins] = store.insert([new_action()])
            store.record([Transition(ins.record.id, State.RUNNING, attempt=1)]).result()
            store.record([Transition(ins.record.id, State.PROGRESS)])

    run_threads(writer, 4)
    store.flush()

    sequences = [e.sequence for e in all_events(store)]
    assert sequences == list(range(1, 4 * 20 * 3 + 1))
    assert store.last_sequence() == 240


def test_events_after_pages_and_filters_by_action_and_by_name(store: Store) -> None:
    a, b, c = (
        new_action(name="fetch"),
        new_action(name="store"),
        new_action(name="fetch"),
    )
    store.insert([a, b, c])
    store.record([Transition(a.id, State.RUNNING), Transition(b.id, State.RUNNING)])
    store.flush()

    assert [e.sequence for e in store.events_after(2, limit=2)] == [3, 4]
    by_action = store.events_after(0, limit=10, action_ids=frozenset({a.id}))
    assert [(e.sequence, e.state) for e in by_action] == [
        (1, State.ACCEPTED),
        (4, State.RUNNING),
    ]
    by_name = store.events_after(1, limit=10, names=frozenset({"fetch"}))
    assert [e.sequence for e in by_name] == [3, 4]
    both = store.events_after(
        0, limit=10, action_ids=frozenset({a.id, b.id}), names=frozenset({"store"})
    )
    assert [e.sequence for e in both] == [2, 5]


def test_a_progress_transition_appends_an_event_and_leaves_the_action_alone(
    store: Store,
) -> None:
    action = new_action()
    store.insert([action])
    store.record([Transition(action.id, State.RUNNING, attempt=2)]).result()

    [event] = store.record(
        [Transition(action.id, State.PROGRESS, event_payload=b"50%")]
    ).result()

    assert (event.state, event.attempt, event.payload) == (State.PROGRESS, 2, b"50%")
    record = store.get(action.id)
    assert record is not None
    assert (record.state, record.attempt) == (State.RUNNING, 2)


def test_record_with_an_unknown_action_fails_and_writes_nothing_of_its_batch(
    store: Store,
) -> None:
    action = new_action()
    store.insert([action])

    future = store.record(
        [Transition(action.id, State.RUNNING), Transition("missing", State.RUNNING)]
    )

    with pytest.raises(errors.NotFound):
        future.result(timeout=10)
    record = store.get(action.id)
    assert record is not None
    assert record.state is State.ACCEPTED
    # The next write takes the very next number: the failed one left no hole.
    [event] = store.record([Transition(action.id, State.RUNNING)]).result()
    assert event.sequence == 2


def test_writes_that_share_a_commit_each_see_the_ones_before_and_fail_alone(
    store: Store, kind: str
) -> None:
    a, b, c = (dataclasses.replace(new_action(), owner="o") for _ in range(3))
    store.insert([a, b, c])
    first = store.last_sequence()
    commits = getattr(store, "commits", 0)
    # Hold the writer inside a listener so that the writes below queue up
    # and go into one group (the single-node stores call listeners there).
    inside, release = threading.Event(), threading.Event()
    held = [True]

    def hold(events: object) -> None:
        if held[0]:
            held[0] = False
            inside.set()
            assert release.wait(10)

    store.add_listener(hold)
    store.record([Transition(a.id, State.PROGRESS)])
    if kind != "postgres":
        assert inside.wait(10)
    futures = [
        store.record([Transition(a.id, State.RUNNING, attempt=1, owner="o")]),
        store.record([Transition(a.id, State.SUCCEEDED, outcome=b"r", owner="o")]),
        store.record(
            [Transition(a.id, State.RETRYING), Transition("missing", State.PROGRESS)]
        ),
        store.record([Transition(b.id, State.RUNNING, owner="someone else")]),
        store.record([Transition("missing", State.PROGRESS)]),
        store.record(
            [Transition(c.id, State.RETRYING, due_at=0.0, release=True, owner="o")]
        ),
        store.record([Transition(a.id, State.RUNNING, attempt=2, owner="o")]),
        store.record([Transition(b.id, State.PROGRESS, attempt=7)]),
        store.record([Transition(b.id, State.QUEUED)]),
    ]
    release.set()
    store.flush()

    failures = [type(f.exception()) if f.exception() else None for f in futures]
    assert failures == [
        None,
        None,
        errors.NotFound,  # and its RETRYING of the finished action is undone
        errors.FailedPrecondition,
        errors.NotFound,
        None,
        errors.FailedPrecondition,  # SUCCEEDED dropped the claim just before
        None,
        None,
    ]
    events = [e for e in all_events(store) if e.sequence > first + 1]
    assert [(e.action_id, e.state, e.attempt) for e in events] == [
        (a.id, State.RUNNING, 1),
        (a.id, State.SUCCEEDED, 1),
        (c.id, State.RETRYING, 0),
        (b.id, State.PROGRESS, 7),
        (b.id, State.QUEUED, 0),  # a progress event leaves the attempt alone
    ]
    assert [e.sequence for e in events] == list(range(first + 2, first + 7))
    got = {r.id: r for r in (store.get(x.id) for x in (a, b, c)) if r is not None}
    assert (got[a.id].state, got[a.id].owner, got[a.id].outcome) == (
        State.SUCCEEDED,
        None,
        b"r",
    )
    assert (got[b.id].state, got[b.id].owner, got[b.id].attempt) == (
        State.QUEUED,
        "o",
        0,
    )
    assert (got[c.id].state, got[c.id].owner, got[c.id].due_at) == (
        State.RETRYING,
        None,
        0.0,
    )
    assert store.waiting() == 2
    if kind != "postgres":
        # the PROGRESS before the hold, then everything else together
        assert getattr(store, "commits", 0) - commits == 2


def test_an_action_id_that_exists_already_fails_the_insert(store: Store) -> None:
    action = new_action()
    store.insert([action])

    with pytest.raises(errors.StoreError):
        store.insert([new_action(), action])

    assert store.waiting() == 1
    assert store.last_sequence() == 1


# -- idempotency -----------------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_first_action_as_a_duplicate(
    store: Store,
) -> None:
    first = new_action(key="order-7")
    [original] = store.insert([first])

    [repeat] = store.insert([new_action(key="order-7", priority=9)])

    assert repeat.duplicate
    assert repeat.record == original.record
    assert store.get(repeat.record.id) == original.record
    assert store.waiting() == 1
    assert store.last_sequence() == 1  # nothing journaled for the repeat


def test_a_key_repeated_within_one_batch_is_recognised_too(store: Store) -> None:
    a, b, c = new_action(key="k"), new_action(key="k"), new_action(key="other")

    inserted = store.insert([a, b, c])

    assert [i.duplicate for i in inserted] == [False, True, False]
    assert inserted[1].record.id == a.id
    assert store.get(b.id) is None


def test_a_key_older_than_the_retention_no_longer_recognises_repeats(
    open_journal: StoreFactory, clock: FakeClock
) -> None:
    store = open_journal(key_retention=timedelta(minutes=10))
    store.insert([new_action(key="k")])
    clock.advance(timedelta(minutes=9))
    [still] = store.insert([new_action(key="k")])
    clock.advance(timedelta(minutes=2))

    second = new_action(key="k")
    [fresh] = store.insert([second])

    assert still.duplicate
    assert not fresh.duplicate
    assert fresh.record.id == second.id
    # The key now points at the newer action.
    [again] = store.insert([new_action(key="k")])
    assert again.duplicate and again.record.id == second.id


def test_purging_an_action_frees_its_idempotency_key(
    store: Store, clock: FakeClock
) -> None:
    first = new_action(key="k")
    store.insert([first])
    store.record([Transition(first.id, State.SUCCEEDED)]).result()
    clock.advance(timedelta(seconds=1))

    assert store.purge(finished_before=clock.now, keys_before=0.0) == 1

    [fresh] = store.insert([new_action(key="k")])
    assert not fresh.duplicate


# -- claim -----------------------------------------------------------------------


def test_claim_takes_highest_priority_then_earliest_due_then_insertion_order(
    store: Store,
) -> None:
    low_early = new_action(priority=0, due_at=1.0)
    high_late = new_action(priority=5, due_at=3.0)
    high_early = new_action(priority=5, due_at=2.0)
    mid_a = new_action(priority=2, due_at=2.0)
    mid_b = new_action(priority=2, due_at=2.0)
    negative = new_action(priority=-3, due_at=0.0)
    store.insert([low_early, high_late, high_early, mid_a, mid_b, negative])

    claimed = store.claim(now=10.0, limit=4, owner="w1")
    rest = store.claim(now=10.0, limit=10, owner="w1")

    assert [r.id for r in claimed] == [high_early.id, high_late.id, mid_a.id, mid_b.id]
    assert [r.id for r in rest] == [low_early.id, negative.id]
    assert all(r.owner == "w1" for r in claimed + rest)


def test_claim_leaves_actions_that_are_not_due_and_next_due_names_the_earliest(
    store: Store,
) -> None:
    later = new_action(priority=9, due_at=100.0)
    soon = new_action(priority=0, due_at=50.0)
    now_due = new_action(priority=0, due_at=10.0)
    store.insert([later, soon, now_due])

    first = store.claim(now=20.0, limit=10, owner="w")
    assert [r.id for r in first] == [now_due.id]
    # A shared store leases every claim; a lease's end counts as due too.
    leases = [r.lease_until for r in first if r.lease_until is not None]
    assert store.next_due() == min([50.0, *leases])
    second = store.claim(now=100.0, limit=10, owner="w")
    assert [r.id for r in second] == [later.id, soon.id]
    leases += [r.lease_until for r in second if r.lease_until is not None]
    assert store.next_due() == (min(leases) if leases else None)


def test_a_claimed_action_is_not_claimed_again_until_released(store: Store) -> None:
    action = new_action()
    store.insert([action])

    assert len(store.claim(now=1.0, limit=10, owner="a")) == 1
    assert store.claim(now=1.0, limit=10, owner="b") == []

    store.release([action.id])
    [again] = store.claim(now=1.0, limit=10, owner="b")
    assert again.owner == "b"


def test_concurrent_claimers_never_receive_the_same_action(store: Store) -> None:
    actions = [new_action(priority=i % 4) for i in range(400)]
    store.insert(actions)
    taken: list[list[str]] = [[] for _ in range(4)]

    def claimer(i: int) -> None:
        while batch := store.claim(now=1.0, limit=7, owner=f"worker-{i}"):
            taken[i].extend(r.id for r in batch)

    run_threads(claimer, 4)

    everything = [action_id for ids in taken for action_id in ids]
    assert len(everything) == len(set(everything)) == 400
    assert set(everything) == {a.id for a in actions}


def test_a_lease_that_ran_out_lets_another_owner_claim_and_renew_tells_who_holds(
    store: Store,
) -> None:
    action = new_action()
    store.insert([action])
    store.claim(now=100.0, limit=1, owner="a", lease=timedelta(seconds=30))

    assert store.claim(now=129.0, limit=1, owner="b") == []
    assert store.renew([action.id], owner="a", now=129.0, lease=timedelta(seconds=30))
    assert store.next_due() == 159.0
    assert store.claim(now=158.0, limit=1, owner="b") == []
    [taken] = store.claim(now=159.0, limit=1, owner="b")

    assert taken.owner == "b"
    held = store.renew([action.id], owner="a", now=160.0, lease=timedelta(seconds=30))
    assert held == set()


def test_claim_reads_only_its_limit_however_many_actions_wait(store: Store) -> None:
    # Trap: delayed work pulled into memory without limit. 5000 waiting
    # actions, most not yet due: a claim of 10 must not materialise them.
    store.insert([new_action(due_at=1_000.0 + i) for i in range(5_000)])
    store.insert([new_action(due_at=1.0) for _ in range(20)])
    assert store.claim(now=0.0, limit=10, owner="w") == []  # warm connections up
    store.flush()  # and let event threads settle: tracemalloc sees every thread

    tracemalloc.start()
    try:
        claimed = store.claim(now=10.0, limit=10, owner="w")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(claimed) == 10
    assert peak < 200_000, f"a claim of 10 allocated {peak} bytes"


def test_events_of_several_names_come_merged_in_sequence_order_page_by_page(
    store: Store,
) -> None:
    names = ["fetch", "store", "other"]
    actions = [new_action(name=names[i % 3]) for i in range(30)]
    store.insert(actions)
    wanted = frozenset({"fetch", "store"})

    pages: list[list[int]] = []
    after = 0
    while page := store.events_after(after, limit=4, names=wanted):
        pages.append([e.sequence for e in page])
        after = page[-1].sequence

    expected = [i + 1 for i in range(30) if names[i % 3] in wanted]
    assert [seq for page in pages for seq in page] == expected
    assert all(len(page) == 4 for page in pages[:-1])


# -- owned inserts and fencing ---------------------------------------------------


def test_an_action_inserted_with_an_owner_is_claimed_by_it_and_by_nobody_else(
    store: Store,
) -> None:
    child = dataclasses.replace(new_action(), owner="runner")
    free = new_action()

    [inserted, _] = store.insert([child, free])

    assert (inserted.record.owner, inserted.record.state) == ("runner", State.ACCEPTED)
    assert [r.id for r in store.claim(now=1.0, limit=10, owner="other")] == [free.id]
    assert store.renew([child.id], owner="runner", now=1.0, lease=timedelta(1)) == {
        child.id
    }
    assert store.waiting() == 2
    store.release([child.id])
    [taken] = store.claim(now=1.0, limit=10, owner="other")
    assert taken.id == child.id


def test_an_owned_insert_with_a_lease_comes_free_when_the_lease_runs_out(
    store: Store,
) -> None:
    child = dataclasses.replace(new_action(), owner="runner", lease_until=50.0)
    store.insert([child])

    assert store.next_due() == 50.0
    assert store.claim(now=49.0, limit=1, owner="other") == []
    [taken] = store.claim(now=50.0, limit=1, owner="other")
    assert taken.owner == "other"


def test_an_insert_journals_its_second_state_right_after_accepted(
    store: Store,
) -> None:
    later = dataclasses.replace(new_action(due_at=5e6), also=State.SCHEDULED)
    now = dataclasses.replace(new_action(), owner="runner", also=State.QUEUED)
    unowned = dataclasses.replace(new_action(), also=State.QUEUED)

    inserted = store.insert([later, now, unowned])

    assert [(i.record.state, i.record.owner) for i in inserted] == [
        (State.SCHEDULED, None),
        (State.QUEUED, "runner"),
        (State.ACCEPTED, None),  # QUEUED only comes with a claim
    ]
    assert [(e.action_id, e.state, e.payload) for e in all_events(store)] == [
        (later.id, State.ACCEPTED, b"accepted"),
        (later.id, State.SCHEDULED, b"accepted"),
        (now.id, State.ACCEPTED, b"accepted"),
        (now.id, State.QUEUED, b"accepted"),
        (unowned.id, State.ACCEPTED, b"accepted"),
    ]
    stored = store.get(later.id)
    assert stored is not None and stored.state is State.SCHEDULED
    assert [r.id for r in store.claim(now=1.0, limit=5, owner="x")] == [unowned.id]


def test_an_insert_claims_only_if_idle_when_no_due_action_waits_unclaimed(
    store: Store,
) -> None:
    def fast() -> NewAction:
        return dataclasses.replace(
            new_action(), owner="runner", only_if_idle=True, also=State.QUEUED
        )

    store.insert([new_action(due_at=5e6)])  # waits, but is not due
    [first] = store.insert([fast()])
    assert (first.record.owner, first.record.state) == ("runner", State.QUEUED)

    waiting = new_action()
    store.insert([waiting])  # due and unclaimed: fresh work must not overtake it
    second, third = store.insert([fast(), fast()])
    assert [(i.record.owner, i.record.state) for i in (second, third)] == [
        (None, State.ACCEPTED),
        (None, State.ACCEPTED),
    ]
    claimed = store.claim(now=1.0, limit=5, owner="other")
    assert [r.id for r in claimed] == [
        waiting.id,
        second.record.id,
        third.record.id,
    ]

    [fourth] = store.insert([fast()])  # the due ones are all claimed now
    assert fourth.record.owner == "runner"
    states = [e.state for e in all_events(store) if e.action_id == third.record.id]
    assert states == [State.ACCEPTED]


def test_a_claim_can_journal_queued_for_the_actions_it_takes(store: Store) -> None:
    seen = Collector()
    store.add_listener(seen)
    actions = [new_action(priority=p) for p in (1, 2, 3)]
    store.insert(actions)
    skip = actions[1].id

    claimed = store.claim(
        now=1.0,
        limit=5,
        owner="runner",
        queued=lambda r: None if r.id == skip else f"q-{r.priority}".encode(),
    )

    assert [(r.id, r.state, r.owner) for r in claimed] == [
        (actions[2].id, State.QUEUED, "runner"),
        (actions[1].id, State.ACCEPTED, "runner"),
        (actions[0].id, State.QUEUED, "runner"),
    ]
    queued = [e for e in all_events(store) if e.state is State.QUEUED]
    assert [(e.action_id, e.payload) for e in queued] == [
        (actions[2].id, b"q-3"),
        (actions[0].id, b"q-1"),
    ]
    assert [e.sequence for e in all_events(store)] == [1, 2, 3, 4, 5]
    again = store.get(actions[0].id)
    assert again is not None and again.state is State.QUEUED
    store.flush()
    assert seen.sequences == [1, 2, 3, 4, 5]  # the QUEUED ones delivered too


def test_a_lingering_record_commits_at_once_when_flushed(store: Store) -> None:
    [inserted] = store.insert([new_action()])

    future = store.record(
        [Transition(inserted.record.id, State.RUNNING, attempt=1)],
        linger=timedelta(hours=1),
    )
    store.flush()

    assert future.done()
    record = store.get(inserted.record.id)
    assert record is not None and record.state is State.RUNNING


def test_a_repeat_of_a_key_is_not_claimed_by_the_repeats_owner(store: Store) -> None:
    [first] = store.insert([new_action(key="once")])
    [again] = store.insert([dataclasses.replace(new_action(key="once"), owner="r")])

    assert again.duplicate and again.record.id == first.record.id
    assert again.record.owner is None
    assert len(store.claim(now=1.0, limit=5, owner="other")) == 1


def test_a_fenced_transition_is_written_only_while_its_owner_holds_the_claim(
    store: Store,
) -> None:
    action = new_action()
    store.insert([action])
    store.claim(now=100.0, limit=1, owner="a", lease=timedelta(seconds=30))
    store.record([Transition(action.id, State.RUNNING, attempt=1, owner="a")]).result()
    # a pauses past its lease; b takes the action over and runs it.
    [taken] = store.claim(now=130.0, limit=1, owner="b", lease=timedelta(seconds=30))
    assert taken.id == action.id
    before = store.last_sequence()

    late = store.record(
        [
            Transition(action.id, State.PROGRESS, owner="a"),
            Transition(action.id, State.SUCCEEDED, outcome=b"a's", owner="a"),
        ]
    )

    with pytest.raises(errors.FailedPrecondition):
        late.result(timeout=10)
    record = store.get(action.id)
    assert record is not None
    assert (record.state, record.owner, record.outcome) == (State.RUNNING, "b", None)
    assert store.last_sequence() == before
    store.record(
        [Transition(action.id, State.SUCCEEDED, outcome=b"b's", owner="b")]
    ).result()
    record = store.get(action.id)
    assert record is not None
    assert (record.state, record.outcome) == (State.SUCCEEDED, b"b's")
    # Finished, nobody holds it: a late finish of either owner is refused.
    with pytest.raises(errors.FailedPrecondition):
        store.record([Transition(action.id, State.FAILED, owner="b")]).result()
    assert [e.state for e in all_events(store)].count(State.SUCCEEDED) == 1


def test_only_a_journal_that_other_processes_claim_from_says_it_is_shared(
    store: Store, kind: str
) -> None:
    assert store.shared is (kind == "postgres")


# -- transitions, retry, recover -------------------------------------------------


def test_finishing_an_action_drops_its_claim_and_waiting_counts_only_unfinished(
    store: Store,
) -> None:
    a, b = new_action(), new_action()
    store.insert([a, b])
    store.claim(now=1.0, limit=2, owner="w")

    store.record([Transition(a.id, State.SUCCEEDED, outcome=b"42")]).result()

    record = store.get(a.id)
    assert record is not None
    assert (record.state, record.owner, record.outcome) == (
        State.SUCCEEDED,
        None,
        b"42",
    )
    assert store.waiting() == 1
    assert store.recover("w") == 1  # only b's claim was left to release


def test_a_retry_keeps_its_priority_and_waits_for_its_new_due_time(
    store: Store,
) -> None:
    # Trap: a retried task came back without its priority.
    urgent = new_action(priority=7)
    plain = new_action(priority=0)
    store.insert([urgent, plain])
    store.claim(now=1.0, limit=1, owner="w")

    store.record(
        [
            Transition(
                urgent.id,
                State.RETRYING,
                attempt=1,
                due_at=30.0,
                outcome=b"boom",
                release=True,
            )
        ]
    ).result()

    assert [r.id for r in store.claim(now=29.0, limit=5, owner="w")] == [plain.id]
    [retried] = store.claim(now=30.0, limit=5, owner="w")
    assert (retried.id, retried.priority, retried.attempt, retried.due_at) == (
        urgent.id,
        7,
        1,
        30.0,
    )
    assert retried.outcome == b"boom"


def test_recover_makes_claimed_work_claimable_again_keeping_due_time_and_attempts(
    store: Store,
) -> None:
    running, held, delayed = new_action(), new_action(), new_action(due_at=5.0)
    store.insert([running, held, delayed])
    store.claim(now=10.0, limit=2, owner="old")
    store.record([Transition(running.id, State.RUNNING, attempt=3)]).result()

    released = store.recover("old")

    assert released == 2
    records = store.claim(now=10.0, limit=10, owner="new")
    assert [r.id for r in records] == [running.id, held.id, delayed.id]
    by_id = {r.id: r for r in records}
    assert by_id[running.id].attempt == 3
    assert by_id[running.id].state is State.RUNNING
    assert by_id[delayed.id].due_at == 5.0
    assert store.waiting() == 3


def test_purge_removes_old_finished_actions_with_their_events_and_expired_keys(
    store: Store, clock: FakeClock
) -> None:
    done_old, unfinished, keyed = new_action(), new_action(), new_action(key="k")
    store.insert([done_old, unfinished, keyed])
    store.record([Transition(done_old.id, State.FAILED)]).result()
    clock.advance(timedelta(hours=2))
    done_new = new_action()
    store.insert([done_new])
    store.record([Transition(done_new.id, State.CANCELLED)]).result()

    purged = store.purge(finished_before=clock.now - 60, keys_before=clock.now - 60)

    assert purged == 1
    assert store.get(done_old.id) is None
    assert store.get(done_new.id) is not None
    assert store.get(unfinished.id) is not None
    assert all(e.action_id != done_old.id for e in all_events(store))
    assert not store.insert([new_action(key="k")])[0].duplicate
    assert store.waiting() == 3
    assert store.last_sequence() == 7


# -- listeners and flush --------------------------------------------------------------


def test_listeners_see_every_event_once_in_sequence_order(store: Store) -> None:
    first, second = Collector(), Collector()
    store.add_listener(first)
    store.add_listener(second)

    def writer(i: int) -> None:
        for _ in range(25):
            [ins] = store.insert([new_action()])
            store.record([Transition(ins.record.id, State.SUCCEEDED)])

    run_threads(writer, 4)
    store.flush()

    expected = list(range(1, 201))
    assert first.sequences == expected
    assert second.sequences == expected
    assert first.events == all_events(store)


def test_flush_returns_after_unawaited_writes_are_committed_and_delivered(
    store: Store,
) -> None:
    seen = Collector()
    store.add_listener(seen)
    action = new_action()
    store.insert([action])
    futures = [store.record([Transition(action.id, State.PROGRESS)]) for _ in range(50)]

    store.flush()

    assert all(f.done() for f in futures)
    assert store.last_sequence() == 51
    assert seen.sequences == list(range(1, 52))


def test_a_listener_that_raises_does_not_stop_delivery_to_the_others(
    store: Store,
) -> None:
    def broken(events: object) -> None:
        raise RuntimeError("listener bug")

    seen = Collector()
    store.add_listener(broken)
    store.add_listener(seen)

    store.insert([new_action()])
    store.insert([new_action()])
    store.flush()

    assert seen.sequences == [1, 2]
    assert store.healthy()


def test_a_listener_runs_after_the_commit_and_may_read_the_store(store: Store) -> None:
    found: list[object] = []
    done = threading.Event()

    def reader(events: object) -> None:
        found.append(store.get(new.id))
        done.set()

    store.add_listener(reader)
    new = new_action()
    store.insert([new])

    assert done.wait(10)
    assert found and found[0] is not None


# -- closing ---------------------------------------------------------------------------


def test_a_closed_store_refuses_writes_and_reports_unhealthy(store: Store) -> None:
    assert store.healthy()
    store.close()
    store.close()  # idempotent

    assert not store.healthy()
    with pytest.raises(errors.Unavailable):
        store.insert([new_action()])
