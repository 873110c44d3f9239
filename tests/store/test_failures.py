"""SQLite failures a user can fix are named as such (real database files, a real second connection holding the
lock), and the message says what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from t_koma.errors import StoreError
from t_koma.messages import TextBlock
from t_koma.store import sqlite as sqlite_store
from t_koma.store.sqlite import SqliteStore


async def test_a_database_locked_by_another_process_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_SECONDS", 0.1)
    path = tmp_path / "koma.sqlite3"
    store = await SqliteStore.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as caught:
            await store.create_session("blocked")
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()

    assert caught.value.message == (
        f"the database {path} is locked by another process (waited 0.1 s); stop the other t-koma process using "
        "this data dir, or retry"
    )
    assert caught.value.exit_code == 1 and caught.value.type == "store_error"


async def test_a_full_database_is_named_and_nothing_stored_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "koma.sqlite3"
    store = await SqliteStore.open(path)
    session = await store.create_session("kept")
    await store.append_message(session.id, "user", (TextBlock("kept message"),))
    pages = (await store._conn.execute_fetchall("PRAGMA page_count"))[0][0]  # per connection: the store's
    await store._conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        with pytest.raises(StoreError) as caught:
            await store.append_message(session.id, "user", (TextBlock("x" * 200_000),))
        assert [m.content for m in await store.load_messages(session.id)] == [(TextBlock("kept message"),)]
    finally:
        await store.close()

    assert caught.value.message == f"the disk holding the database {path} is full; free some space and retry"
