"""Assembles an OpenAI-format chat-completions stream (the `data:` payloads of its SSE events) into typed
stream events and one final `ProviderResponse`.

It owns the wire traps: the final usage chunk that repeats a choice and its `finish_reason`, in-stream `error`
chunks (also as the only event), tool-call deltas keyed by `index` with the id only in the first delta and the
arguments split across chunks (or an index reused for a new call), empty and unparseable arguments, and a
stream that ends without `[DONE]` or a finish reason."""

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
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolCallEvent,
    ToolUseBlock,
    UsageEvent,
)
from t_koma.providers.openai_format import error_from_payload, parse_usage, tool_use

_NO_EVENTS: Sequence[StreamEvent] = ()
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class _PendingCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.name = ""
        self.arguments: list[str] = []


class StreamAssembler:
    """Feed each SSE `data` payload to `feed`; call `end()` if the body ends without `[DONE]`.

    `feed` returns the events the payload completes (the last batch ends with `Finish`) and raises the typed
    `ProviderError`, with the text so far as `partial_text`, when the stream reports or is an error."""

    __slots__ = (
        "_by_index",
        "_calls",
        "_calls_emitted",
        "_chunks",
        "_provider",
        "_secrets",
        "_text",
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
        self._text: list[str] = []
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
        if not data or data.isspace():
            return _NO_EVENTS
        try:
            chunk = _loads(data)
        except _JSONDecodeError:
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
            self.upstream_provider = str(upstream)
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
            content = delta.get("content")
            if content and type(content) is str:
                self._text.append(content)
                events = [TextDelta(content)]
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
        content: list[ContentBlock] = [TextBlock(text)] if text else []
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
