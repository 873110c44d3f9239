"""The pass-through usage log: rows are written in batches off the request path, soon after they come, at once
when a batch is full, and all of them — also a batch being written at that moment — before the store closes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from t_koma.engine.usage_log import UsageLog
from t_koma.messages import ProviderUsage
from t_koma.store.base import UsageRecord
from t_koma.store.sqlite import SqliteStore


class GatedStore(SqliteStore):
    """A real SQLite store whose batch writes can be held at a gate (as a slow disk or a busy thread would)."""

    gate: asyncio.Event | None = None
    writing = 0

    async def record_usage_many(self, records: Sequence[UsageRecord]) -> None:
        self.writing += 1
        if self.gate is not None:
            await self.gate.wait()
        await super().record_usage_many(records)


def record(n: int) -> UsageRecord:
    return UsageRecord(None, None, "openrouter", "openai/gpt-4o-mini", ProviderUsage(n, 1), 1.0)


def rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        count: int = connection.execute("SELECT count(*) FROM usage_log").fetchone()[0]
    return count


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_rows_are_written_in_one_batch_soon_after_they_come(tmp_path: Path) -> None:
    store = await GatedStore.open(tmp_path / "koma.sqlite3")
    assert isinstance(store, GatedStore)
    log = UsageLog(store, delay=0.05)
    for n in range(20):
        log.add(record(n))

    await until(lambda: rows(tmp_path / "koma.sqlite3") == 20)
    await log.close()
    await store.close()
    assert store.writing == 1


async def test_a_full_batch_is_written_without_waiting_for_the_delay(tmp_path: Path) -> None:
    store = await GatedStore.open(tmp_path / "koma.sqlite3")
    log = UsageLog(store, delay=3600, max_batch=5)
    for n in range(5):
        log.add(record(n))

    await until(lambda: rows(tmp_path / "koma.sqlite3") == 5)
    await log.close()
    await store.close()


async def test_close_waits_for_the_batch_being_written_and_writes_the_rest(tmp_path: Path) -> None:
    store = await GatedStore.open(tmp_path / "koma.sqlite3")
    assert isinstance(store, GatedStore)
    store.gate = asyncio.Event()
    log = UsageLog(store, delay=0.0)
    for n in range(3):
        log.add(record(n))
    await until(lambda: store.writing == 1)  # the first batch is being written, held at the gate
    log.add(record(3))

    closing = asyncio.create_task(log.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    store.gate.set()
    await closing
    await store.close()

    assert rows(tmp_path / "koma.sqlite3") == 4
