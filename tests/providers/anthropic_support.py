"""Shared by the native Anthropic client's tests: a spec pointing at the fake Messages API, one-message requests,
collecting a stream, and reading back what the fake received."""

from __future__ import annotations

from typing import Any

from t_koma.messages import ConversationRequest, Finish, Message, ProviderResponse, StreamEvent, ToolDefinition
from t_koma.providers.anthropic import AnthropicProvider
from t_koma.providers.base import ProviderSpec
from tests.fakes.anthropic import TEST_KEY, FakeUpstream

MODEL = "claude-sonnet-4-5"
SHELL_TOOL = ToolDefinition(
    name="run_shell_command",
    description="Run a shell command",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
)


def make_spec(upstream: FakeUpstream, **overrides: Any) -> ProviderSpec:
    settings: dict[str, Any] = {"kind": "anthropic", "model": MODEL, "base_url": upstream.base_url, "api_key": TEST_KEY}
    settings.update(overrides)
    return ProviderSpec(**settings)


def ask(text: str = "Hi", **fields: Any) -> ConversationRequest:
    return ConversationRequest(messages=(Message.user(text),), **fields)


async def collect(provider: AnthropicProvider, request: ConversationRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


def final(events: list[StreamEvent]) -> ProviderResponse:
    assert isinstance(events[-1], Finish), "a successful stream ends with Finish"
    return events[-1].response


def sent_body(upstream: FakeUpstream, number: int = 0) -> dict[str, Any]:
    body = upstream.app.message_requests[number].body
    assert body is not None
    return body
