"""Client → gateway WebSocket messages: one frozen dataclass per `type` and `parse_client_message`, the only
place raw frames become typed messages. Bad frames raise `ProtocolError`, which the connection answers with an
`error` frame and stays open."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, get_args

import orjson

from t_koma.engine.events import ApprovalDecision
from t_koma.messages import REASONING_EFFORTS, ReasoningConfig, parse_reasoning_level

RequestId: TypeAlias = str | int | None


class ProtocolError(Exception):
    """A frame that is not a valid client message. `request_id` is echoed when the frame had a usable `id`."""

    def __init__(self, message: str, *, error_type: str = "invalid_message", request_id: RequestId = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class SelectProvider:
    id: RequestId
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class ListAvailableModels:
    id: RequestId
    provider: str
    everything: bool = False
    """`"all": true` asks for the whole catalog instead of the top 20 (the client filters over it)."""


@dataclass(frozen=True, slots=True)
class ListProviders:
    id: RequestId


@dataclass(frozen=True, slots=True)
class Chat:
    id: RequestId
    content: str
    session_id: str | None = None
    reasoning: ReasoningConfig | None = None
    """A one-off reasoning level for this turn (`"high"`, `"off"`, `"8000"`, …); None = each model's configured one."""


@dataclass(frozen=True, slots=True)
class CreateSession:
    id: RequestId
    title: str | None = None


@dataclass(frozen=True, slots=True)
class ListSessions:
    id: RequestId


@dataclass(frozen=True, slots=True)
class SwitchSession:
    id: RequestId
    session_id: str


@dataclass(frozen=True, slots=True)
class DeleteSession:
    id: RequestId
    session_id: str


@dataclass(frozen=True, slots=True)
class GetHistory:
    id: RequestId
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolApproval:
    id: RequestId
    call_id: str
    decision: ApprovalDecision
    session_id: str | None = None
    """Only needed when two running turns of the connection wait on the same call ID."""


@dataclass(frozen=True, slots=True)
class Cancel:
    id: RequestId
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    id: RequestId


ClientMessage: TypeAlias = (
    SelectProvider
    | ListAvailableModels
    | ListProviders
    | Chat
    | CreateSession
    | ListSessions
    | SwitchSession
    | DeleteSession
    | GetHistory
    | ToolApproval
    | Cancel
    | Ping
)

_DECISIONS: tuple[str, ...] = get_args(ApprovalDecision)


class _Fields:
    """Typed access to a frame's fields; every failure names the field."""

    __slots__ = ("_data", "_id", "_type")

    def __init__(self, data: dict[str, Any], message_type: str, request_id: RequestId) -> None:
        self._data = data
        self._type = message_type
        self._id = request_id

    def _fail(self, message: str) -> ProtocolError:
        return ProtocolError(f"{self._type}: {message}", request_id=self._id)

    def required_str(self, name: str, *, non_empty: bool = True) -> str:
        value = self._data.get(name)
        if value is None:
            raise self._fail(f"missing field '{name}'")
        if not isinstance(value, str):
            raise self._fail(f"field '{name}' must be a string")
        if non_empty and not value.strip():
            raise self._fail(f"field '{name}' must not be empty")
        return value

    def optional_bool(self, name: str) -> bool:
        value = self._data.get(name, False)
        if not isinstance(value, bool):
            raise self._fail(f"field '{name}' must be true or false")
        return value

    def optional_str(self, name: str) -> str | None:
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(f"field '{name}' must be a string or null")
        return value or None

    def optional_reasoning(self, name: str) -> ReasoningConfig | None:
        """A reasoning level as `parse_reasoning_level` reads it; a JSON integer is a token budget."""
        value = self._data.get(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or len(value) > _MAX_LEVEL_CHARS:
            raise self._fail(f"field '{name}' must be a reasoning level: {_LEVELS}")
        try:
            return parse_reasoning_level(value)
        except ValueError as exc:
            raise self._fail(f"field '{name}': {exc}") from None


_MAX_LEVEL_CHARS = 32
_LEVELS = f"{', '.join(REASONING_EFFORTS)}, off, on or a token budget like 8000"


def _select_provider(f: _Fields, rid: RequestId) -> ClientMessage:
    return SelectProvider(rid, f.required_str("provider"), f.required_str("model"))


def _list_available_models(f: _Fields, rid: RequestId) -> ClientMessage:
    return ListAvailableModels(rid, f.required_str("provider"), f.optional_bool("all"))


def _chat(f: _Fields, rid: RequestId) -> ClientMessage:
    return Chat(rid, f.required_str("content"), f.optional_str("session_id"), f.optional_reasoning("reasoning"))


def _tool_approval(f: _Fields, rid: RequestId) -> ClientMessage:
    decision = f.required_str("decision")
    if decision not in _DECISIONS:
        raise ProtocolError(f"tool_approval: field 'decision' must be one of {', '.join(_DECISIONS)}", request_id=rid)
    return ToolApproval(rid, f.required_str("call_id"), decision, f.optional_str("session_id"))  # type: ignore[arg-type]


_PARSERS: dict[str, Callable[[_Fields, RequestId], ClientMessage]] = {
    "select_provider": _select_provider,
    "list_available_models": _list_available_models,
    "list_providers": lambda f, rid: ListProviders(rid),
    "chat": _chat,
    "create_session": lambda f, rid: CreateSession(rid, f.optional_str("title")),
    "list_sessions": lambda f, rid: ListSessions(rid),
    "switch_session": lambda f, rid: SwitchSession(rid, f.required_str("session_id")),
    "delete_session": lambda f, rid: DeleteSession(rid, f.required_str("session_id")),
    "get_history": lambda f, rid: GetHistory(rid, f.optional_str("session_id")),
    "tool_approval": _tool_approval,
    "cancel": lambda f, rid: Cancel(rid, f.optional_str("session_id")),
    "ping": lambda f, rid: Ping(rid),
}

CLIENT_MESSAGE_TYPES: tuple[str, ...] = tuple(_PARSERS)


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Decode one text frame into a typed message, or raise `ProtocolError`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a frame must be a JSON object with a 'type'")
    request_id = data.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | None):
        raise ProtocolError("field 'id' must be a string or an integer")
    message_type = data.get("type")
    if not isinstance(message_type, str):
        raise ProtocolError("missing field 'type'", request_id=request_id)
    parser = _PARSERS.get(message_type)
    if parser is None:
        raise ProtocolError(
            f"unknown message type '{message_type[:64]}'", error_type="unknown_type", request_id=request_id
        )
    return parser(_Fields(data, message_type, request_id), request_id)
