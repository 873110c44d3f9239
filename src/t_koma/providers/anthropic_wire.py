"""The Anthropic Messages API wire format: request bodies built from a `ConversationRequest`, response bodies,
usage and error bodies turned into t-koma's typed models. Pure functions, no I/O (the client is `anthropic.py`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from t_koma.errors import ProviderError, error_for_status, parse_retry_after, scrub
from t_koma.messages import (
    ContentBlock,
    ConversationRequest,
    JSONObject,
    Message,
    ModelInfo,
    ProviderResponse,
    ProviderUsage,
    ReasoningBlock,
    ReasoningConfig,
    SystemBlock,
    TextBlock,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
)
from t_koma.providers.reasoning import (
    anthropic_budget,
    max_tokens_with_budget,
    tool_loop_keeps_thinking,
    verifiable_by,
)

logger = logging.getLogger(__name__)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
UPSTREAM_NAME = "Anthropic"
EPHEMERAL: JSONObject = {"type": "ephemeral"}

# Parameters every Messages API model accepts; the models endpoint does not list them.
SUPPORTED_PARAMETERS = ("max_tokens", "stop", "temperature", "tool_choice", "tools", "top_k", "top_p")

# In-stream error types (and error bodies) → the HTTP status Anthropic documents for each.
ERROR_TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# OpenAI-style pass-through fields (`ConversationRequest.extra`) that have an Anthropic equivalent.
_EXTRA_FIELDS: Mapping[str, str] = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k"}

THINKING_FORMAT = "anthropic-claude-v1"
"""The `format` of stored Anthropic thinking (OpenRouter's name for the same blocks)."""
_THINKING_TYPES = ("thinking", "redacted_thinking")
_FORCED_TOOL_CHOICES = ("any", "tool")


# --- request -----------------------------------------------------------------------------------------


def build_body(
    model: str,
    request: ConversationRequest,
    *,
    stream: bool,
    max_tokens: int | None = None,
    reasoning: ReasoningConfig | None = None,
) -> JSONObject:
    """The `POST /v1/messages` body. Prompt-cache breakpoints go on the system prompt, the last tool definition
    and the last block of the last user turn: three of the four the API allows. `reasoning` is the effective
    reasoning setting (the model's, with the request's override applied): see `thinking_budget`."""
    budget = thinking_budget(model, request, reasoning or ReasoningConfig())
    body: JSONObject = {
        "model": model,
        "max_tokens": request.max_tokens or max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages_to_wire(request.messages, thinking_model=None if budget is None else model),
    }
    system = system_to_wire(request.system)
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = tools_to_wire(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = tool_choice_to_wire(request.tool_choice)
    body.update(_extra_to_wire(request.extra))
    if budget is not None:
        _enable_thinking(body, budget)
    body["stream"] = stream
    return body


def thinking_budget(model: str, request: ConversationRequest, reasoning: ReasoningConfig) -> int | None:
    """The `thinking.budget_tokens` of this request, or None to send it without thinking: when reasoning is not
    on, or when the conversation ends in a tool loop another model started (its tool calls carry no thinking
    block this model signed, and the API refuses thinking then; thinking resumes at the next user message)."""
    budget = anthropic_budget(reasoning)
    if budget is None or not tool_loop_keeps_thinking(request.messages, model):
        return None
    return budget


def _enable_thinking(body: JSONObject, budget: int) -> None:
    """Turn thinking on: `max_tokens` raised above the budget, and what the API refuses with thinking left out
    (temperature, top_k, top_p; a forced `tool_choice` becomes `auto`), with one warning saying so."""
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens_with_budget(body["max_tokens"], budget)
    dropped = [name for name in ("temperature", "top_k", "top_p") if body.pop(name, None) is not None]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in _FORCED_TOOL_CHOICES:
        body["tool_choice"] = {"type": "auto"}
        dropped.append("forced tool_choice")
    if dropped:
        logger.warning("Anthropic thinking is on: left out %s (the API refuses them with thinking)", ", ".join(dropped))


def system_to_wire(blocks: Sequence[SystemBlock]) -> list[JSONObject]:
    """Non-empty system blocks as text blocks; the breakpoint goes on the last block that may be cached, which
    caches everything before it too."""
    wire: list[JSONObject] = []
    cache_at = -1
    for block in blocks:
        if not block.text:
            continue
        if block.cache:
            cache_at = len(wire)
        wire.append({"type": "text", "text": block.text})
    if cache_at >= 0:
        wire[cache_at]["cache_control"] = dict(EPHEMERAL)
    return wire


def tools_to_wire(tools: Sequence[ToolDefinition]) -> list[JSONObject]:
    wire: list[JSONObject] = [
        {"name": tool.name, "description": tool.description, "input_schema": dict(tool.parameters)} for tool in tools
    ]
    if wire:
        wire[-1]["cache_control"] = dict(EPHEMERAL)
    return wire


def tool_choice_to_wire(choice: str) -> JSONObject:
    """`auto` → auto, `required` → any, `none` → none, anything else names the one tool to call."""
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    return {"type": "tool", "name": choice}


def messages_to_wire(messages: Iterable[Message], *, thinking_model: str | None = None) -> list[JSONObject]:
    """Messages with consecutive same-role turns merged (the API wants user and assistant to alternate), tool
    results first in their user turn (the API rejects text before them), empty turns dropped, and a cache
    breakpoint on the last block of the last user turn (never on a thinking block: those are only in assistant
    turns).

    With `thinking_model` set (thinking is on for this request), each assistant turn starts with the thinking
    blocks that model signed, unmodified and in order (merged turns keep all of them first); with it unset, no
    thinking goes back (the API refuses thinking blocks in the final assistant turn when thinking is off)."""
    wire: list[JSONObject] = []
    for message in messages:
        blocks = [
            _block_to_wire(block)
            for block in message.content
            if not _is_empty_text(block) and not isinstance(block, ReasoningBlock)
        ]
        if not blocks:
            continue  # reasoning alone (an answer cut off while thinking) is not a turn
        thinking = _thinking_to_wire(message, thinking_model)
        if wire and wire[-1]["role"] == message.role:
            _merge_turn(wire[-1]["content"], thinking, blocks)
        else:
            wire.append({"role": message.role, "content": [*thinking, *blocks]})
    for turn in wire:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    for turn in reversed(wire):
        if turn["role"] == "user":
            turn["content"][-1]["cache_control"] = dict(EPHEMERAL)
            break
    return wire


def _merge_turn(content: list[JSONObject], thinking: list[JSONObject], blocks: list[JSONObject]) -> None:
    """Append a same-role message to a turn: its thinking after the turn's leading thinking, its blocks last."""
    leading = 0
    while leading < len(content) and content[leading]["type"] in _THINKING_TYPES:
        leading += 1
    content[leading:leading] = thinking
    content.extend(blocks)


def _thinking_to_wire(message: Message, model: str | None) -> list[JSONObject]:
    if model is None or message.role != "assistant":
        return []
    return [thinking_to_wire(block) for block in verifiable_by("anthropic", model, message.reasoning)]


def thinking_to_wire(block: ReasoningBlock) -> JSONObject:
    """A stored Anthropic block as it arrived: `thinking` with its signature, or `redacted_thinking` with its data."""
    if block.kind == "encrypted":
        return {"type": "redacted_thinking", "data": block.data}
    return {"type": "thinking", "thinking": block.text, "signature": block.signature}


def _is_empty_text(block: ContentBlock) -> bool:
    return isinstance(block, TextBlock) and not block.text


def _block_to_wire(block: TextBlock | ToolUseBlock | ToolResultBlock) -> JSONObject:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)}
    result: JSONObject = {"type": "tool_result", "tool_use_id": block.tool_use_id}
    if block.content:
        result["content"] = block.content
    if block.is_error:
        result["is_error"] = True
    return result


