"""Anthropic's streaming events (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`,
`error`) assembled into t-koma stream events: thinking and text deltas as they come, each tool call once its
`partial_json` pieces are complete, usage, and a final `Finish` with the whole response (thinking blocks with
their signatures included, in block order). Pure: fed one SSE event at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from t_koma.errors import InvalidResponseError, ProviderError, UpstreamError, scrub
from t_koma.messages import (
    ContentBlock,
    Finish,
    ProviderResponse,
    ProviderUsage,
    ReasoningDelta,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolCallEvent,
    ToolUseBlock,
    UsageEvent,
)
from t_koma.providers.anthropic_wire import (
    UPSTREAM_NAME,
    error_from_body,
    merge_usage,
    parse_usage,
    redacted_thinking_block,
    thinking_block,
    tool_use_from_json,
    total_input,
)
from t_koma.providers.sse import SSEEvent


@dataclass(slots=True)
class _Block:
    """One content block being streamed, by its `index`."""

    kind: str
    text: list[str] = field(default_factory=list)
    signature: str | None = None
    data: str | None = None
    tool_id: str = ""
    tool_name: str = ""
    initial_input: Any = None
    json_parts: list[str] = field(default_factory=list)
    call: ToolUseBlock | None = None

    def finish_tool(self) -> ToolUseBlock:
        if self.call is None:
            raw = "".join(self.json_parts)
            self.call = tool_use_from_json(self.tool_id, self.tool_name, raw, self.initial_input)
        return self.call

    def content(self, model: str) -> ContentBlock | None:
        """The finished block (None for empty text and kinds t-koma does not use)."""
        if self.kind == "text":
            return TextBlock("".join(self.text)) if self.text else None
        if self.kind == "tool_use":
            return self.finish_tool()
        if self.kind == "thinking":
            return thinking_block("".join(self.text), self.signature, model)
        if self.kind == "redacted_thinking":
            return redacted_thinking_block(self.data, model)
        return None


# A delta that arrives without its `content_block_start`: the kind of block it implies.
_DELTA_KINDS = {"input_json_delta": "tool_use", "thinking_delta": "thinking", "signature_delta": "thinking"}


class StreamAssembler:
    """Feed it the SSE events of one `POST /v1/messages` stream; `done` turns true at `message_stop`. `model` is
    the requested model (thinking blocks are stored as its own, whatever dated name the API echoes); `exclude`
    keeps thinking out of the events (the blocks still come in the final response, to be sent back)."""

    def __init__(self, model: str, secrets: Sequence[str | None] = (), *, exclude: bool = False) -> None:
        self.done = False
        self._requested_model = model
        self._exclude = exclude
        self._model = model
        self._secrets = secrets
        self._id = ""
        self._usage: ProviderUsage | None = None
        self._stop_reason: str | None = None
        self._blocks: dict[int, _Block] = {}
        self._text: list[str] = []

    @property
    def text(self) -> str:
        """All text streamed so far (what an error keeps as `partial_text`)."""
        return "".join(self._text)

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        data = self._decode(event)
        kind = data.get("type") or event.event
        if kind == "content_block_delta":
            return self._on_delta(data)
        if kind == "content_block_start":
            return self._on_block_start(data)
        if kind == "content_block_stop":
            return self._on_block_stop(data)
        if kind == "message_start":
            self._on_message_start(data)
        elif kind == "message_delta":
            self._on_message_delta(data)
        elif kind == "message_stop":
            return self._on_message_stop()
        elif kind == "error":
            raise error_from_body(None, data, secrets=self._secrets, raw=event.data, partial_text=self.text)
        return []  # `ping` and event types added after this client was written

    def unterminated(self) -> ProviderError:
        """The error for a stream that ended before `message_stop` (connection cut): retryable, text kept."""
        return UpstreamError(
            "Anthropic stream ended before message_stop (connection closed early)",
            provider="anthropic",
            upstream_provider=UPSTREAM_NAME,
            partial_text=self.text,
        )

    def _decode(self, event: SSEEvent) -> dict[str, Any]:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            preview = scrub(event.data[:200], self._secrets)
            raise InvalidResponseError(
                f"Anthropic sent a stream event that is not a JSON object: {preview!r}",
                provider="anthropic",
                upstream_provider=UPSTREAM_NAME,
                partial_text=self.text,
            )
        return data

    def _on_message_start(self, data: dict[str, Any]) -> None:
        message = data.get("message")
        if isinstance(message, dict):
            self._id = str(message.get("id") or self._id)
            self._model = str(message.get("model") or self._model)
            self._usage = parse_usage(message.get("usage")) or self._usage

    def _on_block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        start = data.get("content_block")
        start = start if isinstance(start, dict) else {}
        block = _Block(kind=str(start.get("type") or ""))
        self._blocks[_index(data)] = block
        if block.kind == "tool_use":
            block.tool_id = str(start.get("id") or "")
            block.tool_name = str(start.get("name") or "")
            block.initial_input = start.get("input")
        elif block.kind == "text":
            return self._add_text(block, start.get("text"))
        elif block.kind == "thinking":
            block.signature = _nonempty(start.get("signature"))
            return self._add_thinking(block, start.get("thinking"))
        elif block.kind == "redacted_thinking":
            block.data = _nonempty(start.get("data"))
        return []

    def _on_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        block = self._blocks.get(_index(data))
        if block is None:  # a delta without its start: treat it as the kind the delta implies
            block = _Block(kind=_DELTA_KINDS.get(str(kind), "text"))
            self._blocks[_index(data)] = block
        if kind == "text_delta":
            return self._add_text(block, delta.get("text"))
        if kind == "thinking_delta":
            return self._add_thinking(block, delta.get("thinking"))
        if kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            block.json_parts.append(delta["partial_json"])
        elif kind == "signature_delta" and isinstance(delta.get("signature"), str):
            block.signature = delta["signature"]  # one per block, sent whole (the SDKs replace, not append)
        return []  # citation deltas are not used

    def _add_text(self, block: _Block, text: Any) -> list[StreamEvent]:
        if block.kind != "text" or not isinstance(text, str) or not text:  # only what the response will hold
            return []
        block.text.append(text)
        self._text.append(text)
        return [TextDelta(text)]

    def _add_thinking(self, block: _Block, text: Any) -> list[StreamEvent]:
        if block.kind != "thinking" or not isinstance(text, str) or not text:
            return []
        block.text.append(text)
        return [] if self._exclude else [ReasoningDelta(text)]

    def _on_block_stop(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = self._blocks.get(_index(data))
        if block is None or block.kind != "tool_use" or block.call is not None:
            return []
        return [ToolCallEvent(block.finish_tool())]

    def _on_message_delta(self, data: dict[str, Any]) -> None:
        delta = data.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
            self._stop_reason = delta["stop_reason"]
        self._usage = merge_usage(self._usage, data.get("usage"))

    def _on_message_stop(self) -> list[StreamEvent]:
        self.done = True
        events: list[StreamEvent] = [
            ToolCallEvent(block.finish_tool())
            for block in self._ordered_blocks()
            if block.kind == "tool_use" and block.call is None
        ]
        response = self.response()
        if response.usage is not None:
            events.append(UsageEvent(response.usage))
        events.append(Finish(response))
        return events

    def _ordered_blocks(self) -> list[_Block]:
        return [self._blocks[index] for index in sorted(self._blocks)]

    def response(self) -> ProviderResponse:
        blocks = (block.content(self._requested_model) for block in self._ordered_blocks())
        return ProviderResponse(
            id=self._id,
            model=self._model,
            content=tuple(block for block in blocks if block is not None),
            usage=total_input(self._usage),
            stop_reason=self._stop_reason,
            upstream_provider=UPSTREAM_NAME,
        )


def _index(data: dict[str, Any]) -> int:
    index = data.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def _nonempty(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def events_for_response(response: ProviderResponse, *, exclude: bool = False) -> list[StreamEvent]:
    """A whole (non-streamed) response as the events a stream would have produced: for a proxy that answered a
    streaming request with one JSON body. `exclude` leaves the readable thinking out of the events."""
    reasoning = "" if exclude else response.reasoning_text
    events: list[StreamEvent] = [ReasoningDelta(reasoning)] if reasoning else []
    if response.text:
        events.append(TextDelta(response.text))
    events.extend(ToolCallEvent(call) for call in response.tool_calls)
    if response.usage is not None:
        events.append(UsageEvent(response.usage))
    events.append(Finish(response))
    return events
