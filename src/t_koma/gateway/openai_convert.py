"""OpenAI chat-completions JSON ↔ t-koma's typed models, for `/v1/chat/completions`: the request body becomes a
`ConversationRequest` plus the model chain; a `ProviderResponse` or stream events become OpenAI-shaped JSON.
Nothing else in the gateway touches the OpenAI wire format.

Reasoning uses OpenRouter's shapes both ways: the `reasoning` object and `reasoning_effort` become the request's
`ReasoningConfig`; an assistant message's `reasoning_details` (or, without them, its `reasoning` /
`reasoning_content` text) become its `ReasoningBlock`s, which the provider sends back where they can be verified;
responses carry `message.reasoning` (readable text) and `message.reasoning_details` (every item, opaque ones
included), streamed as `delta.reasoning` pieces and one complete `delta.reasoning_details` before the finish."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from t_koma.errors import TKomaError
from t_koma.messages import (
    REASONING_EFFORTS,
    ContentBlock,
    ConversationRequest,
    JSONObject,
    Message,
    ProviderResponse,
    ProviderUsage,
    ReasoningBlock,
    ReasoningConfig,
    ReasoningEffort,
    Role,
    SystemBlock,
    TextBlock,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
    as_reasoning_effort,
    reasoning_text,
)
from t_koma.providers.anthropic_wire import THINKING_FORMAT
from t_koma.providers.reasoning import block_from_detail, reasoning_detail

DEFAULT_MODEL_NAMES = ("default", "t-koma")
_MAPPED_FIELDS = frozenset(
    {
        "model",
        "models",
        "messages",
        "tools",
        "tool_choice",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "reasoning",
        "reasoning_effort",
    }
)
_REASONING_KEYS = ("effort", "max_tokens", "exclude", "enabled")
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "refusal": "content_filter",
}


class RequestError(TKomaError):
    """The caller's request body is not a valid chat-completions request (HTTP 400)."""

    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ChatCompletionRequest:
    model: str
    chain: tuple[str, ...]
    stream: bool
    conversation: ConversationRequest


def parse_request(body: bytes, default_chain: tuple[str, ...]) -> ChatCompletionRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise RequestError("'model' is required: an alias, 'default', or a model ID", param="model")
    chain = _chain(model.strip(), data.get("models"), default_chain)
    system, messages = _messages(data.get("messages"))
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise RequestError("'max_tokens' must be a positive integer", param="max_tokens")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", param="stream")
    _check_n(data.get("n"))
    conversation = ConversationRequest(
        system=system,
        messages=messages,
        tools=_tools(data.get("tools")),
        tool_choice=_tool_choice(data.get("tool_choice")),
        max_tokens=max_tokens,
        reasoning=_reasoning(data.get("reasoning"), data.get("reasoning_effort")),
        extra={key: value for key, value in data.items() if key not in _MAPPED_FIELDS},
    )
    return ChatCompletionRequest(model.strip(), chain, stream, conversation)


def _check_n(n: Any) -> None:
    """Only one choice is returned, so `n` other than 1 (which the upstream would bill n times) is refused."""
    if n is not None and (n != 1 or isinstance(n, bool)):
        raise RequestError(f"'n' must be 1 (got {n!r}): the gateway returns one choice per request", param="n")


def _reasoning(raw: Any, effort: Any) -> ReasoningConfig | None:
    """`reasoning` (OpenRouter's object) and `reasoning_effort` (OpenAI's string) as one setting; None when the
    caller sent neither. An effort in both must agree; `effort` and `max_tokens` exclude each other."""
    config = _reasoning_object(raw)
    if effort is None:
        return config
    level = _effort(effort, "reasoning_effort")
    if config is None:
        return ReasoningConfig(effort=level)
    if config.max_tokens is not None or config.effort not in (None, level):
        raise RequestError("send one reasoning amount: 'reasoning_effort' or 'reasoning'", param="reasoning_effort")
    return ReasoningConfig(effort=level, exclude=config.exclude, enabled=config.enabled)


def _reasoning_object(raw: Any) -> ReasoningConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RequestError(f"'reasoning' must be an object with {_keys_text()}", param="reasoning")
    unknown = sorted(set(raw) - set(_REASONING_KEYS))
    if unknown:
        raise RequestError(f"'reasoning' has unknown key {unknown[0]!r}; allowed: {_keys_text()}", param="reasoning")
    effort = None if raw.get("effort") is None else _effort(raw["effort"], "reasoning.effort")
    budget = raw.get("max_tokens")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
        raise RequestError("'reasoning.max_tokens' must be a positive integer", param="reasoning")
    if effort is not None and budget is not None:
        raise RequestError("'reasoning' takes 'effort' or 'max_tokens', not both", param="reasoning")
    return ReasoningConfig(
        effort=effort, max_tokens=budget, exclude=_flag(raw, "exclude"), enabled=_flag(raw, "enabled")
    )


def _effort(value: Any, name: str) -> ReasoningEffort:
    effort = as_reasoning_effort(value)
    if effort is not None:
        return effort
    allowed = ", ".join(REASONING_EFFORTS)
    raise RequestError(f"'{name}' must be one of {allowed} (got {value!r})", param=name.split(".")[0])


