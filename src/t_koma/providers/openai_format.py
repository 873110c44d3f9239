"""The OpenAI chat-completions wire format, shared by OpenRouter and every OpenAI-compatible server.

Typed requests become JSON bodies here, and JSON bodies and error bodies become typed responses and errors.
The streaming side (SSE chunks → events) lives in `openai_stream`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from t_koma.errors import InvalidResponseError, ProviderError, error_for_status, parse_retry_after, scrub
from t_koma.messages import (
    TOOL_CHOICE_KEYWORDS,
    ContentBlock,
    ConversationRequest,
    JSONObject,
    Message,
    ProviderResponse,
    ProviderUsage,
    ReasoningBlock,
    ReasoningConfig,
    SystemBlock,
    TextBlock,
    ToolChoice,
    ToolDefinition,
    ToolUseBlock,
    reasoning_text,
)
from t_koma.providers.base import ProviderKind
from t_koma.providers.reasoning import (
    block_from_detail,
    effective_reasoning,
    openai_reasoning_effort,
    openrouter_reasoning,
    reasoning_detail,
    verifiable_by,
)

CACHE_CONTROL: Mapping[str, str] = {"type": "ephemeral"}

# Body fields the request itself decides; pass-through `extra` fields never override them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options", "tools", "tool_choice"})

# OpenRouter's stable `metadata.error_type` values, for in-body errors whose `code` is not an HTTP status.
_ERROR_TYPE_STATUS: Mapping[str, int] = {
    "context_length_exceeded": 400,
    "max_tokens_exceeded": 400,
    "token_limit_exceeded": 400,
    "string_too_long": 400,
    "invalid_request": 400,
    "invalid_prompt": 400,
    "content_policy_violation": 400,
    "refusal": 400,
    "authentication": 401,
    "payment_required": 402,
    "permission_denied": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "unprocessable": 422,
    "rate_limit_exceeded": 429,
    "provider_unavailable": 502,
    "provider_overloaded": 503,
    "timeout": 504,
    "server": 500,
}


# --- request ------------------------------------------------------------------------------------------------


def build_body(
    request: ConversationRequest,
    *,
    kind: ProviderKind,
    model: str,
    stream: bool,
    reasoning: ReasoningConfig | None = None,
    cache_breakpoints: bool = False,
    default_max_tokens: int | None = None,
) -> JSONObject:
    """The `POST /chat/completions` body for a `kind` upstream (`openrouter` or `openai_compatible`) and `model`.
    `reasoning` is the model's configured reasoning (the request's own `reasoning` overrides it).
    `cache_breakpoints` puts `cache_control` on the system prompt and the last user message (for upstreams that
    cache only at explicit breakpoints)."""
    body: JSONObject = {key: value for key, value in request.extra.items() if key not in _RESERVED}
    body["model"] = model
    body["messages"] = build_messages(
        request.system, request.messages, kind=kind, model=model, cache_breakpoints=cache_breakpoints
    )
    if request.tools:
        body["tools"] = [tool_to_wire(tool) for tool in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = tool_choice_to_wire(request.tool_choice)
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    elif default_max_tokens is not None and "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = default_max_tokens
    _add_reasoning_field(body, kind, reasoning, request.reasoning)
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _add_reasoning_field(
    body: JSONObject, kind: ProviderKind, configured: ReasoningConfig | None, override: ReasoningConfig | None
) -> None:
    """OpenRouter's `reasoning` object, or an OpenAI-compatible server's `reasoning_effort`, from the effective
    configuration. A pass-through field of the same name (a `/v1` caller's own) is kept unless this request
    carries a reasoning override: the override is the caller's choice already mapped."""
    config = effective_reasoning(configured, override)
    value: JSONObject | str | None
    if kind == "openrouter":
        key, value = "reasoning", openrouter_reasoning(config)
    else:
        key, value = "reasoning_effort", openai_reasoning_effort(config)
    if value is not None and (override is not None or key not in body):
        body[key] = value


def build_messages(
    system: Sequence[SystemBlock],
    messages: Iterable[Message],
    *,
    kind: ProviderKind,
    model: str,
    cache_breakpoints: bool = False,
) -> list[JSONObject]:
    """System blocks → one system message; assistant tool calls → `tool_calls`; each tool result → its own
    `role: tool` message linked by `tool_call_id`. Assistant messages carry back the reasoning the `kind`/`model`
    target can verify (`providers.reasoning.verifiable_by`)."""
    out: list[JSONObject] = []
    if system:
        out.append(_system_message(system, cache_breakpoints))
    last_user: JSONObject | None = None
    for message in messages:
        if message.role == "assistant":
            wire = _assistant_message(message, kind, model)
            if wire is not None:
                out.append(wire)
            continue
        for result in message.tool_results:
            content = f"Error: {result.content}" if result.is_error else result.content
            out.append({"role": "tool", "tool_call_id": result.tool_use_id, "content": content})
        texts = [block.text for block in message.content if isinstance(block, TextBlock)]
        if texts:
            last_user = {"role": "user", "content": texts[0] if len(texts) == 1 else _text_parts(texts)}
            out.append(last_user)
    if cache_breakpoints and last_user is not None:
        parts = last_user["content"]
        last_user["content"] = parts = _text_parts([parts]) if isinstance(parts, str) else parts
        parts[-1]["cache_control"] = dict(CACHE_CONTROL)
    return out


def _system_message(system: Sequence[SystemBlock], cache_breakpoints: bool) -> JSONObject:
    if not cache_breakpoints:
        return {"role": "system", "content": "\n\n".join(block.text for block in system)}
    parts = _text_parts([block.text for block in system])
    cached = [index for index, block in enumerate(system) if block.cache]
    if cached:
        parts[cached[-1]]["cache_control"] = dict(CACHE_CONTROL)
    return {"role": "system", "content": parts}


def _text_parts(texts: Iterable[str]) -> list[JSONObject]:
    return [{"type": "text", "text": text} for text in texts]


def _assistant_message(message: Message, kind: ProviderKind, model: str) -> JSONObject | None:
    text = message.text
    calls = message.tool_uses
    if not text and not calls:
        return None
    wire: JSONObject = {"role": "assistant", "content": text or None}
    if calls:
        wire["tool_calls"] = [
            # Arguments that were invalid JSON go back as `{}`: several upstreams reject the raw string with 400.
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": _dumps(call.input)}}
            for call in calls
        ]
    reasoning = message.reasoning
    if reasoning:
        _add_reasoning_back(wire, verifiable_by(kind, model, reasoning), kind, has_calls=bool(calls))
    return wire


def _add_reasoning_back(wire: JSONObject, kept: list[ReasoningBlock], kind: ProviderKind, *, has_calls: bool) -> None:
    """OpenRouter: every kept item as `reasoning_details`, in order (Gemini 3 refuses a tool loop without them).
    OpenAI-compatible: the kept text as `reasoning_content`, only beside tool calls (DeepSeek requires it there)."""
    if not kept:
        return
    if kind == "openrouter":
        wire["reasoning_details"] = [reasoning_detail(block) for block in kept]
    elif has_calls:
        text = reasoning_text(kept)
        if text:
            wire["reasoning_content"] = text


def tool_to_wire(tool: ToolDefinition) -> JSONObject:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)},
    }


