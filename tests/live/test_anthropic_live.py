"""The Anthropic client against the real Messages API. Opt-in: `T_KOMA_LIVE_TESTS=1` and `ANTHROPIC_API_KEY`
(`T_KOMA_LIVE_ANTHROPIC_MODEL` picks the model). The root conftest clears keys for every test, so the
environment is read here, when the module is imported."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from t_koma.errors import AuthenticationError
from t_koma.messages import ConversationRequest, Finish, Message, TextDelta, ToolCallEvent, ToolDefinition
from t_koma.providers.anthropic import DEFAULT_BASE_URL, AnthropicProvider
from t_koma.providers.base import ProviderSpec

_KEY = os.environ.get("ANTHROPIC_API_KEY")
_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
_MODEL = os.environ.get("T_KOMA_LIVE_ANTHROPIC_MODEL") or "claude-haiku-4-5"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        os.environ.get("T_KOMA_LIVE_TESTS") != "1" or not _KEY,
        reason="live test: set T_KOMA_LIVE_TESTS=1 and ANTHROPIC_API_KEY",
    ),
    pytest.mark.timeout(120),
]

ECHO_TOOL = ToolDefinition(
    name="echo",
    description="Echo a word back.",
    parameters={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
)


def _spec(api_key: str | None = _KEY) -> ProviderSpec:
    return ProviderSpec(kind="anthropic", model=_MODEL, base_url=_BASE_URL, api_key=api_key, max_tokens=64)


@pytest.fixture
async def provider() -> AsyncIterator[AnthropicProvider]:
    client = AnthropicProvider(_spec())
    yield client
    await client.aclose()


async def test_live_complete(provider: AnthropicProvider) -> None:
    response = await provider.complete(ConversationRequest(messages=(Message.user("Reply with the word: pong"),)))

    assert "pong" in response.text.lower()
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0


async def test_live_stream(provider: AnthropicProvider) -> None:
    request = ConversationRequest(messages=(Message.user("Count from 1 to 5, separated by spaces."),))

    events = [event async for event in provider.stream(request)]

    assert isinstance(events[-1], Finish)
    streamed = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert streamed == events[-1].response.text and "3" in streamed


async def test_live_forced_tool_call(provider: AnthropicProvider) -> None:
    request = ConversationRequest(
        messages=(Message.user("Echo the word 'banana'."),), tools=(ECHO_TOOL,), tool_choice="echo"
    )

    calls = [event.call async for event in provider.stream(request) if isinstance(event, ToolCallEvent)]

    assert calls and calls[0].name == "echo" and calls[0].arguments_error is None
    assert "banana" in str(calls[0].input.get("word", "")).lower()


async def test_live_models(provider: AnthropicProvider) -> None:
    models = await provider.list_models()

    assert models and all(model.id.startswith("claude") for model in models)


async def test_live_bad_key_is_an_authentication_error() -> None:
    client = AnthropicProvider(_spec(api_key="sk-ant-invalid-key-for-t-koma-tests"))
    try:
        with pytest.raises(AuthenticationError) as caught:
            await client.complete(ConversationRequest(messages=(Message.user("hi"),)))
    finally:
        await client.aclose()
    assert "sk-ant-invalid-key-for-t-koma-tests" not in str(caught.value)
