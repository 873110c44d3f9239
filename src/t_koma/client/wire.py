"""JSON frames from the gateway → the typed frames of `frames`, at the client's edge.

Parsing is tolerant of additive changes (unknown fields are ignored, unknown frame types become `UnknownFrame`)
so an older client keeps working with a newer gateway; a frame missing a required field raises `GatewayError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from t_koma.client.frames import (
    AvailableModels,
    ErrorFrame,
    Fallback,
    Frame,
    GatewayError,
    Hello,
    History,
    HistoryEntry,
    ModelEntry,
    Pong,
    ProviderList,
    ProviderSelected,
    ProviderStatus,
    ReasoningDelta,
    Response,
    SessionCreated,
    SessionDeleted,
    SessionEntry,
    SessionList,
    SessionSwitched,
    TextDelta,
    ToolApprovalRequest,
    ToolCall,
    ToolResult,
    UnknownFrame,
    Usage,
)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A parsed frame and the request `id` it echoes (None when it answers no request)."""

    id: str | None
    type: str
    frame: Frame


def parse_frame(data: Mapping[str, Any]) -> Incoming:
    """Turn one decoded JSON frame into its typed form. Raises `GatewayError` when required fields are missing."""
    kind = str(data.get("type", ""))
    raw_id = data.get("id")
    request_id = str(raw_id) if raw_id is not None else None
    parser = _PARSERS.get(kind)
    if parser is None:
        return Incoming(request_id, kind, UnknownFrame(kind))
    try:
        frame = parser(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise GatewayError(f"malformed {kind!r} frame from the gateway: {exc}", remote_type="protocol_error") from exc
    return Incoming(request_id, kind, frame)


def _str(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise KeyError(key)
    return str(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _opt_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_usage(data: Any) -> Usage | None:
    if not isinstance(data, Mapping):
        return None
    return Usage(
        input_tokens=_opt_int(data.get("input_tokens")) or 0,
        output_tokens=_opt_int(data.get("output_tokens")) or 0,
        cache_read_tokens=_opt_int(data.get("cache_read_tokens")),
        cache_creation_tokens=_opt_int(data.get("cache_creation_tokens")),
        reasoning_tokens=_opt_int(data.get("reasoning_tokens")),
        cost=_opt_float(data.get("cost")),
    )


def _model(data: Mapping[str, Any]) -> ModelEntry:
    pricing = data.get("pricing")
    pricing = pricing if isinstance(pricing, Mapping) else {}
    model_id = _str(data, "id")
    return ModelEntry(
        id=model_id,
        name=str(data.get("name") or model_id),
        description=str(data.get("description") or ""),
        context_length=_opt_int(data.get("context_length")),
        prompt_price=_opt_float(data.get("prompt_price", pricing.get("prompt"))),
        completion_price=_opt_float(data.get("completion_price", pricing.get("completion"))),
    )


def _provider(data: Mapping[str, Any]) -> ProviderStatus:
    name = _str(data, "name")
    return ProviderStatus(
        name=name,
        label=str(data.get("label") or name),
        configured=bool(data.get("configured", True)),
        key_env=_opt_str(data.get("key_env")),
    )


def _hello(data: Mapping[str, Any]) -> Hello:
    return Hello(
        version=str(data.get("version") or ""),
        providers=tuple(_provider(p) for p in data.get("providers") or ()),
        provider=_opt_str(data.get("provider")),
        model=_opt_str(data.get("model")),
        chain=tuple(str(alias) for alias in data.get("chain") or ()),
        session_id=_opt_str(data.get("session_id")),
    )


def _session(data: Mapping[str, Any]) -> SessionEntry:
    return SessionEntry(
        id=_str(data, "id") if "id" in data else _str(data, "session_id"),
        title=str(data.get("title") or ""),
        updated_at=_opt_float(data.get("updated_at")),
        message_count=_opt_int(data.get("message_count")),
        usage=parse_usage(data.get("usage")) or _flat_usage(data),
    )


def _flat_usage(data: Mapping[str, Any]) -> Usage | None:
    if "input_tokens" not in data and "cost" not in data:
        return None
    return parse_usage(data)


def _history_entry(data: Mapping[str, Any]) -> HistoryEntry:
    content = data.get("content")
    blocks = data.get("blocks")
    if blocks is None:
        blocks = content if isinstance(content, list) else ()
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[tuple[str, str]] = []
    results: list[tuple[str, bool]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "reasoning" and block.get("text"):
            thoughts.append(str(block["text"]))
        elif kind == "tool_use":
            calls.append((str(block.get("name", "")), _arguments_text(block.get("input", block.get("arguments")))))
        elif kind == "tool_result":
            results.append((str(block.get("content", "")), bool(block.get("is_error", False))))
    return HistoryEntry(
        role=_str(data, "role"),
        text=content if isinstance(content, str) else "".join(texts),
        tool_calls=tuple(calls),
        tool_results=tuple(results),
        status=_opt_str(data.get("status")),
        reasoning="\n\n".join(thoughts),
    )


def _arguments_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


def _error(data: Mapping[str, Any]) -> ErrorFrame:
    body = data.get("error")
    if isinstance(body, Mapping):
        return ErrorFrame(
            message=str(body.get("message", "unknown error")),
            type=str(body.get("type") or "error"),
            reason=_opt_str(body.get("reason")),
            suggestions=tuple(str(s) for s in body.get("suggestions") or ()),
        )
    return ErrorFrame(message=str(body or data.get("message") or "unknown error"))


def _response(data: Mapping[str, Any]) -> Response:
    return Response(
        content=str(data.get("content") or ""),
        session_id=_opt_str(data.get("session_id")),
        provider=_opt_str(data.get("provider")),
        model=_opt_str(data.get("model")),
        usage=parse_usage(data.get("usage")),
        cancelled=bool(data.get("cancelled", False)) or data.get("stop_reason") == "cancelled",
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Frame]] = {
    "provider_selected": lambda d: ProviderSelected(_str(d, "provider"), _str(d, "model")),
    "available_models": lambda d: AvailableModels(_str(d, "provider"), tuple(_model(m) for m in d["models"])),
    "hello": _hello,
    "providers": lambda d: ProviderList(tuple(_provider(p) for p in d["providers"])),
    "session_created": lambda d: SessionCreated(_str(d, "session_id"), str(d.get("title") or "")),
    "session_list": lambda d: SessionList(tuple(_session(s) for s in d["sessions"])),
    "session_switched": lambda d: SessionSwitched(
        _str(d, "session_id"), str(d.get("title") or ""), parse_usage(d.get("usage"))
    ),
    "session_deleted": lambda d: SessionDeleted(_str(d, "session_id")),
    "history": lambda d: History(_str(d, "session_id"), tuple(_history_entry(m) for m in d["messages"])),
    "text_delta": lambda d: TextDelta(_str(d, "text"), _opt_str(d.get("session_id"))),
    "reasoning_delta": lambda d: ReasoningDelta(_str(d, "text"), _opt_str(d.get("session_id"))),
    "tool_call": lambda d: ToolCall(_str(d, "call_id"), _str(d, "name"), _arguments_text(d.get("arguments"))),
    "tool_approval_request": lambda d: ToolApprovalRequest(
        _str(d, "call_id"), _str(d, "name"), _arguments_text(d.get("arguments"))
    ),
    "tool_result": lambda d: ToolResult(_str(d, "call_id"), str(d.get("content") or ""), bool(d.get("is_error"))),
    "fallback": lambda d: Fallback(_str(d, "from_model"), _str(d, "to_model"), str(d.get("error") or "")),
    "response": _response,
    "error": _error,
    "pong": lambda d: Pong(),
}
