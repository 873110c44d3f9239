"""A finished stream closes its own async generators: none is left for the event loop's async-generator finaliser,
which would cost a thread-safe wake-up (two system calls) and a task for every streamed response."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator
from typing import Any

from t_koma.messages import ConversationRequest, Finish, Message
from t_koma.providers.anthropic import AnthropicProvider
from t_koma.providers.base import Provider, ProviderSpec
from t_koma.providers.openrouter import OpenRouterProvider
from tests.fakes.anthropic import TEST_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeUpstream as AnthropicUpstream
from tests.fakes.openrouter import TEST_KEY as OPENROUTER_KEY
from tests.fakes.openrouter import FakeUpstream as OpenRouterUpstream


async def finalised_while_streaming(provider: Provider) -> list[str]:
    """Stream one reply to the end; return the names of the async generators the loop's finaliser had to close
    meanwhile (the loop installs its hooks when it starts running, so they are wrapped here, inside it)."""
    names: list[str] = []
    hooks = sys.get_asyncgen_hooks()
    original = hooks.finalizer
    assert original is not None

    def finalizer(agen: AsyncGenerator[Any, Any]) -> None:
        names.append(agen.__qualname__)
        original(agen)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        events = [event async for event in provider.stream(ConversationRequest(messages=(Message.user("Hi"),)))]
        await asyncio.sleep(0)  # what a finaliser scheduled would run now
    finally:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=original)
        await provider.aclose()
    assert isinstance(events[-1], Finish)
    return names


async def test_an_openrouter_stream_leaves_nothing_to_the_finaliser(fake_openrouter: OpenRouterUpstream) -> None:
    spec = ProviderSpec("openrouter", "openai/gpt-4o-mini", fake_openrouter.base_url, api_key=OPENROUTER_KEY)
    assert await finalised_while_streaming(OpenRouterProvider(spec)) == []


async def test_an_anthropic_stream_leaves_nothing_to_the_finaliser(fake_anthropic: AnthropicUpstream) -> None:
    spec = ProviderSpec("anthropic", "claude-sonnet-4-5", fake_anthropic.base_url, api_key=ANTHROPIC_KEY)
    assert await finalised_while_streaming(AnthropicProvider(spec)) == []
