"""Batched usage logging for the pass-through path (`/v1/chat/completions`).

An agent turn commits its usage row with each step (durability matters there). A pass-through call has nothing
else to store, so its usage row goes into a buffer that is written in one transaction shortly after, keeping a
database round trip off every request. `close()` writes what is left."""

from __future__ import annotations

import asyncio
import logging

from t_koma.store.base import Store, UsageRecord

logger = logging.getLogger(__name__)


class UsageLog:
    """Collects usage records and writes them in batches, at most `delay` seconds after the first one."""

    def __init__(self, store: Store, *, delay: float = 0.25, max_batch: int = 500) -> None:
        self._store = store
        self._delay = delay
        self._max_batch = max_batch
        self._pending: list[UsageRecord] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, record: UsageRecord) -> None:
        self._pending.append(record)
        if len(self._pending) >= self._max_batch:
            self._start_flush(0.0)
        elif self._flusher is None:
            self._start_flush(self._delay)

    def _start_flush(self, delay: float) -> None:
        if self._flusher is not None and not self._flusher.done():
            if delay > 0:
                return
            self._flusher.cancel()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_later(delay))

    async def _flush_later(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        self._flusher = None
        await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._store.record_usage_many(batch)
        except Exception:  # usage accounting must never fail a request; the rows are reported instead
            logger.exception("could not write %d usage rows", len(batch))

    async def close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
        await self.flush()
