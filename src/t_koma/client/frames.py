"""Typed gateway → client frames of the WebSocket protocol (`docs/protocol.md`); `wire` parses them.

The rest of the client only sees these dataclasses, never a raw dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from t_koma.errors import TKomaError
from t_koma.messages import ProviderUsage


class GatewayError(TKomaError):
    """An `error` frame from the gateway, or a failed exchange with it. `type` is the gateway's error type."""

    error_type = "gateway_error"

    def __init__(
        self,
        message: str,
        *,
        remote_type: str | None = None,
        reason: str | None = None,
        suggestions: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.remote_type = remote_type or self.error_type
        self.reason = reason
        self.suggestions = suggestions

    @property
    def type(self) -> str:
        return self.remote_type


class GatewayUnavailableError(GatewayError):
    """No gateway answers (not running, refused the token, or the connection dropped)."""

    error_type = "gateway_unavailable"


Usage: TypeAlias = ProviderUsage
"""Token and cost figures of a turn (or a sum of turns): the shared typed model, read from the `usage` object of
`response` frames (`reasoning_tokens` is None when the upstream did not say)."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of `available_models`. Prices are USD per token, None when the gateway does not say."""

    id: str
    name: str
    description: str = ""
    context_length: int | None = None
    prompt_price: float | None = None
    completion_price: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One provider of `hello` / `providers`: `configured` is False when its key variable `key_env` is unset."""

    name: str
    label: str
    configured: bool
    key_env: str | None = None


@dataclass(frozen=True, slots=True)
class SessionEntry:
    id: str
    title: str = ""
    updated_at: float | None = None
    message_count: int | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stored message, flattened for display: its text, and the tool calls and results it carries."""

    role: str
    text: str
    tool_calls: tuple[tuple[str, str], ...] = ()
    """(name, arguments as JSON text) of each tool call."""
    tool_results: tuple[tuple[str, bool], ...] = ()
    """(content, is_error) of each tool result."""
    status: str | None = None
    reasoning: str = ""
    """The message's readable reasoning (its `reasoning` blocks' text, blank-line separated); "" when none."""


@dataclass(frozen=True, slots=True)
class ProviderSelected:
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class AvailableModels:
    provider: str
    models: tuple[ModelEntry, ...]


@dataclass(frozen=True, slots=True)
class ProviderList:
    providers: tuple[ProviderStatus, ...]


@dataclass(frozen=True, slots=True)
class Hello:
    """Sent by the gateway right after the handshake: its version, the current selection and the providers."""

    version: str
    providers: tuple[ProviderStatus, ...]
    provider: str | None = None
    model: str | None = None
    chain: tuple[str, ...] = ()
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class SessionCreated:
    session_id: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class SessionList:
    sessions: tuple[SessionEntry, ...]


@dataclass(frozen=True, slots=True)
class SessionSwitched:
    session_id: str
    title: str = ""
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class SessionDeleted:
    session_id: str


@dataclass(frozen=True, slots=True)
class History:
    session_id: str
    messages: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning, streamed before (and between) its text and tool calls."""

    text: str
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolApprovalRequest:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class Fallback:
    from_model: str
    to_model: str
    error: str


@dataclass(frozen=True, slots=True)
class Response:
    """The end of a turn. `cancelled` marks a turn stopped by `cancel` (its partial text is kept)."""

    content: str
    session_id: str | None = None
    provider: str | None = None
    model: str | None = None
    usage: Usage | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """An `error` frame. `reason` and `suggestions` refine `invalid_model` (e.g. `missing_api_key`)."""

    message: str
    type: str = "error"
    reason: str | None = None
    suggestions: tuple[str, ...] = ()

    def to_exception(self) -> GatewayError:
        return GatewayError(self.message, remote_type=self.type, reason=self.reason, suggestions=self.suggestions)


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    type: str


Frame: TypeAlias = (
    Hello
    | ProviderSelected
    | AvailableModels
    | ProviderList
    | SessionCreated
    | SessionList
    | SessionSwitched
    | SessionDeleted
    | History
    | TextDelta
    | ReasoningDelta
    | ToolCall
    | ToolApprovalRequest
    | ToolResult
    | Fallback
    | Response
    | ErrorFrame
    | Pong
    | UnknownFrame
)

TurnEvent: TypeAlias = (
    TextDelta | ReasoningDelta | ToolCall | ToolApprovalRequest | ToolResult | Fallback | Response | ErrorFrame
)
"""What a running turn yields to the user interface; it ends with a `Response` or an `ErrorFrame`."""

TURN_EVENT_TYPES = frozenset(
    {
        "text_delta",
        "reasoning_delta",
        "tool_call",
        "tool_approval_request",
        "tool_result",
        "fallback",
        "response",
        "error",
    }
)
