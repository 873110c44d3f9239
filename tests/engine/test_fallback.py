"""The fallback chain walker and the circuit breaker, with scripted in-process providers and a real SQLite store.
(End-to-end fallback over HTTP against the fake upstreams is in test_engine_fallback.py.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from t_koma.engine.fallback import CircuitBreaker, FallbackChain, RetryPolicy
from t_koma.errors import (
    AllModelsExhaustedError,
    AuthenticationError,
    ConfigError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    RateLimitError,
    UpstreamError,
)
from t_koma.messages import ConversationRequest, Finish, ModelInfo, ProviderResponse, StreamEvent, TextBlock
from t_koma.providers.base import Provider, ProviderSpec
from t_koma.store.sqlite import SqliteStore


class ScriptedProvider(Provider):
    """Plays a script of responses and errors, one per call."""

    def __init__(self, spec: ProviderSpec, *script: ProviderResponse | ProviderError) -> None:
        super().__init__(spec)
        self.script = list(script)
        self.calls = 0

    async def complete(self, request: ConversationRequest) -> ProviderResponse:
        self.calls += 1
        item = self.script.pop(0) if self.script else answer(self.spec.model)
        if isinstance(item, ProviderError):
            raise item
        return item

    async def stream(self, request: ConversationRequest) -> AsyncIterator[StreamEvent]:
        yield Finish(await self.complete(request))

    async def list_models(self) -> list[ModelInfo]:
        return []


class ScriptedSource:
    """A `ProviderSource` over scripted providers, by alias."""

    def __init__(self, *providers: ScriptedProvider) -> None:
        self.providers = {p.spec.label: p for p in providers}

    def resolve(self, ref: str, provider: str | None = None) -> ProviderSpec:
        if ref not in self.providers:
            raise ConfigError(f"unknown model alias {ref!r}")
        return self.providers[ref].spec

    def provider(self, ref: str, provider: str | None = None) -> Provider:
        return self.providers[ref]

    def default_chain(self) -> tuple[str, ...]:
        return tuple(self.providers)


def answer(model: str) -> ProviderResponse:
    return ProviderResponse("r1", model, (TextBlock(f"answer from {model}"),), None, "stop")


def model(alias: str, *script: ProviderResponse | ProviderError) -> ScriptedProvider:
    return ScriptedProvider(ProviderSpec("openrouter", f"test/{alias}", "http://127.0.0.1:9", alias=alias), *script)


class Clock:
    """Starts at the real time (the store drops cooldowns that ended by its own clock) and only moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "koma.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
def delays() -> Iterator[list[float]]:
    yield []


def make_chain(
    store: SqliteStore, source: ScriptedSource, delays: list[float], clock: Clock | None = None
) -> FallbackChain:
    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    breaker = CircuitBreaker(store, RetryPolicy(backoff_base=0.25), clock or Clock())
    return FallbackChain(source, breaker, sleep=sleep)


async def run(chain: FallbackChain, refs: tuple[str, ...]) -> tuple[str, str, list[tuple[str, str, str]]]:
    moves: list[tuple[str, str, str]] = []

    async def on_fallback(from_label: str, to_label: str, error: str) -> None:
        moves.append((from_label, to_label, error))

    walk = chain.walk(refs)
    response, attempt = await chain.call(walk, lambda a: a.provider.complete(ConversationRequest()), on_fallback)
    return response.text, attempt.label, moves


async def test_a_retryable_error_cools_the_model_down_and_moves_to_the_next(
    store: SqliteStore, delays: list[float]
) -> None:
    clock = Clock()
    a = model("a", UpstreamError("Bad gateway", status=502))
    b = model("b")
    chain = make_chain(store, ScriptedSource(a, b), delays, clock)

    text, label, moves = await run(chain, ("a", "b"))

    assert (text, label) == ("answer from test/b", "b")
    assert moves == [("a", "b", "HTTP 502: Bad gateway")]
    cooldown = await store.get_cooldown("a")
    assert cooldown is not None and cooldown.until == clock.now + 300
    assert delays == []  # a chain of several models never retries in place


async def test_cooled_down_models_are_skipped_by_the_next_walk(store: SqliteStore, delays: list[float]) -> None:
    a, b = model("a", RateLimitError("Rate limited", status=429)), model("b")
    chain = make_chain(store, ScriptedSource(a, b), delays)
    await run(chain, ("a", "b"))

    _, label, moves = await run(chain, ("a", "b"))

    assert (label, moves) == ("b", [])
    assert a.calls == 1 and b.calls == 2


async def test_rate_limit_cooldown_is_retry_after_when_given_else_one_hour(
    store: SqliteStore, delays: list[float]
) -> None:
    clock = Clock()
    a = model("a", RateLimitError("slow down", status=429, retry_after=42))
    b = model("b", RateLimitError("slow down", status=429))
    c = model("c")
    chain = make_chain(store, ScriptedSource(a, b, c), delays, clock)

    await run(chain, ("a", "b", "c"))

    cooldown_a, cooldown_b = await store.get_cooldown("a"), await store.get_cooldown("b")
    assert cooldown_a is not None and cooldown_a.until == clock.now + 42
    assert cooldown_b is not None and cooldown_b.until == clock.now + 3600