def tool_choice_to_wire(choice: ToolChoice) -> str | JSONObject:
    if choice in TOOL_CHOICE_KEYWORDS:
        return choice
    return {"type": "function", "function": {"name": choice}}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- response -----------------------------------------------------------------------------------------------


def parse_completion(
    body: Any, *, provider: str, requested_model: str, secrets: tuple[str, ...] = ()
) -> ProviderResponse:
    """A non-streaming body → `ProviderResponse`. A body that carries an error (top level, or
    `finish_reason: "error"` beside partial output) raises the typed error with the partial text."""
    if not isinstance(body, Mapping):
        raise InvalidResponseError(f"{provider}: response is not a JSON object", provider=provider)
    upstream = _str_or_none(body.get("provider"))
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else None
    message = choice.get("message") if choice is not None else None
    message = message if isinstance(message, Mapping) else {}
    text = content_text(message.get("content"))
    error = (choice.get("error") if choice is not None else None) or body.get("error")
    if error is not None or (choice is not None and choice.get("finish_reason") == "error"):
        payload = error if isinstance(error, Mapping) else {"message": str(error or "upstream reported an error")}
        raise error_from_payload(
            payload, provider=provider, upstream_provider=upstream, partial_text=text, secrets=secrets
        )
    if choice is None:
        raise InvalidResponseError(f"{provider}: response has no choices", provider=provider)
    content: list[ContentBlock] = reasoning_blocks(
        message.get("reasoning_details"), message.get("reasoning") or message.get("reasoning_content"), requested_model
    )
    if text:
        content.append(TextBlock(text))
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            content.append(tool_call_from_wire(call))
    return ProviderResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or requested_model),
        content=tuple(content),
        usage=parse_usage(body.get("usage")),
        stop_reason=_str_or_none(choice.get("finish_reason")),
        upstream_provider=upstream,
    )