def _extra_to_wire(extra: Mapping[str, Any]) -> JSONObject:
    out: JSONObject = {wire: extra[name] for name, wire in _EXTRA_FIELDS.items() if extra.get(name) is not None}
    stop = extra.get("stop_sequences", extra.get("stop"))
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [str(item) for item in stop]
    return out


# --- response ----------------------------------------------------------------------------------------


def parse_usage(data: Any) -> ProviderUsage | None:
    """`usage` → ProviderUsage; cache and thinking counts stay None when the API did not report them."""
    if not isinstance(data, Mapping):
        return None
    return ProviderUsage(
        input_tokens=_int(data.get("input_tokens")) or 0,
        output_tokens=_int(data.get("output_tokens")) or 0,
        cache_read_tokens=_int(data.get("cache_read_input_tokens")),
        cache_creation_tokens=_int(data.get("cache_creation_input_tokens")),
        reasoning_tokens=_thinking_tokens(data),
    )


def _thinking_tokens(usage: Mapping[str, Any]) -> int | None:
    """`usage.output_tokens_details.thinking_tokens` (newer API versions; None when absent)."""
    details = usage.get("output_tokens_details")
    return _int(details.get("thinking_tokens")) if isinstance(details, Mapping) else None


def total_input(usage: ProviderUsage | None) -> ProviderUsage | None:
    """Anthropic's `input_tokens` leaves out cached tokens; t-koma's `input_tokens` counts every prompt token
    (as OpenAI's `prompt_tokens` does), so cache hit rates compare across providers."""
    if usage is None:
        return None
    cached = (usage.cache_read_tokens or 0) + (usage.cache_creation_tokens or 0)
    return replace(usage, input_tokens=usage.input_tokens + cached) if cached else usage


