"""Typed events the engine emits to a sink while a turn runs, and the turn's request and result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from t_koma.messages import ProviderUsage, ReasoningConfig, ToolChoice

ApprovalDecision: TypeAlias = Literal["approve", "deny", "always"]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    call_id: str
    name: str
    arguments: str
    """The arguments as a JSON string, for display."""


ApprovalCallback: TypeAlias = Callable[[ToolCallRequest], Awaitable[ApprovalDecision]]


@dataclass(frozen=True, slots=True)
class TextDeltaEvent:
    session_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDeltaEvent:
    """A readable piece of the model's reasoning (shown dimmed, never part of the answer)."""

    session_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    session_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ApprovalNeeded:
    session_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    session_id: str
    call_id: str
    content: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class FallbackEvent:
    """The turn moved from one model to the next; clients drop any partial text of this step."""

    session_id: str | None
    from_model: str
    to_model: str
    error: str


@dataclass(frozen=True, slots=True)
class StepUsage:
    session_id: str | None
    provider: str
    model: str
    usage: ProviderUsage
    latency_ms: float


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    id: str
    name: str
    arguments: str
    result: str | None
    """None when the call was not run (max_steps reached)."""
    is_error: bool | None


@dataclass(frozen=True, slots=True)
class FallbackRecord:
    model: str
    error: str


@dataclass(frozen=True, slots=True)
class TurnResult:
    session_id: str
    message_id: str | None
    text: str
    stop_reason: str | None
    """The model's stop reason, or "max_steps" / "cancelled"."""
    provider: str
    model: str
    tool_calls: tuple[ToolCallRecord, ...]
    usage: ProviderUsage
    steps: int
    fallbacks: tuple[FallbackRecord, ...] = ()
    reasoning: str | None = None
    """The turn's readable reasoning (every step's, blank-line separated); None when the model showed none."""


@dataclass(frozen=True, slots=True)
class TurnDone:
    result: TurnResult


EngineEvent: TypeAlias = (
    TextDeltaEvent
    | ReasoningDeltaEvent
    | ToolCallStarted
    | ApprovalNeeded
    | ToolResultEvent
    | FallbackEvent
    | StepUsage
    | TurnDone
)
EventSink: TypeAlias = Callable[[EngineEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TurnRequest:
    content: str
    chain: tuple[str, ...] = ()
    """Model references (aliases or model IDs) in fallback order; empty = the config's default chain."""
    provider: str | None = None
    """Provider name applied to every reference of `chain` (`ModelResolver.resolve(ref, provider)`)."""
    session_id: str | None = None
    """None = a new session."""
    system: str | None = None
    tools_enabled: bool = True
    max_steps: int | None = None
    tool_choice: ToolChoice | None = None
    reasoning: ReasoningConfig | None = None
    """A one-off reasoning setting for every model of this turn, over each alias's configured `reasoning`."""
    stream: bool = True
    approval: ApprovalCallback | None = None
    """None = deny every call that needs approval (unless the policy is `auto`)."""
    auto_approve: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServedBy:
    """Passthrough streams (`Engine.stream`) yield this before an attempt's first event: which model answers."""

    provider: str
    model: str
    label: str
