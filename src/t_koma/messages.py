"""Typed conversation models shared by every layer: content blocks, messages, tools, usage, responses
and the stream events a provider yields. Upstream wire formats are turned into these at the provider edge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

Role: TypeAlias = Literal["user", "assistant"]
JSONObject: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    """A tool call made by the model. `arguments_error` is set (and `input` is empty) when the model's
    arguments were not a valid JSON object; `raw_arguments` keeps what it sent."""

    id: str
    name: str
    input: JSONObject
    raw_arguments: str | None = None
    arguments_error: str | None = None
    type: Literal["tool_use"] = "tool_use"


@dataclass(frozen=True, slots=True)
class ToolResultBlock:
    tool_use_id: str
    content: str
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"


ContentBlock: TypeAlias = TextBlock | ToolUseBlock | ToolResultBlock


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: tuple[ContentBlock, ...]

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", (TextBlock(text),))

    @property
    def text(self) -> str:
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))

    @property
    def tool_uses(self) -> tuple[ToolUseBlock, ...]:
        return tuple(block for block in self.content if isinstance(block, ToolUseBlock))

    @property
    def tool_results(self) -> tuple[ToolResultBlock, ...]:
        return tuple(block for block in self.content if isinstance(block, ToolResultBlock))


@dataclass(frozen=True, slots=True)
class SystemBlock:
    """One part of the system prompt; `cache` asks the provider to put a cache breakpoint on it."""

    text: str
    cache: bool = True


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    name: str
    description: str
    parameters: Mapping[str, Any]


ToolChoice: TypeAlias = str
"""`auto` | `none` | `required` | the name of one tool."""

TOOL_CHOICE_KEYWORDS = ("auto", "none", "required")


@dataclass(frozen=True, slots=True)
class ProviderUsage:
    """Token accounting for one call. Optional fields are None when the upstream did not say — never 0.

    `input_tokens` counts every prompt token, cached ones included (OpenAI's `prompt_tokens` convention; the
    Anthropic provider adds its separately reported cache reads and writes), so the cache hit rate is
    `cache_read_tokens / input_tokens` for every provider."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: float | None = None

    def __add__(self, other: ProviderUsage) -> ProviderUsage:
        return ProviderUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=_add_optional(self.cache_read_tokens, other.cache_read_tokens),
            cache_creation_tokens=_add_optional(self.cache_creation_tokens, other.cache_creation_tokens),
            reasoning_tokens=_add_optional(self.reasoning_tokens, other.reasoning_tokens),
            cost=_add_optional(self.cost, other.cost),
        )

    def to_dict(self) -> JSONObject:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": self.cost,
        }


def _add_optional(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    id: str
    model: str
    content: tuple[ContentBlock, ...]
    usage: ProviderUsage | None
    stop_reason: str | None
    upstream_provider: str | None = None

    @property
    def text(self) -> str:
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))

    @property
    def tool_calls(self) -> tuple[ToolUseBlock, ...]:
        return tuple(block for block in self.content if isinstance(block, ToolUseBlock))

    def as_message(self) -> Message:
        return Message("assistant", self.content)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One catalog entry. Prices are USD per token; None when the catalog does not say."""

    id: str
    name: str
    description: str = ""
    context_length: int | None = None
    prompt_price: float | None = None
    completion_price: float | None = None
    supported_parameters: tuple[str, ...] = ()

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.supported_parameters

    def to_dict(self) -> JSONObject:
        """The spec's `available_models` entry shape."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "context_length": self.context_length,
        }


# --- stream events a provider yields ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """A complete tool call, emitted once its arguments have been fully assembled."""

    call: ToolUseBlock


@dataclass(frozen=True, slots=True)
class UsageEvent:
    usage: ProviderUsage


@dataclass(frozen=True, slots=True)
class Finish:
    """Always the last event of a successful stream; carries the assembled response."""

    response: ProviderResponse


StreamEvent: TypeAlias = TextDelta | ToolCallEvent | UsageEvent | Finish


@dataclass(frozen=True, slots=True)
class ConversationRequest:
    """Everything a provider needs for one call, already limited and ordered."""

    system: tuple[SystemBlock, ...] = ()
    messages: tuple[Message, ...] = ()
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Pass-through fields from an OpenAI-compatible client (temperature, top_p, …); OpenAI-format providers
    merge them into the body, others ignore what they cannot map."""

    def with_messages(self, messages: Sequence[Message]) -> ConversationRequest:
        return replace(self, messages=tuple(messages))


# --- JSON (store and protocol) ----------------------------------------------------------------------


def block_to_dict(block: ContentBlock) -> JSONObject:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        out: JSONObject = {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
        if block.arguments_error is not None:
            out["raw_arguments"] = block.raw_arguments
            out["arguments_error"] = block.arguments_error
        return out
    return {
        "type": "tool_result",
        "tool_use_id": block.tool_use_id,
        "content": block.content,
        "is_error": block.is_error,
    }


def block_from_dict(data: Mapping[str, Any]) -> ContentBlock:
    kind = data.get("type")
    if kind == "text":
        return TextBlock(str(data["text"]))
    if kind == "tool_use":
        return ToolUseBlock(
            id=str(data["id"]),
            name=str(data["name"]),
            input=dict(data.get("input") or {}),
            raw_arguments=data.get("raw_arguments"),
            arguments_error=data.get("arguments_error"),
        )
    if kind == "tool_result":
        return ToolResultBlock(str(data["tool_use_id"]), str(data["content"]), bool(data.get("is_error", False)))
    raise ValueError(f"unknown content block type: {kind!r}")


def limit_history(messages: Sequence[Message], limit: int | None) -> list[Message]:
    """Keep the last `limit` messages without separating a tool call from its result: the kept slice starts
    at a plain user message (moving forward from the cut; or back, when nothing after the cut qualifies)."""
    if limit is None or limit >= len(messages):
        return list(messages)
    if limit <= 0:
        return []
    start = len(messages) - limit
    forward = start
    while forward < len(messages) and not _is_clean_start(messages[forward]):
        forward += 1
    if forward < len(messages):
        return list(messages[forward:])
    # Mid tool loop the newest messages are a call and its results: reach back to the turn's start instead.
    while start > 0 and not _is_clean_start(messages[start]):
        start -= 1
    return list(messages[start:])


def _is_clean_start(message: Message) -> bool:
    return message.role == "user" and not message.tool_results
