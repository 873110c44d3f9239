"""The fallback chain and its circuit breaker.

A chain is an ordered list of model references (`-m a,b,c` or `default_model`). For each provider call the
engine walks it: models in cooldown are skipped; a retryable error (429, 5xx, 529, timeout, connection, invalid
response — also in the middle of a stream) puts the model in cooldown and the call moves to the next model; a
non-retryable error (400/401/402/403/404) ends the walk at once. A chain of one model retries a retryable error
in place (up to `max_retries` times, honouring a short `Retry-After`). Cooldowns live in the `Store`, keyed by
the model's label, so separate `t-koma ask` runs and gateway sessions share them.

When every model of the chain is cooling down, the walk probes the one whose cooldown ends first instead of
failing without asking anybody: a user whose only model was rate-limited for an hour can still try again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from t_koma.engine.events import FallbackRecord
from t_koma.errors import AllModelsExhaustedError, ConfigError, ProviderError, RateLimitError
from t_koma.providers.base import Provider, ProviderSpec
from t_koma.store.base import Cooldown, Store

T = TypeVar("T")
logger = logging.getLogger(__name__)


class ProviderSource(Protocol):
    """What the chain needs from `providers.factory.ModelResolver`."""

    def resolve(self, ref: str, provider: str | None = None) -> ProviderSpec: ...

    def provider(self, ref: str, provider: str | None = None) -> Provider: ...

    def default_chain(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    """In-place retries of a retryable error, for a chain of one model only."""
    backoff_base: float = 1.0
    """Seconds before the first in-place retry; doubled for each further retry."""
    max_retry_after: float = 30.0
    """A longer `Retry-After` is not waited for: the model goes into cooldown instead."""
    rate_limit_cooldown: float = 3600.0
    """Cooldown after a 429 that did not say how long to wait."""
    failure_cooldown: float = 300.0
    """Cooldown after any other retryable error."""


def describe_error(error: ProviderError) -> str:
    """One line for users and logs: the error's message, prefixed with its HTTP status when it has one."""
    if error.status is not None and str(error.status) not in error.message:
        return f"HTTP {error.status}: {error.message}"
    return error.message


