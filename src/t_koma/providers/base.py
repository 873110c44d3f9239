"""The provider interface (the spec's `Provider` trait) and the settings a provider is built from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ModelInfo,
    ProviderResponse,
    ReasoningConfig,
    StreamEvent,
    SystemBlock,
    ToolChoice,
    ToolDefinition,
    limit_history,
)

ProviderKind: TypeAlias = Literal["openrouter", "anthropic", "openai_compatible"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = ("anthropic", "openrouter", "openai_compatible")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    read: float = 300.0
    """Longest silence allowed between two bytes of a response (keep-alive comments count as bytes)."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything needed to build one provider client. `api_key` never appears in repr."""

    kind: ProviderKind
    model: str
    base_url: str
    alias: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    routing: tuple[str, ...] = ()
    allow_fallbacks: bool | None = None
    max_tokens: int | None = None
    context_window: int | None = None
    reasoning: ReasoningConfig | None = None
    """The alias's `reasoning` table; a request's `ConversationRequest.reasoning` overrides it."""
    http_referer: str | None = None
    app_name: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def label(self) -> str:
        """What users see: the alias when there is one, else `kind/model`."""
        return self.alias or f"{self.kind}/{self.model}"


class Provider(ABC):
    """A model behind an upstream API. Subclasses implement `stream` and `complete`; everything else
    (the spec's `send_message` / `send_conversation`) is built on them."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.kind

    @property
    def model(self) -> str:
        return self.spec.model

    @abstractmethod
    def stream(self, request: ConversationRequest) -> AsyncIterator[StreamEvent]:
        """Stream one call (`stream: true` upstream). Yields text deltas, complete tool calls and usage, and
        ends with `Finish`. Raises a `ProviderError` (with `partial_text`) on any failure, including
        in-stream error events."""

    @abstractmethod
    async def complete(self, request: ConversationRequest) -> ProviderResponse:
        """One non-streaming call (`stream: false` upstream)."""

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]:
        """The upstream's model catalog, in the upstream's order."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def send_message(self, content: str) -> ProviderResponse:
        return await self.send_conversation(None, [], [], content, None, None)

    async def send_conversation(
        self,
        system: Sequence[SystemBlock] | None,
        history: Sequence[Message],
        tools: Sequence[ToolDefinition],
        new_message: str | None,
        message_limit: int | None,
        tool_choice: ToolChoice | None,
        *,
        stream: bool = False,
    ) -> ProviderResponse:
        request = build_request(system, history, tools, new_message, message_limit, tool_choice, self.spec.max_tokens)
        if not stream:
            return await self.complete(request)
        async for event in self.stream(request):
            if isinstance(event, Finish):
                return event.response
        raise AssertionError("provider stream ended without Finish")


def build_request(
    system: Sequence[SystemBlock] | None,
    history: Sequence[Message],
    tools: Sequence[ToolDefinition],
    new_message: str | None,
    message_limit: int | None,
    tool_choice: ToolChoice | None,
    max_tokens: int | None = None,
) -> ConversationRequest:
    """The trait's arguments as one request: history limited (never splitting a call from its result),
    then the new user message appended."""
    messages = limit_history(history, message_limit)
    if new_message is not None:
        messages.append(Message.user(new_message))
    return ConversationRequest(
        system=tuple(system or ()),
        messages=tuple(messages),
        tools=tuple(tools),
        tool_choice=tool_choice,
        max_tokens=max_tokens,
    )