def merge_usage(base: ProviderUsage | None, update: Any) -> ProviderUsage | None:
    """Fold a `message_delta` usage (cumulative counts, any subset of fields) into what `message_start` said."""
    if not isinstance(update, Mapping):
        return base
    current = base or ProviderUsage()
    input_tokens = _int(update.get("input_tokens"))
    output_tokens = _int(update.get("output_tokens"))
    cache_read = _int(update.get("cache_read_input_tokens"))
    cache_creation = _int(update.get("cache_creation_input_tokens"))
    thinking = _thinking_tokens(update)
    return ProviderUsage(
        input_tokens=current.input_tokens if input_tokens is None else input_tokens,
        output_tokens=current.output_tokens if output_tokens is None else output_tokens,
        cache_read_tokens=current.cache_read_tokens if cache_read is None else cache_read,
        cache_creation_tokens=current.cache_creation_tokens if cache_creation is None else cache_creation,
        reasoning_tokens=current.reasoning_tokens if thinking is None else thinking,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def tool_use_from_json(block_id: str, name: str, raw: str, started_with: Any = None) -> ToolUseBlock:
    """A tool call from its streamed `partial_json` pieces, joined. Empty means no arguments (`{}`); anything
    that is not a JSON object is kept raw with `arguments_error` set, never dropped."""
    if not raw.strip():
        initial = started_with if isinstance(started_with, dict) else {}
        return ToolUseBlock(id=block_id, name=name, input=dict(initial))
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ToolUseBlock(block_id, name, {}, raw_arguments=raw, arguments_error=f"invalid JSON arguments: {exc}")
    if not isinstance(value, dict):
        error = f"arguments must be a JSON object, got {type(value).__name__}"
        return ToolUseBlock(block_id, name, {}, raw_arguments=raw, arguments_error=error)
    return ToolUseBlock(id=block_id, name=name, input=value)


def thinking_block(thinking: str, signature: str | None, model: str) -> ReasoningBlock:
    """A `thinking` block (readable text and its opaque signature) as stored; `model` is the requested model,
    the one it goes back to."""
    return ReasoningBlock("anthropic", "text", thinking, signature=signature, format=THINKING_FORMAT, model=model)


def redacted_thinking_block(data: str | None, model: str) -> ReasoningBlock:
    """A `redacted_thinking` block (opaque `data` only) as stored."""
    return ReasoningBlock("anthropic", "encrypted", data=data, format=THINKING_FORMAT, model=model)


def parse_content_block(data: Any, model: str) -> ContentBlock | None:
    """A response content block; None for kinds t-koma does not use (server tools …). Thinking becomes a
    `ReasoningBlock` of `model` (the requested model: the one its signature goes back to)."""
    if not isinstance(data, Mapping):
        return None
    kind = data.get("type")
    if kind == "thinking":
        return thinking_block(_str(data.get("thinking")) or "", _str(data.get("signature")), model)
    if kind == "redacted_thinking":
        return redacted_thinking_block(_str(data.get("data")), model)
    if kind == "text":
        text = data.get("text")
        return TextBlock(text) if isinstance(text, str) and text else None
    if kind == "tool_use":
        arguments = data.get("input")
        block_id, name = str(data.get("id", "")), str(data.get("name", ""))
        if isinstance(arguments, dict):
            return ToolUseBlock(id=block_id, name=name, input=arguments)
        raw = orjson.dumps(arguments).decode()
        return ToolUseBlock(block_id, name, {}, raw_arguments=raw, arguments_error="arguments must be a JSON object")
    return None


def parse_message(data: Any, *, model: str) -> ProviderResponse:
    """A non-streaming `message` body → ProviderResponse. Raises ValueError when the body is not a message."""
    if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
        raise ValueError("not a message object")
    blocks = [parse_content_block(item, model) for item in data["content"]]
    return ProviderResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or model),
        content=tuple(block for block in blocks if block is not None),
        usage=total_input(parse_usage(data.get("usage"))),
        stop_reason=data.get("stop_reason") if isinstance(data.get("stop_reason"), str) else None,
        upstream_provider=UPSTREAM_NAME,
    )


