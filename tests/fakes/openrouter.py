"""A fake OpenRouter (and generic OpenAI-compatible server) speaking the real wire format on loopback.

`POST /api/v1/chat/completions` and `GET /api/v1/models` (and the same under `/v1/` for openai_compatible
tests) play scripted replies from `tests.fakes.replies` the way OpenRouter does: SSE with `: OPENROUTER
PROCESSING` keep-alive comments, a final usage chunk that still carries a choice, `data: [DONE]`, whitespace
before slow non-streaming JSON bodies, `{error: {code, message, metadata}}` error bodies, `Retry-After`, and an
`X-Generation-Id` header. Every request is recorded. It is a raw ASGI app so that it controls exactly which bytes
go out and when (a stall really sends nothing, and ends early when the client hangs up).

Reasoning (`TextReply.reasoning`) is played as `reasoning` + `reasoning_details`, streamed in pieces or whole. Like
the real Gemini 3 behind OpenRouter, a `google/gemini-3…` request whose assistant tool-call message does not carry
back, unchanged, the `reasoning_details` that came with those calls is refused with OpenRouter's 400."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Any

import orjson
import pytest

from tests.fakes.openrouter_wire import (
    DEFAULT_MODELS,
    GEMINI_REASONING_RAW,
    KEEPALIVE,
    compat_models,
    completion_body,
    error_body,
    midstream_error_body,
    reasoning_details,
    stream_events,
    text_chunks,
)
from tests.fakes.replies import (
    CutStreamReply,
    ErrorReply,
    GarbageReply,
    MidstreamErrorReply,
    RawReply,
    Reply,
    StallReply,
    TextReply,
    text_reply,
)
from tests.fakes.server import serve

TEST_KEY = "sk-or-test-SECRET-0001"

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

_SSE = b"text/event-stream"
_JSON = b"application/json"
STRICT_REASONING_PREFIX = "google/gemini-3"
"""Models whose tool loops fail without their reasoning details sent back (OpenRouter's Gemini 3 400)."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as received. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    query: str = ""


@dataclass(frozen=True, slots=True)
class FakeUpstream:
    app: FakeOpenRouter
    url: str
    base_url: str


@dataclass(slots=True)
class _Exchange:
    """One response being played: the ASGI channels plus the generation id and the requested model."""

    receive: Receive
    send: Send
    generation_id: str
    model: str

    async def start(self, status: int, content_type: bytes, headers: Mapping[str, str] | None = None) -> None:
        raw = [(b"content-type", content_type), (b"x-generation-id", self.generation_id.encode())]
        raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    async def wait(self, seconds: float) -> None:
        """Send nothing for `seconds`, or until the client hangs up."""

        async def disconnected() -> None:
            while (await self.receive())["type"] != "http.disconnect":
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(disconnected(), timeout=seconds)


class FakeOpenRouter:
    """The ASGI app. `enqueue` replies (one per chat call, in order; an empty queue answers with the default
    text reply); `requests` records every request; `models` is the catalog served by `/models` (OpenRouter's
    shape under `/api/v1`, the bare OpenAI shape under `/v1`); `enqueue_models` scripts `/models` answers
    (error, garbage, stall) before falling back to `models`. `produced_reasoning` maps each tool call id played
    to the `reasoning_details` that came with it."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.produced_reasoning: dict[str, list[dict[str, Any]]] = {}
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self._replies: deque[Reply] = deque()
        self._model_replies: deque[Reply] = deque()
        self._ids = count(1)

    def enqueue(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def enqueue_models(self, *replies: Reply) -> None:
        self._model_replies.extend(replies)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path.endswith("/chat/completions")]

    @property
    def last_body(self) -> dict[str, Any]:
        body = self.chat_requests[-1].body
        assert body is not None
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw_body = b""
        while True:
            message = await receive()
            raw_body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        body = orjson.loads(raw_body) if raw_body.strip() else None
        query = scope.get("query_string", b"").decode()
        self.requests.append(RecordedRequest(scope["method"], path, headers, body, query))
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        exchange = _Exchange(receive, send, f"gen-{next(self._ids)}-{int(time.time())}", model)
        route = path.removeprefix("/api")
        if route == "/v1/chat/completions" and scope["method"] == "POST":
            if isinstance(body, dict) and self._lacks_reasoning(body):
                await exchange.start(400, _JSON)
                metadata = {"raw": GEMINI_REASONING_RAW, "provider_name": "Google AI Studio"}
                await exchange.end(orjson.dumps(error_body(400, "Provider returned error", metadata)))
                return
            reply = self._replies.popleft() if self._replies else text_reply()
            if isinstance(reply, TextReply):
                self._remember_reasoning(reply, exchange.generation_id)
            stream = isinstance(body, dict) and body.get("stream") is True
            await (self._play_stream(exchange, reply) if stream else self._play_json(exchange, reply))
        elif route == "/v1/models" and scope["method"] == "GET":
            await self._serve_models(exchange, openrouter_shape=path.startswith("/api/"))
        else:
            await exchange.start(404, _JSON)
            await exchange.end(orjson.dumps(error_body(404, f"Not found: {path}")))

    def _remember_reasoning(self, reply: TextReply, generation_id: str) -> None:
        details = reasoning_details(reply.reasoning, generation_id)
        for call in reply.tool_calls:
            self.produced_reasoning[call.id] = details

    def _lacks_reasoning(self, body: Mapping[str, Any]) -> bool:
        """Gemini 3 only: in the current turn (after the last user message; Gemini checks no older calls), some
        assistant tool-call message does not carry, identical, the reasoning details its calls came with (calls
        this fake never played need some details at all: a signature to check)."""
        messages = body.get("messages")
        if not str(body.get("model", "")).startswith(STRICT_REASONING_PREFIX) or not isinstance(messages, list):
            return False
        for message in _current_turn(messages):
            if not isinstance(message, dict) or message.get("role") != "assistant" or not message.get("tool_calls"):
                continue
            sent = message.get("reasoning_details") or []
            if any(not self._verifies(call, sent) for call in message["tool_calls"]):
                return True
        return False

    def _verifies(self, call: Any, sent: list[Any]) -> bool:
        expected = self.produced_reasoning.get(call.get("id")) if isinstance(call, dict) else None
        return sent == expected if expected is not None else bool(sent)

    async def _serve_models(self, exchange: _Exchange, *, openrouter_shape: bool) -> None:
        if self._model_replies:
            await self._play_json(exchange, self._model_replies.popleft())
            return
        data = self.models if openrouter_shape else compat_models(self.models)
        await exchange.start(200, _JSON)
        await exchange.end(orjson.dumps({"data": data} if openrouter_shape else {"object": "list", "data": data}))

    async def _play_json(self, exchange: _Exchange, reply: Reply) -> None:
        if isinstance(reply, ErrorReply):
            await exchange.start(reply.status, _JSON, reply.headers)
            await exchange.end(orjson.dumps(error_body(reply.status, reply.message, reply.metadata)))
        elif isinstance(reply, TextReply):
            await exchange.start(200, _JSON, reply.headers)
            if reply.keepalive:  # OpenRouter's keep-alive for slow non-streaming requests
                await exchange.write(b"\n\n   \n")
            await exchange.end(orjson.dumps(completion_body(reply, exchange.generation_id, exchange.model)))
        elif isinstance(reply, MidstreamErrorReply):
            await exchange.start(200, _JSON)
            await exchange.end(orjson.dumps(midstream_error_body(reply, exchange.generation_id, exchange.model)))
        elif isinstance(reply, CutStreamReply):
            await exchange.start(200, _JSON)
            await exchange.end(orjson.dumps({"id": exchange.generation_id, "choices": [{"message": {}}]})[:25])
        elif isinstance(reply, StallReply):
            await exchange.start(200, _JSON)
            await exchange.write(b"\n")
            await exchange.wait(reply.seconds)
            body = completion_body(text_reply(reply.partial_text), exchange.generation_id, exchange.model)
            await exchange.end(orjson.dumps(body))
        elif isinstance(reply, GarbageReply):
            await exchange.start(reply.status, _JSON)
            await exchange.end(reply.body.encode())
        else:
            await self._play_raw(exchange, reply)

    async def _play_stream(self, exchange: _Exchange, reply: Reply) -> None:
        if isinstance(reply, ErrorReply | RawReply):  # errors before the stream starts are plain JSON + status
            await self._play_json(exchange, reply)
            return
        if isinstance(reply, GarbageReply):
            await exchange.start(reply.status, _SSE)
            await exchange.end(b"data: " + reply.body.encode() + b"\n\n")
            return
        await exchange.start(200, _SSE, reply.headers if isinstance(reply, TextReply) else None)
        if not isinstance(reply, TextReply) or reply.keepalive:
            await exchange.write(KEEPALIVE)
        if isinstance(reply, TextReply):
            for event in stream_events(reply, exchange.generation_id, exchange.model):
                await exchange.write(event)
        elif isinstance(reply, MidstreamErrorReply):
            for event in text_chunks(reply.partial_text, reply.chunk_size, exchange.generation_id, exchange.model):
                await exchange.write(event)
            error = midstream_error_body(reply, exchange.generation_id, exchange.model, chunk=True)
            await exchange.write(b"data: " + orjson.dumps(error) + b"\n\n")
        elif isinstance(reply, CutStreamReply):
            for event in text_chunks(reply.partial_text, reply.chunk_size, exchange.generation_id, exchange.model):
                await exchange.write(event)
        elif isinstance(reply, StallReply):
            for event in text_chunks(reply.partial_text, 4, exchange.generation_id, exchange.model):
                await exchange.write(event)
            await exchange.wait(reply.seconds)
        await exchange.end()

    async def _play_raw(self, exchange: _Exchange, reply: Reply) -> None:
        assert isinstance(reply, RawReply), f"the fake OpenRouter cannot play {reply!r}"
        await exchange.start(reply.status, reply.content_type.encode(), reply.headers)
        for chunk in reply.chunks:
            await exchange.write(chunk)
        await exchange.end()


def _current_turn(messages: list[Any]) -> list[Any]:
    """The messages after the last user message (tool results are `role: tool`)."""
    for number in range(len(messages) - 1, -1, -1):
        if isinstance(messages[number], dict) and messages[number].get("role") == "user":
            return messages[number + 1 :]
    return messages


@pytest.fixture
def fake_openrouter(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeUpstream]:
    """A running fake OpenRouter; sets OPENROUTER_BASE_URL and OPENROUTER_API_KEY for code that reads config."""
    app = FakeOpenRouter()
    with serve(app) as server:
        base_url = server.url + "/api/v1"
        monkeypatch.setenv("OPENROUTER_BASE_URL", base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
        yield FakeUpstream(app=app, url=server.url, base_url=base_url)
