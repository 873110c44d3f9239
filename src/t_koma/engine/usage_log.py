"""Batched usage logging for the pass-through path (`/v1/chat/completions`).

An agent turn commits its usage row with each step (durability matters there). A pass-through call has nothing
else to store, so its usage row goes into a buffer that is written in one transaction shortly after, keeping a
database round trip off every request. `close()` writes what is left, after any batch already being written."""

from __future__ import annotations

import asyncio
import logging

from t_koma.store.base import Store, UsageRecord

logger = logging.getLogger(__name__)


class UsageLog:
    """Collects usage records and writes them in batches, at most `delay` seconds after the first one (at once
    when `max_batch` are waiting). One writer task runs while rows keep coming, and ends when none are left."""

    def __init__(self, store: Store, *, delay: float = 0.25, max_batch: int = 500) -> None:
        self._store = store
        self._delay = delay
        self._max_batch = max_batch
        self._pending: list[UsageRecord] = []
        self._writer: asyncio.Task[None] | None = None
        self._full = asyncio.Event()

    def add(self, record: UsageRecord) -> None:
        self._pending.append(record)
        if self._writer is None:
            self._full = asyncio.Event()  # made here, in the running loop (an engine may outlive one loop)
            self._writer = asyncio.get_running_loop().create_task(self._write_batches())
        elif len(self._pending) >= self._max_batch:
            self._full.set()

    async def _write_batches(self) -> None:
        try:
            while self._pending:
                if len(self._pending) < self._max_batch:
                    try:
                        async with asyncio.timeout(self._delay):
                            await self._full.wait()
                    except TimeoutError:
                        pass
                self._full.clear()
                await self.flush()
        finally:
            self._writer = None

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._store.record_usage_many(batch)
        except Exception:  # usage accounting must never fail a request; the rows are reported instead
            logger.exception("could not write %d usage rows", len(batch))

    async def close(self) -> None:
        """Write everything, including a batch the writer task is writing right now (before the store closes)."""
        writer = self._writer
        if writer is not None:
            self._full.set()
            await asyncio.wait({writer})
        await self.flush()
