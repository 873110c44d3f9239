"""The OpenRouter client against the real service. Opt-in: `T_KOMA_LIVE_TESTS=1` and `OPENROUTER_API_KEY`
(`T_KOMA_LIVE_OPENROUTER_MODEL` picks the model). The root conftest clears keys for every test, so the
environment is read here, when the module is imported."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from t_koma.errors import AuthenticationError, InvalidModelError
from t_koma.messages import ConversationRequest, Finish, Message, TextDelta, ToolCallEvent, ToolDefinition
from t_koma.providers.base import ProviderSpec
from t_koma.providers.catalog import ModelCatalog
from t_koma.providers.openrouter import OpenRouterProvider

_KEY = os.environ.get("OPENROUTER_API_KEY")
_BASE_URL = os.environ.get("OPENROUTER_BASE_URL") or "https://openrouter.ai/api/v1"
_MODEL = os.environ.get("T_KOMA_LIVE_OPENROUTER_MODEL") or "openai/gpt-4o-mini"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        os.environ.get("T_KOMA_LIVE_TESTS") != "1" or not _KEY,
        reason="live test: set T_KOMA_LIVE_TESTS=1 and OPENROUTER_API_KEY",
    ),
    pytest.mark.timeout(120),
]

ECHO_TOOL = ToolDefinition(
    name="echo",
    description="Echo a word back.",
    parameters={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
)


def _spec(api_key: str | None = _KEY, model: str = _MODEL) -> ProviderSpec:
    return ProviderSpec(
        kind="openrouter", model=model, base_url=_BASE_URL, api_key=api_key, max_tokens=64, app_name="t-koma tests"
    )


@pytest.fixture
async def provider() -> AsyncIterator[OpenRouterProvider]:
    client = OpenRouterProvider(_spec())
    yield client
    await client.aclose()


async def test_live_complete_reports_usage_and_cost(provider: OpenRouterProvider) -> None:
    response = await provider.complete(ConversationRequest(messages=(Message.user("Reply with the word: pong"),)))
    assert "pong" in response.text.lower()
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.cost is not None
    assert response.upstream_provider


async def test_live_stream(provider: OpenRouterProvider) -> None:
    request = ConversationRequest(messages=(Message.user("Count from 1 to 5, digits separated by spaces."),))
    events = [event async for event in provider.stream(request)]
    assert any(isinstance(event, TextDelta) for event in events)
    finish = events[-1]
    assert isinstance(finish, Finish) and "3" in finish.response.text
    assert finish.response.usage is not None and finish.response.usage.cost is not None


async def test_live_tool_call(provider: OpenRouterProvider) -> None:
    request = ConversationRequest(
        messages=(Message.user("Call the echo tool with the word 'koma'."),), tools=(ECHO_TOOL,), tool_choice="echo"
    )
    calls = [event.call async for event in provider.stream(request) if isinstance(event, ToolCallEvent)]
    assert calls and calls[0].name == "echo" and calls[0].input.get("word") == "koma" and calls[0].id


async def test_live_catalog_and_validation(provider: OpenRouterProvider, tmp_path: Path) -> None:
    catalog = ModelCatalog(provider, tmp_path / "models.json")
    models = await catalog.models()
    assert len(models) > 50 and any(model.id == _MODEL for model in models)
    assert await catalog.validate(_MODEL + ":nitro") is not None
    with pytest.raises(InvalidModelError):
        await catalog.validate("openai/no-such-model-t-koma")


async def test_live_bad_key_is_an_authentication_error() -> None:
    client = OpenRouterProvider(_spec(api_key="sk-or-v1-invalid-t-koma-test"))
    try:
        with pytest.raises(AuthenticationError) as caught:
            await client.complete(ConversationRequest(messages=(Message.user("hi"),)))
        assert "sk-or-v1-invalid-t-koma-test" not in caught.value.message
    finally:
        await client.aclose()
