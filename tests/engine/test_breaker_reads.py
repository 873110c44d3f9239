"""How the circuit breaker reads cooldowns: one store read per model at first, then answers from what it read while
a background read renews it, so that no model call waits for the database (which serialises its work, and may
be busy writing a batch of usage rows)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from t_koma.engine.fallback import CircuitBreaker
from t_koma.errors import UpstreamError
from t_koma.store.base import Cooldown
from t_koma.store.sqlite import SqliteStore

from .test_fallback import Clock


class GatedStore(SqliteStore):
    """A real SQLite store whose cooldown reads are counted and can be held at a gate."""

    reads = 0
    gate: asyncio.Event | None = None
    broken = False

    async def get_cooldown(self, model_key: str) -> Cooldown | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.broken:
            raise OSError("disk I/O error")
        return await super().get_cooldown(model_key)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[GatedStore]:
    opened = await GatedStore.open(tmp_path / "koma.sqlite3")
    assert isinstance(opened, GatedStore)
    yield opened
    await opened.close()


async def test_concurrent_first_lookups_share_one_read(store: GatedStore) -> None:
    clock = Clock()
    await store.set_cooldown("a", clock.now + 600, "Overloaded")
    breaker = CircuitBreaker(store, clock=clock)

    found = await asyncio.gather(*(breaker.cooldown("a") for _ in range(20)))

    assert store.reads == 1
    assert all(cooldown is not None and cooldown.reason == "Overloaded" for cooldown in found)


async def test_another_processs_cooldown_is_seen_after_the_refresh_interval(store: GatedStore) -> None:
    clock = Clock()
    breaker = CircuitBreaker(store, clock=clock, refresh_seconds=1.0)
    assert await breaker.cooldown("a") is None
    await store.set_cooldown("a", clock.now + 600, "rate limited elsewhere")  # as another process would

    assert await breaker.cooldown("a") is None  # still the last read
    clock.now += 1.0
    assert await breaker.cooldown("a") is None  # answered at once; a read starts in the background
    await breaker.aclose()

    cooldown = await breaker.cooldown("a")
    assert cooldown is not None and cooldown.reason == "rate limited elsewhere"
    assert store.reads == 2


async def test_a_lookup_never_waits_for_a_busy_store_once_it_has_read(store: GatedStore) -> None:
    clock = Clock()
    breaker = CircuitBreaker(store, clock=clock)
    await breaker.cooldown("a")
    store.gate = asyncio.Event()  # from now on every read hangs until the gate opens

    clock.now += 5
    lookups = [await asyncio.wait_for(breaker.cooldown("a"), timeout=10) for _ in range(3)]

    assert lookups == [None, None, None]
    assert store.reads == 2  # one background read, not one per lookup
    store.gate.set()
    await breaker.aclose()


async def test_own_failures_apply_at_once_and_a_slower_read_does_not_undo_them(store: GatedStore) -> None:
    clock = Clock()
    breaker = CircuitBreaker(store, clock=clock)
    await breaker.cooldown("a")
    store.gate = asyncio.Event()
    clock.now += 5
    await breaker.cooldown("a")  # starts a background read, held at the gate

    await breaker.record_failure("a", UpstreamError("ours", status=502))
    await store.clear_cooldown("a")  # the read that was held back will now find nothing
    store.gate.set()
    await breaker.aclose()

    cooldown = await breaker.cooldown("a")
    assert cooldown is not None and cooldown.reason == "HTTP 502: ours"


async def test_a_failed_read_counts_as_no_cooldown_and_is_retried(store: GatedStore) -> None:
    breaker = CircuitBreaker(store, clock=Clock())
    store.broken = True

    assert await breaker.cooldown("a") is None

    store.broken = False
    await store.set_cooldown("a", breaker.clock() + 60, "Overloaded")
    assert await breaker.cooldown("a") is not None
    assert store.reads == 2
