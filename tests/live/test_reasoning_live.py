"""Reasoning tool loops against the real services: the second step must not be refused for missing reasoning
(Gemini 3's "thought_signature" 400, Claude's "Expected `thinking`" 400). Opt-in: `T_KOMA_LIVE_TESTS=1` plus
`OPENROUTER_API_KEY` and/or `ANTHROPIC_API_KEY` (`T_KOMA_LIVE_REASONING_MODEL` picks the OpenRouter model). The
environment is read at import, before the root conftest clears the keys."""

from __future__ import annotations

import os

import pytest

from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ProviderResponse,
    ReasoningConfig,
    StreamEvent,
    ToolDefinition,
    ToolResultBlock,
)
from t_koma.providers.anthropic import AnthropicProvider
from t_koma.providers.base import Provider, ProviderSpec
from t_koma.providers.openrouter import OpenRouterProvider

_LIVE = os.environ.get("T_KOMA_LIVE_TESTS") == "1"
_OPENROUTER_KEY = os.environ.get("OPENROUTER_API_KEY")
_ANTHROPIC_KEY = os.environ.get("ANTHROPIC_API_KEY")
_OPENROUTER_MODEL = os.environ.get("T_KOMA_LIVE_REASONING_MODEL") or "google/gemini-3-pro-preview"

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

WEATHER_TOOL = ToolDefinition(
    name="get_weather",
    description="The current weather of a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def _tool_loop(provider: Provider, stream: bool) -> str:
    """Ask, answer the tool call, and return the final text; fails if either step is refused."""
    history = [Message.user("What is the weather in Paris? Use the tool, then answer in one sentence.")]
    request = ConversationRequest(messages=tuple(history), tools=(WEATHER_TOOL,))
    first = await _call(provider, request, stream)
    assert first.tool_calls, f"no tool call: {first.text!r}"
    assert first.reasoning, "the model returned no reasoning to send back"
    history.append(first.as_message())
    history.append(Message("user", tuple(ToolResultBlock(c.id, "Sunny, 21 °C") for c in first.tool_calls)))
    second = await _call(provider, request.with_messages(history), stream)
    return second.text


async def _call(provider: Provider, request: ConversationRequest, stream: bool) -> ProviderResponse:
    if not stream:
        return await provider.complete(request)
    events: list[StreamEvent] = [event async for event in provider.stream(request)]
    finish = events[-1]
    assert isinstance(finish, Finish)
    return finish.response


@pytest.mark.skipif(not (_LIVE and _OPENROUTER_KEY), reason="live test: set T_KOMA_LIVE_TESTS=1 and OPENROUTER_API_KEY")
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_live_openrouter_reasoning_tool_loop(stream: bool) -> None:
    spec = ProviderSpec(
        kind="openrouter",
        model=_OPENROUTER_MODEL,
        base_url=os.environ.get("OPENROUTER_BASE_URL") or "https://openrouter.ai/api/v1",
        api_key=_OPENROUTER_KEY,
        max_tokens=4000,
        reasoning=ReasoningConfig(effort="low"),
    )
    provider = OpenRouterProvider(spec)
    try:
        answer = await _tool_loop(provider, stream)
        assert "21" in answer or "sunny" in answer.lower()
    finally:
        await provider.aclose()


@pytest.mark.skipif(not (_LIVE and _ANTHROPIC_KEY), reason="live test: set T_KOMA_LIVE_TESTS=1 and ANTHROPIC_API_KEY")
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_live_claude_thinking_tool_loop(stream: bool) -> None:
    spec = ProviderSpec(
        kind="anthropic",
        model=os.environ.get("T_KOMA_LIVE_ANTHROPIC_MODEL") or "claude-sonnet-4-5",
        base_url=os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
        api_key=_ANTHROPIC_KEY,
        reasoning=ReasoningConfig(max_tokens=1024),
    )
    provider = AnthropicProvider(spec)
    try:
        answer = await _tool_loop(provider, stream)
        assert "21" in answer or "sunny" in answer.lower()
    finally:
        await provider.aclose()