def reasoning_blocks(details: Any, plain: Any, model: str) -> list[ContentBlock]:
    """A message's reasoning as blocks: its complete `reasoning_details` items, in order; or, when it has none,
    its plain `reasoning` / `reasoning_content` text as one `openai` block (shown, but only sent back to an
    OpenAI-compatible server). `model` is the model asked for, which produced them."""
    blocks: list[ContentBlock] = []
    if type(details) is list:
        blocks.extend(block for block in (block_from_detail(item, model) for item in details) if block is not None)
    if not blocks and plain and type(plain) is str:
        blocks.append(ReasoningBlock(origin="openai", kind="text", text=plain, model=model))
    return blocks


def content_text(content: Any) -> str:
    """`message.content` as text: a string, a list of content parts, or null."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "") for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def tool_call_from_wire(call: Mapping[str, Any]) -> ToolUseBlock:
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    return tool_use(str(call.get("id") or ""), str(function.get("name") or ""), function.get("arguments"))


def tool_use(call_id: str, name: str, arguments: Any) -> ToolUseBlock:
    """A tool call from its wire parts. Empty arguments mean `{}`; arguments that are not a JSON object are kept
    raw with `arguments_error` set, never dropped. A missing id is replaced so history never carries `""`."""
    call_id = call_id or new_call_id()
    if isinstance(arguments, Mapping):
        return ToolUseBlock(call_id, name, dict(arguments))
    raw = arguments if isinstance(arguments, str) else ("" if arguments is None else _dumps(arguments))
    if not raw.strip():
        return ToolUseBlock(call_id, name, {})
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ToolUseBlock(
            call_id, name, {}, raw_arguments=raw, arguments_error=f"arguments are not valid JSON: {exc}"
        )
    if not isinstance(value, dict):
        error = f"arguments must be a JSON object, got {type(value).__name__}"
        return ToolUseBlock(call_id, name, {}, raw_arguments=raw, arguments_error=error)
    return ToolUseBlock(call_id, name, value)


_call_counter = 0


def new_call_id() -> str:
    global _call_counter
    _call_counter += 1
    return f"call_tk{time.time_ns():x}{_call_counter:04x}"


def parse_usage(data: Any) -> ProviderUsage | None:
    """OpenAI/OpenRouter `usage` → `ProviderUsage`; optional counts stay None when the upstream did not say."""
    if not isinstance(data, Mapping):
        return None
    prompt_details = data.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, Mapping) else {}
    completion_details = data.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, Mapping) else {}
    cache_read = _int_or_none(prompt_details.get("cached_tokens"))
    cache_write = _int_or_none(prompt_details.get("cache_write_tokens"))
    return ProviderUsage(
        input_tokens=_int_or_none(data.get("prompt_tokens")) or 0,
        output_tokens=_int_or_none(data.get("completion_tokens")) or 0,
        cache_read_tokens=cache_read if cache_read is not None else _int_or_none(data.get("cache_read_input_tokens")),
        cache_creation_tokens=(
            cache_write if cache_write is not None else _int_or_none(data.get("cache_creation_input_tokens"))
        ),
        reasoning_tokens=_int_or_none(completion_details.get("reasoning_tokens")),
        cost=_float_or_none(data.get("cost")),
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- errors -------------------------------------------------------------------------------------------------


def error_from_payload(
    error: Mapping[str, Any],
    *,
    provider: str,
    status: int | None = None,
    upstream_provider: str | None = None,
    partial_text: str = "",
    retry_after: float | None = None,
    secrets: tuple[str, ...] = (),
) -> ProviderError:
    """`{code, message, metadata}` (an HTTP error body's `error`, an in-stream `error` chunk, or
    `choices[0].error`) → the typed error. `status` (the HTTP status) wins over `code` when given."""
    metadata = error.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    status = status or _status_of(error, metadata)
    message = str(error.get("message") or f"HTTP {status}")
    upstream = _str_or_none(metadata.get("provider_name")) or upstream_provider
    raw_value = metadata.get("raw")
    raw = None if raw_value is None else raw_value if isinstance(raw_value, str) else _dumps(raw_value)
    reasons = metadata.get("reasons")
    reason_texts = tuple(str(reason) for reason in reasons) if isinstance(reasons, list) else ()
    text = f"{provider}: {message} (code {status}"
    text += f", upstream {upstream}" if upstream else ""
    text += f", reasons: {', '.join(reason_texts)}" if reason_texts else ""
    text += f"): {raw[:300]}" if raw else ")"
    return error_for_status(
        status,
        scrub(text, secrets),
        provider=provider,
        upstream_provider=upstream,
        raw=scrub(raw, secrets) if raw is not None else None,
        retry_after=retry_after if retry_after is not None else _rate_limit_reset(metadata),
        reasons=reason_texts,
        partial_text=partial_text,
    )


def _status_of(error: Mapping[str, Any], metadata: Mapping[str, Any]) -> int:
    code = error.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) <= 599:
        return int(code)
    error_type = metadata.get("error_type") or error.get("type") or code
    return _ERROR_TYPE_STATUS.get(str(error_type), 502)


def _rate_limit_reset(metadata: Mapping[str, Any]) -> float | None:
    """Seconds until `metadata.headers.X-RateLimit-Reset` (epoch ms), which free-model 429 bodies carry."""
    headers = metadata.get("headers")
    if not isinstance(headers, Mapping):
        return None
    reset = _float_or_none(headers.get("X-RateLimit-Reset"))
    if reset is None:
        return None
    return max(0.0, reset / 1000.0 - time.time())


def parse_http_error(
    status: int, raw: bytes, headers: Mapping[str, str], *, provider: str, secrets: tuple[str, ...] = ()
) -> ProviderError:
    """A non-2xx response → the typed error, with `Retry-After` (429/503/402 in-flight budget) when sent."""
    retry_after = parse_retry_after(headers)
    try:
        body = orjson.loads(raw.strip())
    except orjson.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        upstream = _str_or_none(body.get("provider")) if isinstance(body, Mapping) else None
        return error_from_payload(
            error,
            provider=provider,
            status=status,
            upstream_provider=upstream,
            retry_after=retry_after,
            secrets=secrets,
        )
    if isinstance(error, str):
        detail = error
    elif isinstance(body, Mapping) and isinstance(body.get("message"), str):
        detail = str(body["message"])
    else:
        detail = raw[:300].decode("utf-8", "replace").strip() or "no body"
    return error_for_status(
        status, scrub(f"{provider}: HTTP {status}: {detail}", secrets), provider=provider, retry_after=retry_after
    )