def parse_model(data: Any) -> ModelInfo | None:
    """One `GET /v1/models` entry; the context length only when the API states a positive `max_input_tokens`."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
        return None
    context = _int(data.get("max_input_tokens"))
    return ModelInfo(
        id=data["id"],
        name=str(data.get("display_name") or data["id"]),
        context_length=context if context and context > 0 else None,
        supported_parameters=SUPPORTED_PARAMETERS,
    )


# --- errors ------------------------------------------------------------------------------------------


def error_from_body(
    status: int | None,
    data: Any,
    *,
    secrets: Sequence[str | None],
    headers: Mapping[str, str] | None = None,
    raw: str | None = None,
    partial_text: str = "",
) -> ProviderError:
    """`{"type": "error", "error": {"type", "message"}}` (an HTTP error body or an in-stream `error` event) →
    the typed error. The status comes from the HTTP response, else from the error type."""
    error = data.get("error") if isinstance(data, Mapping) else None
    error_type = str(error.get("type") or "") if isinstance(error, Mapping) else ""
    message = error.get("message") if isinstance(error, Mapping) else None
    if status is None:
        status = ERROR_TYPE_STATUS.get(error_type, 500)
    if not isinstance(message, str) or not message:
        message = (raw or "").strip()[:300] or f"HTTP {status}"
    kind = f" {error_type}" if error_type else ""
    text = scrub(f"Anthropic API error ({status}{kind}): {message}", secrets)
    return error_for_status(
        status,
        text,
        provider="anthropic",
        upstream_provider=UPSTREAM_NAME,
        raw=scrub(raw, secrets)[:2000] if raw else None,
        retry_after=parse_retry_after(headers or {}),
        partial_text=partial_text,
    )


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], secrets: Sequence[str | None]
) -> ProviderError:
    """A non-2xx response → its typed error; bodies that are not JSON (proxies, Cloudflare's 413) still work."""
    raw = body.decode("utf-8", errors="replace")
    try:
        data: Any = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        data = None
    return error_from_body(status, data, secrets=secrets, headers=headers, raw=raw)