def _flag(raw: dict[str, Any], key: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise RequestError(f"'reasoning.{key}' must be a boolean", param="reasoning")
    return value


def _keys_text() -> str:
    return ", ".join(_REASONING_KEYS)


def _chain(model: str, extra_models: Any, default_chain: tuple[str, ...]) -> tuple[str, ...]:
    refs = list(default_chain) if model in DEFAULT_MODEL_NAMES else [model]
    if extra_models is not None:
        if not isinstance(extra_models, list) or not all(isinstance(m, str) and m.strip() for m in extra_models):
            raise RequestError("'models' must be a list of model names", param="models")
        refs.extend(m.strip() for m in extra_models)
    return tuple(dict.fromkeys(refs))


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"{where}: only text content parts are supported", param="messages")
            parts.append(part["text"])
        return "".join(parts)
    raise RequestError(f"{where}: 'content' must be a string or a list of text parts", param="messages")


def _messages(raw: Any) -> tuple[tuple[SystemBlock, ...], tuple[Message, ...]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list", param="messages")
    system: list[SystemBlock] = []
    turns: list[tuple[Role, list[ContentBlock]]] = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise RequestError(f"{where} must be an object", param="messages")
        role = item.get("role")
        if role in ("system", "developer"):
            system.append(SystemBlock(_text(item.get("content"), where)))
            continue
        if role == "user":
            _append(turns, "user", [TextBlock(_text(item.get("content"), where))])
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(item, where))
        elif role == "tool":
            call_id = item.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise RequestError(f"{where}: a tool message needs 'tool_call_id'", param="messages")
            _append(turns, "user", [ToolResultBlock(call_id, _text(item.get("content"), where))])
        else:
            raise RequestError(f"{where}: unknown role {role!r}", param="messages")
    return tuple(system), tuple(Message(role, tuple(blocks)) for role, blocks in turns)


def _append(turns: list[tuple[Role, list[ContentBlock]]], role: Role, blocks: list[ContentBlock]) -> None:
    """Consecutive messages of one role (tool results and the user's next words) become one message."""
    if turns and turns[-1][0] == role:
        turns[-1][1].extend(blocks)
    else:
        turns.append((role, blocks))


def _assistant_blocks(item: Mapping[str, Any], where: str) -> list[ContentBlock]:
    blocks: list[ContentBlock] = list(_reasoning_blocks(item, where))
    text = _text(item.get("content"), where)
    if text:
        blocks.append(TextBlock(text))
    calls = item.get("tool_calls") or []
    if not isinstance(calls, list):
        raise RequestError(f"{where}: 'tool_calls' must be a list", param="messages")
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str):
            raise RequestError(f"{where}: each tool call needs 'id' and 'function'", param="messages")
        name, arguments = function.get("name"), function.get("arguments") or "{}"
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise RequestError(f"{where}: tool call function needs 'name' and string 'arguments'", param="messages")
        blocks.append(_tool_use(call["id"], name, arguments))
    return blocks


def _reasoning_blocks(item: Mapping[str, Any], where: str) -> list[ReasoningBlock]:
    """The reasoning a caller sends back on an assistant message: its `reasoning_details` items in order (items of
    an unknown type are skipped); or, when it has none, its `reasoning` / `reasoning_content` text, which only an
    OpenAI-compatible server takes back. An Anthropic-format item also becomes a native Anthropic block, placed
    first, so that Claude's signed thinking survives the loop whether the chain reaches it natively or through
    OpenRouter (each provider keeps only the blocks of its own origin)."""
    details = item.get("reasoning_details")
    if details is not None and not isinstance(details, list):
        raise RequestError(f"{where}: 'reasoning_details' must be a list", param="messages")
    items: list[ReasoningBlock] = []
    for position, detail in enumerate(details or ()):
        if not isinstance(detail, dict):
            raise RequestError(f"{where}: reasoning_details[{position}] must be an object", param="messages")
        block = block_from_detail(detail, None)
        if block is not None:
            items.append(block)
    if items:
        return [*(replace(block, origin="anthropic") for block in items if _anthropic_thinking(block)), *items]
    plain = item.get("reasoning") or item.get("reasoning_content")
    if plain is None or plain == "":
        return []
    if not isinstance(plain, str):
        raise RequestError(f"{where}: 'reasoning' must be a string", param="messages")
    return [ReasoningBlock(origin="openai", kind="text", text=plain, model=None)]


def _anthropic_thinking(block: ReasoningBlock) -> bool:
    """An item that is a complete Anthropic thinking block: signed text, or redacted (encrypted) data."""
    if block.format != THINKING_FORMAT:
        return False
    return block.signature is not None if block.kind == "text" else block.kind == "encrypted" and block.data is not None


def _tool_use(call_id: str, name: str, arguments: str) -> ToolUseBlock:
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return ToolUseBlock(call_id, name, parsed)
    return ToolUseBlock(call_id, name, {}, raw_arguments=arguments, arguments_error="arguments are not a JSON object")