async def test_a_cooldown_expires(store: SqliteStore, delays: list[float]) -> None:
    clock = Clock()
    a, b = model("a", OverloadedError("Overloaded", status=529)), model("b")
    chain = make_chain(store, ScriptedSource(a, b), delays, clock)
    await run(chain, ("a", "b"))

    clock.now += 301
    _, label, _ = await run(chain, ("a", "b"))

    assert label == "a"


@pytest.mark.parametrize(
    "error", [AuthenticationError("bad key", status=401), ModelNotFoundError("no such model", status=404)]
)
async def test_a_non_retryable_error_ends_the_walk_at_once(
    store: SqliteStore, delays: list[float], error: ProviderError
) -> None:
    a, b = model("a", error), model("b")
    chain = make_chain(store, ScriptedSource(a, b), delays)

    with pytest.raises(type(error)):
        await run(chain, ("a", "b"))

    assert b.calls == 0
    assert await store.get_cooldown("a") is None


async def test_all_models_failing_lists_each_model_and_why(store: SqliteStore, delays: list[float]) -> None:
    a = model("a", UpstreamError("Bad gateway", status=502))
    b = model("b", RateLimitError("Rate limited", status=429))
    chain = make_chain(store, ScriptedSource(a, b), delays)

    with pytest.raises(AllModelsExhaustedError) as raised:
        await run(chain, ("a", "b"))

    assert raised.value.attempts == (("a", "HTTP 502: Bad gateway"), ("b", "HTTP 429: Rate limited"))
    assert raised.value.exit_code == 5
    assert raised.value.to_dict()["error"]["type"] == "all_models_exhausted"
    assert "a: HTTP 502: Bad gateway" in raised.value.message


async def test_a_single_model_retries_with_backoff_then_gives_up_with_its_own_error(
    store: SqliteStore, delays: list[float]
) -> None:
    a = model("a", *[UpstreamError("Bad gateway", status=502)] * 3)
    chain = make_chain(store, ScriptedSource(a), delays)

    with pytest.raises(UpstreamError):
        await run(chain, ("a",))

    assert a.calls == 3
    assert delays == [0.25, 0.5]
    assert await store.get_cooldown("a") is not None


async def test_a_single_model_retry_honours_a_short_retry_after(store: SqliteStore, delays: list[float]) -> None:
    a = model("a", RateLimitError("Rate limited", status=429, retry_after=3))
    chain = make_chain(store, ScriptedSource(a), delays)

    text, _, moves = await run(chain, ("a",))

    assert text == "answer from test/a"
    assert delays == [3]
    assert moves == [("a", "a", "HTTP 429: Rate limited")]


async def test_a_retry_after_beyond_thirty_seconds_is_not_waited_for(store: SqliteStore, delays: list[float]) -> None:
    a = model("a", RateLimitError("Rate limited", status=429, retry_after=120))
    chain = make_chain(store, ScriptedSource(a), delays)

    with pytest.raises(RateLimitError):
        await run(chain, ("a",))

    assert delays == [] and a.calls == 1


async def test_when_every_model_cools_down_the_first_to_recover_is_probed_and_success_clears_it(
    store: SqliteStore, delays: list[float]
) -> None:
    clock = Clock()
    await store.set_cooldown("a", clock.now + 600, "earlier failure")
    await store.set_cooldown("b", clock.now + 60, "earlier failure")
    a, b = model("a"), model("b")
    chain = make_chain(store, ScriptedSource(a, b), delays, clock)

    _, label, _ = await run(chain, ("a", "b"))

    assert label == "b"
    assert await store.get_cooldown("b") is None
    assert await store.get_cooldown("a") is not None


async def test_a_failed_probe_reports_every_model(store: SqliteStore, delays: list[float]) -> None:
    clock = Clock()
    await store.set_cooldown("a", clock.now + 600, "Rate limited")
    a, b = model("a", UpstreamError("still down", status=500)), model("b")
    chain = make_chain(store, ScriptedSource(a, b), delays, clock)
    await store.set_cooldown("b", clock.now + 900, "Overloaded")

    with pytest.raises(AllModelsExhaustedError) as raised:
        await run(chain, ("a", "b"))

    assert [label for label, _ in raised.value.attempts] == ["a", "b"]
    assert "still down" in raised.value.attempts[0][1]
    assert "cooling down" in raised.value.attempts[1][1]


async def test_an_unknown_reference_fails_before_any_call(store: SqliteStore, delays: list[float]) -> None:
    a = model("a")
    chain = make_chain(store, ScriptedSource(a), delays)

    with pytest.raises(ConfigError):
        chain.walk(("a", "typo"))

    assert a.calls == 0


async def test_an_empty_chain_uses_the_default_chain(store: SqliteStore, delays: list[float]) -> None:
    chain = make_chain(store, ScriptedSource(model("a"), model("b")), delays)

    _, label, _ = await run(chain, ())

    assert label == "a"
