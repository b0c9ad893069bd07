"""The store package exports what the engine builds on, and nothing else."""

from __future__ import annotations

from echo_service import store


def test_the_store_package_exports_exactly_its_public_names() -> None:
    assert set(store.__all__) == {
        "DATABASE_FILE",
        "ActionRecord",
        "EventListener",
        "EventRecord",
        "Inserted",
        "MemoryStore",
        "NewAction",
        "PostgresStore",
        "SqliteStore",
        "State",
        "Store",
        "Transition",
        "open_store",
    }
    assert len(store.__all__) == len(set(store.__all__))
    public = {name for name in vars(store) if not name.startswith("_")}
    assert public - set(store.__all__) <= {"TYPE_CHECKING"}


def test_every_exported_name_resolves() -> None:
    for name in store.__all__:
        if name == "PostgresStore":
            continue  # needs the postgres extra; tested with the server
        assert getattr(store, name) is not None