class CircuitBreaker:
    """Per-model cooldowns, stored in the `Store` so that every process sees them. Only a model's first lookup
    waits for the store (concurrent first lookups share one read); after that the last read answers at once
    (this process's own failures and successes apply immediately) and, once it is `refresh_seconds` old, one
    read in the background renews it, so another process's new cooldown is seen within about that time. The
    store serialises its work, and a read queued behind a batch of usage rows used to stall every request of
    that moment. A failed read counts as "no cooldown": a database problem must not stop the model calls."""

    def __init__(
        self,
        store: Store,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        refresh_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self._seen: dict[str, tuple[float, Cooldown | None]] = {}
        self._reads: dict[str, asyncio.Task[None]] = {}

    async def cooldown(self, label: str) -> Cooldown | None:
        now = self.clock()
        seen = self._seen.get(label)
        if seen is None:
            await asyncio.shield(self._read(label, None))
            seen = self._seen.get(label) or (now, None)
        elif now - seen[0] >= self.refresh_seconds:
            self._read(label, seen)
        cooldown = seen[1]
        if cooldown is None or cooldown.until <= now:
            return None
        return cooldown

    def _read(self, label: str, stale: tuple[float, Cooldown | None] | None) -> asyncio.Task[None]:
        """The store read of `label` in flight, started if there is none."""
        task = self._reads.get(label)
        if task is None:
            task = self._reads[label] = asyncio.get_running_loop().create_task(self._refresh(label, stale))
        return task

    async def _refresh(self, label: str, stale: tuple[float, Cooldown | None] | None) -> None:
        try:
            read_at = self.clock()
            fresh = await self.store.get_cooldown(label)
            if self._seen.get(label) is stale:  # a failure or success recorded meanwhile is newer than this read
                self._seen[label] = (read_at, fresh)
        except Exception as exc:
            logger.warning("could not read the cooldown of %s: %s", label, exc)
        finally:
            self._reads.pop(label, None)

    async def aclose(self) -> None:
        """Wait for the reads in flight (call before closing the store)."""
        if self._reads:
            await asyncio.wait(list(self._reads.values()))

    def cooldown_seconds(self, error: ProviderError) -> float:
        if isinstance(error, RateLimitError):
            return error.retry_after if error.retry_after is not None else self.policy.rate_limit_cooldown
        return self.policy.failure_cooldown

    async def record_failure(self, label: str, error: ProviderError) -> Cooldown:
        until = self.clock() + self.cooldown_seconds(error)
        reason = describe_error(error)
        await self.store.set_cooldown(label, until, reason)
        cooldown = Cooldown(label, until, reason)
        self._seen[label] = (self.clock(), cooldown)
        return cooldown

    async def record_success(self, label: str) -> None:
        await self.store.clear_cooldown(label)
        self._seen[label] = (self.clock(), None)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one model. `number` counts the tries of this model within the walk, from 1."""

    label: str
    spec: ProviderSpec
    provider: Provider
    number: int = 1
    cooled_down: bool = False
    """The model was in cooldown and is tried as a last-resort probe."""


@dataclass(slots=True)
class _Link:
    ref: str
    spec: ProviderSpec
    provider: Provider | None = None
    """Built on first use and kept for the walks of the same turn (resolving costs more than a step's logic)."""


@dataclass
class ChainWalk:
    """The walk along a chain for one provider call: `start()`, then `failed()` after each error (returns the
    next attempt or raises), `succeeded()` once it worked. `fallbacks` lists every failure that led to
    another attempt."""

    source: ProviderSource
    breaker: CircuitBreaker
    links: list[_Link]
    provider_name: str | None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    fallbacks: list[FallbackRecord] = field(default_factory=list)
    _reasons: dict[str, str] = field(default_factory=dict)
    _position: int = 0

    @property
    def policy(self) -> RetryPolicy:
        return self.breaker.policy

    def again(self) -> ChainWalk:
        """A fresh walk along the same (already resolved) chain, for the next provider call."""
        return ChainWalk(self.source, self.breaker, self.links, self.provider_name, self.sleep)

    async def start(self) -> Attempt:
        attempt = await self._next_available(0)
        if attempt is not None:
            return attempt
        return await self._probe()

    async def failed(self, attempt: Attempt, error: ProviderError) -> Attempt:
        """The next attempt after `error`; raises `error` when it is final, or `AllModelsExhaustedError`."""
        if not error.retryable:
            raise error
        reason = describe_error(error)
        delay = self._retry_delay(attempt, error)
        if delay is not None:
            self.fallbacks.append(FallbackRecord(attempt.label, reason))
            await self.sleep(delay)
            return Attempt(attempt.label, attempt.spec, attempt.provider, attempt.number + 1, attempt.cooled_down)
        await self.breaker.record_failure(attempt.label, error)
        self._reasons[attempt.label] = reason
        following = await self._next_available(self._position + 1)
        if following is None:
            raise self._exhausted(error)
        self.fallbacks.append(FallbackRecord(attempt.label, reason))
        return following

    async def succeeded(self, attempt: Attempt) -> None:
        if attempt.cooled_down:
            await self.breaker.record_success(attempt.label)

    def _retry_delay(self, attempt: Attempt, error: ProviderError) -> float | None:
        if len(self.links) != 1 or attempt.number > self.policy.max_retries:
            return None
        backoff: float = self.policy.backoff_base * (1 << (attempt.number - 1))
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        if retry_after is None:
            return backoff
        return retry_after if retry_after <= self.policy.max_retry_after else None

    async def _next_available(self, start: int) -> Attempt | None:
        for index in range(start, len(self.links)):
            link = self.links[index]
            cooldown = await self.breaker.cooldown(link.spec.label)
            if cooldown is not None:
                left = max(0.0, cooldown.until - self.breaker.clock())
                self._reasons[link.spec.label] = f"cooling down for {left:.0f} s more after: {cooldown.reason}"
                continue
            self._position = index
            return self._attempt(link)
        return None

    async def _probe(self) -> Attempt:
        ends: list[tuple[float, int]] = []
        for index, link in enumerate(self.links):
            cooldown = await self.breaker.cooldown(link.spec.label)
            ends.append((cooldown.until if cooldown else 0.0, index))
        _, index = min(ends)
        self._position = len(self.links)  # a probe is the walk's only attempt
        return self._attempt(self.links[index], cooled_down=True)

    def _attempt(self, link: _Link, *, cooled_down: bool = False) -> Attempt:
        if link.provider is None:
            link.provider = self.source.provider(link.ref, self.provider_name)
        return Attempt(link.spec.label, link.spec, link.provider, cooled_down=cooled_down)

    def _exhausted(self, error: ProviderError) -> ProviderError | AllModelsExhaustedError:
        if len(self.links) == 1:
            return error
        attempts = [(link.spec.label, self._reasons.get(link.spec.label, "not tried")) for link in self.links]
        return AllModelsExhaustedError(attempts, last_error=error)


_MAX_RESOLVED_CHAINS = 256

OnFallback = Callable[[str, str, str], Awaitable[None]]
"""Called with (from_label, to_label, error) when a call moves on (or retries in place)."""


class FallbackChain:
    """Resolves a chain's references once and walks it for each call."""

    def __init__(
        self,
        source: ProviderSource,
        breaker: CircuitBreaker,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.source = source
        self.breaker = breaker
        self.sleep = sleep
        self._resolved: dict[tuple[tuple[str, ...], str | None], list[_Link]] = {}

    def walk(self, refs: Sequence[str], provider: str | None = None) -> ChainWalk:
        """A new walk; raises `ConfigError` for a reference that names no model (before any call is made)."""
        chain = tuple(refs) or self.source.default_chain()
        if not chain:
            raise ConfigError("no model to use: set default_model in config.toml or pass -m MODEL")
        links = self._resolved.get((chain, provider))
        if links is None:
            links = self._resolve(chain, provider)
            if len(self._resolved) >= _MAX_RESOLVED_CHAINS:
                self._resolved.clear()
            self._resolved[(chain, provider)] = links
        return ChainWalk(self.source, self.breaker, links, provider, self.sleep)

    def _resolve(self, chain: tuple[str, ...], provider: str | None) -> list[_Link]:
        """The chain's distinct models, in order (the configuration is immutable, so this is cached)."""
        links: list[_Link] = []
        seen: set[str] = set()
        for ref in chain:
            spec = self.source.resolve(ref, provider)
            if spec.label not in seen:
                seen.add(spec.label)
                links.append(_Link(ref, spec))
        return links

    async def call(
        self,
        walk: ChainWalk,
        run: Callable[[Attempt], Awaitable[T]],
        on_fallback: OnFallback | None = None,
    ) -> tuple[T, Attempt]:
        """Run `run(attempt)` along the walk until one attempt succeeds; returns its value and the attempt."""
        attempt = await walk.start()
        while True:
            try:
                value = await run(attempt)
            except ProviderError as error:
                following = await walk.failed(attempt, error)
                if on_fallback is not None:
                    await on_fallback(attempt.label, following.label, describe_error(error))
                attempt = following
                continue
            await walk.succeeded(attempt)
            return value, attempt
