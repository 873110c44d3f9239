"""Assembles an OpenAI-format chat-completions stream (the `data:` payloads of its SSE events) into typed
stream events and one final `ProviderResponse`.

It owns the wire traps: the final usage chunk that repeats a choice and its `finish_reason`, in-stream `error`
chunks (also as the only event), tool-call deltas keyed by `index` with the id only in the first delta and the
arguments split across chunks (or an index reused for a new call), empty and unparseable arguments, and a
stream that ends without `[DONE]` or a finish reason.

Reasoning arrives as readable `delta.reasoning` (`reasoning_content` on some servers) and as `delta.reasoning_details`
pieces: the pieces of one item share an `index` and are merged (text concatenated, `signature` / `data` / `id` /
`format` taken as they come, opaque values never altered); a piece of another type at a known index starts a new
item, and pieces without an index are items of their own. The final response lists the merged items first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from t_koma.providers.openai_format import error_from_payload, parse_usage, reasoning_blocks, tool_use

_NO_EVENTS: Sequence[StreamEvent] = ()
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class _PendingCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.name = ""
        self.arguments: list[str] = []


_DETAIL_FIELDS = ("signature", "data", "id", "format")
_READABLE_KEYS = {"reasoning.text": "text", "reasoning.summary": "summary"}


class _PendingDetail:
    """One `reasoning_details` item being assembled from its streamed pieces."""

    __slots__ = ("fields", "index", "readable", "text_key", "type")

    def __init__(self, item_type: Any, index: int | None) -> None:
        self.type = item_type
        self.index = index
        self.text_key: str | None = _READABLE_KEYS.get(item_type) if type(item_type) is str else None
        self.readable: list[str] = []
        self.fields: dict[str, Any] = {}

    def add(self, piece: dict[str, Any]) -> str:
        """Merges one piece; returns its readable text ("" when it has none)."""
        for name in _DETAIL_FIELDS:
            value = piece.get(name)
            if value is not None:
                self.fields[name] = value
        text = piece.get(self.text_key) if self.text_key is not None else None
        if text and type(text) is str:
            self.readable.append(text)
            return text
        return ""

    def item(self) -> dict[str, Any]:
        item = {"type": self.type, **self.fields}
        if self.text_key is not None:
            item[self.text_key] = "".join(self.readable)
        if self.index is not None:
            item["index"] = self.index
        return item


class StreamAssembler:
    """Feed each SSE `data` payload to `feed`; call `end()` if the body ends without `[DONE]`.

    `feed` returns the events the payload completes (the last batch ends with `Finish`) and raises the typed
    `ProviderError`, with the text so far as `partial_text`, when the stream reports or is an error."""

    __slots__ = (
        "_by_index",
        "_calls",
        "_calls_emitted",
        "_chunks",
        "_detail_at",
        "_details",
        "_provider",
        "_requested_model",
        "_secrets",
        "_text",
        "_thoughts",
        "done",
        "finish_reason",
        "id",
        "model",
        "upstream_provider",
        "usage",
    )

    def __init__(self, *, provider: str, requested_model: str, secrets: tuple[str, ...] = ()) -> None:
        self._provider = provider
        self._secrets = secrets
        self._requested_model = requested_model
        self._text: list[str] = []
        self._thoughts: list[str] = []
        self._details: list[_PendingDetail] = []
        self._detail_at: dict[int, _PendingDetail] = {}
        self._calls: list[_PendingCall] = []
        self._by_index: dict[Any, _PendingCall] = {}
        self._calls_emitted: list[ToolUseBlock] | None = None
        self._chunks = 0
        self.done = False
        self.id = ""
        self.model = requested_model
        self.finish_reason: str | None = None
        self.upstream_provider: str | None = None
        self.usage: ProviderUsage | None = None

    @property
    def partial_text(self) -> str:
        return "".join(self._text)

    def feed(self, data: str) -> Sequence[StreamEvent]:
        if data == "[DONE]":
            return self._finish()
        try:
            chunk = _loads(data)
        except _JSONDecodeError:
            if not data or data.isspace():  # checked here, off the path of every well-formed chunk
                return _NO_EVENTS
            raise self._invalid(f"stream chunk is not JSON: {data[:200]!r}") from None
        if type(chunk) is not dict:
            raise self._invalid(f"stream chunk is not a JSON object: {data[:200]!r}")
        self._chunks += 1
        if self._chunks == 1:
            self.id = str(chunk.get("id") or "")
            model = chunk.get("model")
            if model:
                self.model = str(model)
        upstream = chunk.get("provider")
        if upstream:
            self.upstream_provider = upstream if type(upstream) is str else str(upstream)
        if chunk.get("error") is not None:
            raise self._error(chunk["error"])
        usage = chunk.get("usage")
        if usage:
            self.usage = parse_usage(usage)
        choices = chunk.get("choices")
        if not choices:
            return _NO_EVENTS
        if type(choices) is not list:
            raise self._invalid(f"stream chunk's choices is not a list: {data[:200]!r}")
        choice = choices[0]
        if type(choice) is not dict:
            raise self._invalid(f"stream choice is not a JSON object: {data[:200]!r}")
        delta = choice.get("delta")
        events: list[StreamEvent] | None = None
        if delta and type(delta) is dict:
            reasoning = delta.get("reasoning")
            details = delta.get("reasoning_details")
            if reasoning or details or "reasoning_content" in delta:
                events = self._reasoning(reasoning or delta.get("reasoning_content"), details)
            content = delta.get("content")
            if content and type(content) is str:
                self._text.append(content)
                if events is None:
                    events = [TextDelta(content)]
                else:
                    events.append(TextDelta(content))
            tool_calls = delta.get("tool_calls")
            if tool_calls:
                self._tool_deltas(tool_calls)
        finish = choice.get("finish_reason")
        if finish:
            if finish == "error":
                raise self._error(choice.get("error") or {"message": "upstream ended the stream with an error"})
            self.finish_reason = finish
            calls = self._emit_calls()
            if calls:
                events = (events or []) + calls
        return events or _NO_EVENTS

    def end(self) -> Sequence[StreamEvent]:
        """The body ended. Without `[DONE]` that is fine only after a finish reason; otherwise the stream was
        cut and a retryable error keeps the partial text."""
        if self.done:
            return _NO_EVENTS
        if self.finish_reason is None:
            raise UpstreamError(
                f"{self._provider}: stream ended before the response finished",
                provider=self._provider,
                upstream_provider=self.upstream_provider,
                partial_text=self.partial_text,
            )
        return self._finish()

    def _reasoning(self, reasoning: Any, details: Any) -> list[StreamEvent] | None:
        """Keeps a chunk's reasoning; its readable text is the `reasoning` string, or else the text of its
        `reasoning_details` pieces (upstreams that send both repeat the same text in each)."""
        text = reasoning if type(reasoning) is str else ""
        if text:
            self._thoughts.append(text)
        if type(details) is list:
            readable = self._merge_details(details)
            text = text or readable
        return [ReasoningDelta(text)] if text else None

    def _merge_details(self, pieces: list[Any]) -> str:
        readable = ""
        for piece in pieces:
            if type(piece) is not dict:
                continue
            index = piece.get("index")
            index = index if type(index) is int else None
            piece_type = piece.get("type")
            pending = self._detail_at.get(index) if index is not None else None
            if pending is None or (piece_type is not None and piece_type != pending.type):
                pending = _PendingDetail(piece_type, index)
                self._details.append(pending)
                if index is not None:
                    self._detail_at[index] = pending
            readable += pending.add(piece)
        return readable

    def _tool_deltas(self, deltas: Any) -> None:
        for delta in deltas:
            if not isinstance(delta, Mapping):
                continue
            index = delta.get("index")
            call_id = delta.get("id") or ""
            slot = self._by_index.get(index) if index is not None else self._slot_without_index(call_id)
            if slot is None or (call_id and slot.id and call_id != slot.id):
                # A new id at a known index is a new call (some upstreams reuse index 0 for every call).
                slot = _PendingCall(call_id)
                self._calls.append(slot)
                self._by_index[index if index is not None else (None, len(self._calls))] = slot
            elif call_id and not slot.id:
                slot.id = call_id
            function = delta.get("function")
            if isinstance(function, Mapping):
                name = function.get("name")
                if name and not slot.name:
                    slot.name = str(name)
                arguments = function.get("arguments")
                if arguments:
                    slot.arguments.append(arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode())

    def _slot_without_index(self, call_id: str) -> _PendingCall | None:
        if call_id:
            return next((call for call in self._calls if call.id == call_id), None)
        return self._calls[-1] if self._calls else None

    def _emit_calls(self) -> list[StreamEvent]:
        if self._calls_emitted is not None:
            return []  # the usage chunk repeats finish_reason: the calls were already emitted
        self._calls_emitted = [tool_use(call.id, call.name, "".join(call.arguments)) for call in self._calls]
        return [ToolCallEvent(call) for call in self._calls_emitted]

    def _finish(self) -> Sequence[StreamEvent]:
        self.done = True
        events: list[StreamEvent] = list(self._emit_calls())
        if self.usage is not None:
            events.append(UsageEvent(self.usage))
        events.append(Finish(self.response()))
        return events

    def response(self) -> ProviderResponse:
        text = self.partial_text
        content: list[ContentBlock] = []
        if self._details or self._thoughts:
            details = [pending.item() for pending in self._details]
            content = reasoning_blocks(details, "".join(self._thoughts), self._requested_model)
        if text:
            content.append(TextBlock(text))
        content.extend(self._calls_emitted or ())
        return ProviderResponse(
            id=self.id,
            model=self.model,
            content=tuple(content),
            usage=self.usage,
            stop_reason=self.finish_reason,
            upstream_provider=self.upstream_provider,
        )

    def _error(self, error: Any) -> ProviderError:
        payload = error if isinstance(error, Mapping) else {"message": str(error)}
        return error_from_payload(
            payload,
            provider=self._provider,
            upstream_provider=self.upstream_provider,
            partial_text=self.partial_text,
            secrets=self._secrets,
        )

    def _invalid(self, message: str) -> InvalidResponseError:
        return InvalidResponseError(
            scrub(f"{self._provider}: {message}", self._secrets),
            provider=self._provider,
            upstream_provider=self.upstream_provider,
            partial_text=self.partial_text,
        )
