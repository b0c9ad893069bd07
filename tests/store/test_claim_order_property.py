"""Claim order holds for any mix of priorities, due times and claim sizes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo_service.store import MemoryStore, NewAction, SqliteStore, Store

_actions = st.lists(
    st.tuples(st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.0, 5.0, 9.0])),
    min_size=1,
    max_size=40,
)
_claims = st.lists(
    st.tuples(st.sampled_from([0.0, 1.0, 3.0, 6.0, 10.0]), st.integers(1, 7)),
    min_size=1,
    max_size=12,
)


def _model(
    actions: list[tuple[int, float]], claims: list[tuple[float, int]]
) -> list[list[int]]:
    """What every claim should return: indexes into ``actions``."""
    left = set(range(len(actions)))
    out = []
    for now, limit in sorted(claims):  # time only moves forward
        due = sorted(
            (i for i in left if actions[i][1] <= now),
            key=lambda i: (-actions[i][0], actions[i][1], i),
        )[:limit]
        left -= set(due)
        out.append(due)
    return out


def _replay(
    store: Store, actions: list[tuple[int, float]], claims: list[tuple[float, int]]
) -> list[list[int]]:
    ids = [f"a{i}" for i in range(len(actions))]
    store.insert(
        [
            NewAction(id=ids[i], name="n", payload=b"", priority=p, due_at=d)
            for i, (p, d) in enumerate(actions)
        ]
    )
    return [
        [ids.index(r.id) for r in store.claim(now=now, limit=limit, owner="w")]
        for now, limit in sorted(claims)
    ]


@settings(max_examples=60, deadline=None)
@given(actions=_actions, claims=_claims)
def test_memory_store_claims_in_priority_due_insertion_order(
    actions: list[tuple[int, float]], claims: list[tuple[float, int]]
) -> None:
    store = MemoryStore()
    try:
        assert _replay(store, actions, claims) == _model(actions, claims)
    finally:
        store.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(actions=_actions, claims=_claims)
def test_sqlite_store_claims_in_priority_due_insertion_order(
    actions: list[tuple[int, float]], claims: list[tuple[float, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "echo.db")
        try:
            assert _replay(store, actions, claims) == _model(actions, claims)
        finally:
            store.close()
