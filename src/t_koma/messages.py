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


ReasoningKind: TypeAlias = Literal["text", "summary", "encrypted"]
ReasoningOrigin: TypeAlias = Literal["openrouter", "anthropic", "openai"]
"""The wire format a piece of reasoning came in, which decides who can verify it when it is sent back:
`openrouter` (an item of `reasoning_details`), `anthropic` (a native `thinking` / `redacted_thinking` block),
`openai` (plain `reasoning_content` / `reasoning` text of an OpenAI-compatible server)."""


@dataclass(frozen=True, slots=True)
class ReasoningBlock:
    """A model's reasoning, kept with its assistant message exactly as the upstream sent it, so that later requests
    can carry it back (Gemini 3 and Claude with thinking refuse a tool loop without it). `text` is the readable
    part (a thought or a summary; empty for opaque items); `data` and `signature` are opaque and never altered.
    `model` is the model that produced it (None when a `/v1` caller sent it): reasoning only goes back to a model
    that can verify it (see `providers.reasoning`)."""

    origin: ReasoningOrigin
    kind: ReasoningKind = "text"
    text: str = ""
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    format: str | None = None
    index: int | None = None
    model: str | None = None
    type: Literal["reasoning"] = "reasoning"


ContentBlock: TypeAlias = TextBlock | ToolUseBlock | ToolResultBlock | ReasoningBlock


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
    def reasoning(self) -> tuple[ReasoningBlock, ...]:
        return tuple(block for block in self.content if isinstance(block, ReasoningBlock))

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

    @property
    def reasoning(self) -> tuple[ReasoningBlock, ...]:
        return tuple(block for block in self.content if isinstance(block, ReasoningBlock))

    @property
    def reasoning_text(self) -> str:
        """The readable reasoning (thoughts and summaries), for display."""
        return reasoning_text(self.content)

    def as_message(self) -> Message:
        return Message("assistant", self.content)


def reasoning_text(content: Sequence[ContentBlock]) -> str:
    """The readable reasoning among `content` blocks, items separated by a blank line."""
    return "\n\n".join(block.text for block in content if isinstance(block, ReasoningBlock) and block.text)


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
class ReasoningDelta:
    """A readable piece of the model's reasoning, streamed before (and between) its text and tool calls. The
    complete reasoning, opaque parts included, comes as `ReasoningBlock`s in the final response."""

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


StreamEvent: TypeAlias = TextDelta | ReasoningDelta | ToolCallEvent | UsageEvent | Finish


# --- reasoning settings ------------------------------------------------------------------------------------

ReasoningEffort: TypeAlias = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
REASONING_EFFORTS: tuple[ReasoningEffort, ...] = ("none", "minimal", "low", "medium", "high", "xhigh")


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    """How much a model should reason: a model alias's `reasoning = {...}` table, or a one-off override
    (`ask --reasoning`, the chat's `/reasoning`, a `/v1` caller's `reasoning` / `reasoning_effort`). Every field
    is optional; None means "not said" and leaves the upstream's default. `effort` and `max_tokens` exclude each
    other (OpenRouter's rule)."""

    effort: ReasoningEffort | None = None
    max_tokens: int | None = None
    exclude: bool | None = None
    enabled: bool | None = None

    @property
    def off(self) -> bool:
        """Reasoning explicitly turned off (`enabled = false` or `effort = "none"`)."""
        return self.enabled is False or self.effort == "none"

    @property
    def on(self) -> bool:
        """Reasoning explicitly asked for (an effort other than none, a budget, or `enabled = true`)."""
        return not self.off and (self.effort is not None or self.max_tokens is not None or self.enabled is True)

    def overridden_by(self, override: ReasoningConfig | None) -> ReasoningConfig:
        """This configuration with a one-off override on top: an override's effort or budget replaces both of
        ours (they exclude each other); its `exclude` / `enabled`, when set, replace ours."""
        if override is None:
            return self
        amount_set = override.effort is not None or override.max_tokens is not None
        return ReasoningConfig(
            effort=override.effort if amount_set else self.effort,
            max_tokens=override.max_tokens if amount_set else self.max_tokens,
            exclude=self.exclude if override.exclude is None else override.exclude,
            enabled=self.enabled if override.enabled is None else override.enabled,
        )


def as_reasoning_effort(value: object) -> ReasoningEffort | None:
    """`value` as one of the effort levels, or None when it is not one."""
    for effort in REASONING_EFFORTS:
        if value == effort:
            return effort
    return None


def parse_reasoning_level(value: str) -> ReasoningConfig:
    """`--reasoning LEVEL` / `/reasoning LEVEL`: an effort level, `off` (= none), or a token budget. Raises
    ValueError with the allowed values."""
    level = value.strip().lower()
    if level in ("off", "no", "false"):
        return ReasoningConfig(effort="none")
    if level == "on":
        return ReasoningConfig(enabled=True)
    effort = as_reasoning_effort(level)
    if effort is not None:
        return ReasoningConfig(effort=effort)
    if level.isdigit() and int(level) > 0:
        return ReasoningConfig(max_tokens=int(level))
    raise ValueError(
        f"reasoning level {value!r} is not one of {', '.join(REASONING_EFFORTS)}, off, on or a token budget like 8000"
    )


@dataclass(frozen=True, slots=True)
class ConversationRequest:
    """Everything a provider needs for one call, already limited and ordered."""

    system: tuple[SystemBlock, ...] = ()
    messages: tuple[Message, ...] = ()
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    reasoning: ReasoningConfig | None = None
    """A one-off reasoning setting for this call; it overrides the model's configured `reasoning`."""
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
    if isinstance(block, ReasoningBlock):
        return reasoning_to_dict(block)
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
    if kind == "reasoning":
        return reasoning_from_dict(data)
    raise ValueError(f"unknown content block type: {kind!r}")


_REASONING_OPTIONAL = ("signature", "data", "id", "format", "index", "model")


def reasoning_to_dict(block: ReasoningBlock) -> JSONObject:
    out: JSONObject = {"type": "reasoning", "origin": block.origin, "kind": block.kind, "text": block.text}
    for name in _REASONING_OPTIONAL:
        value = getattr(block, name)
        if value is not None:
            out[name] = value
    return out


def reasoning_from_dict(data: Mapping[str, Any]) -> ReasoningBlock:
    origin = data.get("origin")
    kind = data.get("kind", "text")
    if origin not in ("openrouter", "anthropic", "openai") or kind not in ("text", "summary", "encrypted"):
        raise ValueError(f"unknown reasoning block origin/kind: {origin!r}/{kind!r}")
    index = data.get("index")
    return ReasoningBlock(
        origin=origin,
        kind=kind,
        text=str(data.get("text") or ""),
        signature=_opt_str(data.get("signature")),
        data=_opt_str(data.get("data")),
        id=_opt_str(data.get("id")),
        format=_opt_str(data.get("format")),
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        model=_opt_str(data.get("model")),
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
