"""Scripted upstream replies for the fake servers, independent of any wire format.

A reply says *what* the fake upstream should play (text in chunks, tool calls, usage, an error before or during
the stream, a cut or stalled stream, garbage); each fake (`openrouter.py`, `anthropic.py`) renders it in its own
wire format, streaming or not, depending on what the client asked for::

    fake.enqueue(text_reply("Hi", usage=Usage(input_tokens=3, output_tokens=1, cache_read_tokens=2)))
    fake.enqueue(tool_call_reply([("call_1", "run_shell_command", '{"command": "echo hi"}')]))
    fake.enqueue(error_reply(429, "Rate limited", headers={"Retry-After": "7"}))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

StopKind: TypeAlias = Literal["end", "tool_use", "max_tokens"]
"""Why the model stopped, neutrally; each fake maps it (`stop`/`end_turn`, `tool_calls`/`tool_use`, `length`)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token accounting the fake reports. Optional fields left None are omitted from the wire entirely."""

    input_tokens: int = 12
    output_tokens: int = 7
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: float | None = None


DEFAULT_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call; `arguments` is the raw string the model sends (may be empty or invalid JSON on purpose)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Thought:
    """One piece of reasoning a fake plays before the answer, neutrally; each fake renders it in its own format:
    readable `text` (streamed in chunks) closed by an opaque `signature` (OpenRouter: a `reasoning.text` item,
    Anthropic: a `thinking` block), or, when `encrypted` is set, an opaque item instead (OpenRouter:
    `reasoning.encrypted` with that `data`, Anthropic: `redacted_thinking`). `format` is OpenRouter's item format."""

    text: str = ""
    signature: str | None = None
    encrypted: str | None = None
    format: str = "google-gemini-v1"


@dataclass(frozen=True, slots=True)
class TextReply:
    """A successful answer: `text` then `tool_calls`, streamed in `chunk_size`-character pieces.

    `keepalive` makes the fake send keep-alive comments in streams (and leading whitespace before
    non-streaming JSON bodies), as the real upstream does on slow requests."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = DEFAULT_USAGE
    chunk_size: int = 4
    keepalive: bool = True
    stop: StopKind = "end"
    model: str | None = None
    """Model name reported back; None = echo the requested model."""
    upstream_provider: str | None = "FakeProvider"
    headers: Mapping[str, str] = field(default_factory=dict)
    reasoning: tuple[Thought, ...] = ()
    """Reasoning played before `text` (and before the tool calls)."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An HTTP error before any stream starts: status, the upstream's error body and headers."""

    status: int
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] | None = None
    error_type: str | None = None
    """Wire-level error type override (Anthropic `overloaded_error` …); None = the fake's default for `status`."""


@dataclass(frozen=True, slots=True)
class MidstreamErrorReply:
    """HTTP 200, `partial_text` streamed, then an in-stream error event (the only event when partial_text is "").
    Non-streaming, it renders as a 200 body that carries the partial text and the error."""

    partial_text: str
    code: int = 502
    message: str = "Provider disconnected"
    metadata: Mapping[str, Any] | None = None
    chunk_size: int = 4
    upstream_provider: str | None = "FakeProvider"


@dataclass(frozen=True, slots=True)
class CutStreamReply:
    """HTTP 200, `partial_text` streamed, then the connection closes with no finish and no terminator."""

    partial_text: str
    chunk_size: int = 4


@dataclass(frozen=True, slots=True)
class StallReply:
    """HTTP 200 headers (and `partial_text`, if any), then no bytes at all for `seconds`, then the stream
    closes (streaming) or the body follows (non-streaming)."""

    seconds: float
    partial_text: str = ""


@dataclass(frozen=True, slots=True)
class GarbageReply:
    """HTTP 200 with a body (or, streaming, one `data:` line) that is not valid JSON."""

    body: str = "not json"
    status: int = 200


@dataclass(frozen=True, slots=True)
class RawReply:
    """Exact bytes to send, for wire shapes the typed replies do not cover. Chunks are written one by one."""

    chunks: tuple[bytes, ...]
    status: int = 200
    content_type: str = "text/event-stream"
    headers: Mapping[str, str] = field(default_factory=dict)


Reply: TypeAlias = TextReply | ErrorReply | MidstreamErrorReply | CutStreamReply | StallReply | GarbageReply | RawReply

DEFAULT_TEXT = "Hello from the fake upstream."


def text_reply(
    text: str = DEFAULT_TEXT,
    *,
    usage: Usage | None = DEFAULT_USAGE,
    chunk_size: int = 4,
    keepalive: bool = True,
    stop: StopKind = "end",
    model: str | None = None,
    upstream_provider: str | None = "FakeProvider",
    headers: Mapping[str, str] | None = None,
    reasoning: Iterable[Thought] = (),
) -> TextReply:
    """A plain text answer, streamed as deltas of `chunk_size` characters (with keep-alive comments)."""
    return TextReply(
        text=text,
        usage=usage,
        chunk_size=chunk_size,
        keepalive=keepalive,
        stop=stop,
        model=model,
        upstream_provider=upstream_provider,
        headers=dict(headers or {}),
        reasoning=tuple(reasoning),
    )


def tool_call_reply(
    calls: Iterable[ToolCall | tuple[str, str, str]],
    *,
    text: str = "",
    usage: Usage | None = DEFAULT_USAGE,
    chunk_size: int = 4,
    keepalive: bool = True,
    model: str | None = None,
    upstream_provider: str | None = "FakeProvider",
    reasoning: Iterable[Thought] = (),
) -> TextReply:
    """An answer that calls tools: `(id, name, raw_arguments)` each; arguments stream in `chunk_size` pieces."""
    tool_calls = tuple(call if isinstance(call, ToolCall) else ToolCall(*call) for call in calls)
    return TextReply(
        text=text,
        tool_calls=tool_calls,
        usage=usage,
        chunk_size=chunk_size,
        keepalive=keepalive,
        stop="tool_use",
        model=model,
        upstream_provider=upstream_provider,
        reasoning=tuple(reasoning),
    )


def error_reply(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    error_type: str | None = None,
) -> ErrorReply:
    return ErrorReply(status, message, dict(headers or {}), metadata, error_type)


def midstream_error_reply(
    partial_text: str,
    *,
    code: int = 502,
    message: str = "Provider disconnected",
    metadata: Mapping[str, Any] | None = None,
    chunk_size: int = 4,
) -> MidstreamErrorReply:
    return MidstreamErrorReply(partial_text, code, message, metadata, chunk_size)


def cut_stream_reply(partial_text: str, *, chunk_size: int = 4) -> CutStreamReply:
    return CutStreamReply(partial_text, chunk_size)


def stall_reply(seconds: float, *, partial_text: str = "") -> StallReply:
    return StallReply(seconds, partial_text)


def garbage_reply(body: str = "not json", *, status: int = 200) -> GarbageReply:
    return GarbageReply(body, status)


def raw_reply(
    *chunks: bytes,
    status: int = 200,
    content_type: str = "text/event-stream",
    headers: Mapping[str, str] | None = None,
) -> RawReply:
    return RawReply(tuple(chunks), status, content_type, dict(headers or {}))


def split_text(text: str, size: int) -> list[str]:
    """`text` in pieces of at most `size` characters; no pieces for empty text."""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]