def _tools(raw: Any) -> tuple[ToolDefinition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RequestError("'tools' must be a list", param="tools")
    tools = []
    for tool in raw:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError("each tool must be {'type': 'function', 'function': {'name', ...}}", param="tools")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        tools.append(ToolDefinition(function["name"], str(function.get("description") or ""), parameters))
    return tuple(tools)


def _tool_choice(raw: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        function = raw.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    raise RequestError("'tool_choice' must be 'auto', 'none', 'required' or a function", param="tool_choice")


# --- responses ------------------------------------------------------------------------------------------


def completion_id() -> str:
    """A fresh `chatcmpl-<32 hex>` ID. An identifier, not a secret: Python's PRNG (seeded from the OS at start-up)
    instead of `uuid4`, whose `os.urandom` is a system call on every streamed response."""
    return f"chatcmpl-{random.getrandbits(128):032x}"


def finish_reason(stop_reason: str | None, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    return _FINISH_REASONS.get(stop_reason or "stop", "stop")


def tool_call_dict(call: ToolUseBlock) -> JSONObject:
    arguments = call.raw_arguments if call.raw_arguments is not None else orjson.dumps(call.input).decode()
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def usage_dict(usage: ProviderUsage | None) -> JSONObject:
    usage = usage or ProviderUsage()
    out: JSONObject = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if usage.cache_read_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if usage.cache_creation_tokens is not None:
        out["cache_write_tokens"] = usage.cache_creation_tokens
    if usage.cost is not None:
        out["cost"] = usage.cost
    return out


def reasoning_details(blocks: Iterable[ReasoningBlock]) -> list[JSONObject]:
    """A response's `reasoning_details`: each block as an OpenRouter item (see `reasoning_item`), in order."""
    items: list[JSONObject] = []
    for block in blocks:
        item = reasoning_item(block, len(items))
        if item is not None:
            items.append(item)
    return items


def reasoning_item(block: ReasoningBlock, position: int) -> JSONObject | None:
    """One block as a `reasoning_details` item: an OpenRouter item exactly as it arrived; native Anthropic thinking
    as OpenRouter shows Claude's (`reasoning.text` with its signature, or `reasoning.encrypted` for redacted
    thinking; format `anthropic-claude-v1`, numbered by `position`). Plain `openai` text has no item form (None):
    it is in `message.reasoning`, which callers send back as such."""
    if block.origin == "openai":
        return None
    item = reasoning_detail(block)
    if block.origin == "anthropic":
        item.setdefault("format", THINKING_FORMAT)
        item.setdefault("index", position)
    return item


def _add_reasoning(message: JSONObject, content: Sequence[ContentBlock]) -> None:
    """`message.reasoning` (readable text, null when there is none) and `message.reasoning_details`, when the
    response has any reasoning."""
    blocks = [block for block in content if isinstance(block, ReasoningBlock)]
    if not blocks:
        return
    message["reasoning"] = reasoning_text(blocks) or None
    details = reasoning_details(blocks)
    if details:
        message["reasoning_details"] = details


def completion(response: ProviderResponse, model: str) -> JSONObject:
    calls = response.tool_calls
    message: JSONObject = {"role": "assistant", "content": response.text if response.text or not calls else None}
    _add_reasoning(message, response.content)
    if calls:
        message["tool_calls"] = [tool_call_dict(call) for call in calls]
    return {
        "id": response.id or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason(response.stop_reason, bool(calls))}
        ],
        "usage": usage_dict(response.usage),
    }


class ChunkWriter:
    """Server-sent `chat.completion.chunk` events of one streamed completion, as bytes ready to send."""

    __slots__ = ("_head", "_id", "created", "model")

    def __init__(self, model: str) -> None:
        self._id = completion_id()
        self.created = int(time.time())
        self.model = model
        self._head = self._prefix()

    def _prefix(self) -> bytes:
        head = orjson.dumps(
            {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        )
        return b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'

    def set_model(self, model: str) -> None:
        if model != self.model:
            self.model = model
            self._head = self._prefix()

    def _chunk(self, delta: JSONObject, finish: str | None = None) -> bytes:
        return self._head + orjson.dumps(delta) + b',"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"

    def role(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def text(self, text: str) -> bytes:
        return self._chunk({"content": text})

    def reasoning(self, text: str) -> bytes:
        return self._chunk({"reasoning": text})

    def reasoning_details(self, items: list[JSONObject]) -> bytes:
        return self._chunk({"reasoning_details": items})

    def tool_call(self, index: int, call: ToolUseBlock) -> bytes:
        return self._chunk({"tool_calls": [{"index": index, **tool_call_dict(call)}]})

    def finish(self, reason: str) -> bytes:
        return self._chunk({}, reason)

    def usage(self, usage: ProviderUsage | None) -> bytes:
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_dict(usage),
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    @staticmethod
    def error(body: JSONObject) -> bytes:
        return b"data: " + orjson.dumps(body) + b"\n\n"

    @staticmethod
    def comment(text: str) -> bytes:
        return b": " + text.replace("\n", " ").encode() + b"\n\n"

    DONE = b"data: [DONE]\n\n"
