"""The fallback chain end to end: real HTTP errors from the fake upstreams move a turn to the next model, the
cooldown lands in the SQLite file and a second engine (another process, in effect) honours it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from t_koma.engine.engine import Engine
from t_koma.engine.events import FallbackEvent, ServedBy, TextDeltaEvent, TurnRequest
from t_koma.errors import AllModelsExhaustedError, AuthenticationError, ModelNotFoundError, ProviderError
from t_koma.messages import ConversationRequest, Finish, Message, TextBlock, TextDelta
from tests.engine.support import Events, open_engine, query
from tests.fakes.anthropic import FakeUpstream as AnthropicUpstream
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import error_reply, midstream_error_reply, text_reply


@pytest.fixture
async def engine(fake_openrouter: FakeUpstream) -> AsyncIterator[Engine]:
    opened = await open_engine()
    yield opened
    await opened.close()


def models_asked(fake: FakeUpstream) -> list[str]:
    return [str((request.body or {}).get("model")) for request in fake.app.chat_requests]


def cooldowns(engine: Engine) -> dict[str, tuple[float, str]]:
    rows = query(engine.config.database_path, "SELECT model_key, until, reason FROM cooldowns")
    return {key: (until, reason) for key, until, reason in rows}


@pytest.mark.parametrize(
    ("reply", "cooldown"),
    [
        (error_reply(429, "Rate limited", headers={"Retry-After": "7"}), 7),
        (error_reply(502, "Bad gateway"), 300),
        (error_reply(429, "Rate limited"), 3600),
    ],
)
async def test_a_retryable_error_moves_the_turn_to_the_next_model_and_cools_the_first_down(
    engine: Engine, fake_openrouter: FakeUpstream, reply: object, cooldown: float
) -> None:
    fake_openrouter.app.enqueue(reply, text_reply("From beta."))  # type: ignore[arg-type]
    events = Events()
    before = time.time()

    result = await engine.run_turn(TurnRequest("Hi", chain=("alpha", "beta")), events)

    assert result.text == "From beta." and result.model == "test/beta"
    assert models_asked(fake_openrouter) == ["test/alpha", "test/beta"]
    [moved] = events.of(FallbackEvent)
    assert (moved.from_model, moved.to_model) == ("alpha", "beta")
    assert [record.model for record in result.fallbacks] == ["alpha"]
    until, _ = cooldowns(engine)["alpha"]
    assert before + cooldown - 1 <= until <= time.time() + cooldown


async def test_a_second_engine_honours_the_cooldown(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(error_reply(502, "Bad gateway"), text_reply("beta 1"), text_reply("beta 2"))
    await engine.run_turn(TurnRequest("one"))

    other = await open_engine()
    try:
        result = await other.run_turn(TurnRequest("two"))
    finally:
        await other.close()

    assert result.text == "beta 2"
    assert models_asked(fake_openrouter) == ["test/alpha", "test/beta", "test/beta"]
    assert result.fallbacks == ()


async def test_overloaded_falls_over_to_another_provider(
    fake_openrouter: FakeUpstream, fake_anthropic: AnthropicUpstream
) -> None:
    fake_openrouter.app.enqueue(error_reply(529, "Overloaded"))
    fake_anthropic.app.enqueue(text_reply("Claude here."))
    engine = await open_engine()
    try:
        result = await engine.run_turn(TurnRequest("Hi", chain=("alpha", "claude")))
    finally:
        await engine.close()

    assert (result.provider, result.text) == ("anthropic", "Claude here.")
    assert "alpha" in cooldowns(engine)


async def test_a_stream_failing_midway_falls_over_and_its_partial_text_is_dropped(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(midstream_error_reply("doomed partial"), text_reply("clean answer"))
    events = Events()

    result = await engine.run_turn(TurnRequest("Hi"), events)

    kinds = [type(e).__name__ for e in events.events]
    fallback_at = kinds.index("FallbackEvent")
    before = "".join(e.text for e in events.events[:fallback_at] if isinstance(e, TextDeltaEvent))
    after = "".join(e.text for e in events.events[fallback_at:] if isinstance(e, TextDeltaEvent))
    assert (before, after) == ("doomed partial", "clean answer")
    stored = await engine.store.load_messages(result.session_id)
    assert [m.content for m in stored] == [(TextBlock("Hi"),), (TextBlock("clean answer"),)]
    assert result.fallbacks[0].model == "alpha" and "Provider disconnected" in result.fallbacks[0].error


@pytest.mark.parametrize(
    ("status", "error"), [(401, AuthenticationError), (404, ModelNotFoundError), (403, ProviderError)]
)
async def test_a_non_retryable_error_ends_the_turn_without_fallback(
    engine: Engine, fake_openrouter: FakeUpstream, status: int, error: type[Exception]
) -> None:
    fake_openrouter.app.enqueue(error_reply(status, "No."), text_reply("never"))

    with pytest.raises(error):
        await engine.run_turn(TurnRequest("Hi"))

    assert models_asked(fake_openrouter) == ["test/alpha"]
    assert cooldowns(engine) == {}
    database = engine.config.database_path
    assert query(database, "SELECT role FROM messages") == [("user",)]
    assert query(database, "SELECT status FROM turns") == [("failed",)]


async def test_every_model_failing_is_one_error_listing_them(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(error_reply(502, "Bad gateway"), error_reply(503, "Unavailable"))

    with pytest.raises(AllModelsExhaustedError) as raised:
        await engine.run_turn(TurnRequest("Hi"))

    assert [label for label, _ in raised.value.attempts] == ["alpha", "beta"]
    assert "Bad gateway" in raised.value.attempts[0][1] and "Unavailable" in raised.value.attempts[1][1]
    assert set(cooldowns(engine)) == {"alpha", "beta"}


async def test_a_single_model_chain_retries_in_place_honouring_retry_after(fake_openrouter: FakeUpstream) -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    engine = await open_engine(sleep=sleep)
    fake_openrouter.app.enqueue(error_reply(429, "Rate limited", headers={"Retry-After": "2"}), text_reply("ok"))
    try:
        result = await engine.run_turn(TurnRequest("Hi", chain=("alpha",)))
    finally:
        await engine.close()

    assert result.text == "ok"
    assert delays == [2.0]
    assert models_asked(fake_openrouter) == ["test/alpha", "test/alpha"]
    [record] = result.fallbacks
    assert record.model == "alpha" and "Rate limited" in record.error


# --- pass-through (/v1) ----------------------------------------------------------------------------------

REQUEST = ConversationRequest(messages=(Message.user("Hi"),))


async def test_complete_falls_over_and_logs_usage_without_a_session(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(error_reply(502, "Bad gateway"), text_reply("From beta."))

    response, served = await engine.complete(("alpha", "beta"), REQUEST)

    assert response.text == "From beta."
    assert served == ServedBy("openrouter", "test/beta", "beta")
    await engine.flush_usage()  # pass-through usage rows are written in batches
    rows = query(engine.config.database_path, "SELECT session_id, model, input_tokens FROM usage_log")
    assert rows == [(None, "test/beta", 12)]


async def test_stream_falls_over_only_before_the_first_text(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(error_reply(429, "Rate limited"), text_reply("From beta."))

    events = [event async for event in engine.stream(("alpha", "beta"), REQUEST)]

    assert isinstance(events[0], ServedBy) and events[0].label == "alpha"
    assert isinstance(events[1], FallbackEvent) and events[1].to_model == "beta"
    assert isinstance(events[2], ServedBy) and events[2].label == "beta"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "From beta."
    assert isinstance(events[-1], Finish)


async def test_a_stream_failing_after_text_raises_with_the_partial_text(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(midstream_error_reply("half an answer"))

    with pytest.raises(ProviderError) as raised:
        async for _ in engine.stream(("alpha", "beta"), REQUEST):
            pass

    assert raised.value.partial_text == "half an answer"
    assert models_asked(fake_openrouter) == ["test/alpha"]
