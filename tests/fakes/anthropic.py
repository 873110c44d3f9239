"""A fake Anthropic Messages API on 127.0.0.1: `POST /v1/messages` (SSE with `event:` lines and `ping` events, or
JSON) and `GET /v1/models` (paginated with `after_id` / `limit`). It records every request and plays the scripted
replies of `tests.fakes.replies` in Anthropic's wire format::

    fake_anthropic.app.enqueue(text_reply("Hi"), error_reply(529, "Overloaded"))
    ... call the client ...
    assert fake_anthropic.app.requests[0].headers["x-api-key"] == "sk-ant-test-SECRET-0002"
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import anyio
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.replies import (
    CutStreamReply,
    ErrorReply,
    GarbageReply,
    MidstreamErrorReply,
    RawReply,
    Reply,
    StallReply,
    TextReply,
    Usage,
    split_text,
    text_reply,
)
from tests.fakes.server import serve

TEST_KEY = "sk-ant-test-SECRET-0002"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STOP_REASONS = {"end": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens"}

DEFAULT_MODELS: list[dict[str, Any]] = [
    {"type": "model", "id": "claude-opus-4-1", "display_name": "Claude Opus 4.1", "created_at": "2025-08-05T00:00:00Z"},
    {
        "type": "model",
        "id": "claude-sonnet-4-5",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-haiku-4-5",
        "display_name": "Claude Haiku 4.5",
        "created_at": "2025-10-15T00:00:00Z",
    },
]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FakeUpstream:
    app: FakeAnthropic
    url: str
    base_url: str


def error_type_for(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type or error_type_for(status), "message": message},
        "request_id": "req_fake",
    }


def usage_json(usage: Usage, *, output_tokens: int | None = None) -> dict[str, Any]:
    """Anthropic's `usage`; cache fields only when the reply sets them (the API omits them on some models)."""
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
    }
    if usage.cache_read_tokens is not None:
        out["cache_read_input_tokens"] = usage.cache_read_tokens
    if usage.cache_creation_tokens is not None:
        out["cache_creation_input_tokens"] = usage.cache_creation_tokens
    return out


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = sse("ping", {"type": "ping"})


class FakeAnthropic:
    """The ASGI app. `enqueue` scripted replies (one per `POST /v1/messages`; an empty queue answers with the
    default text reply); `requests` records everything received; `models` is served by `GET /v1/models`,
    `page_size` caps a page (the real default is 20, at most 1000). With `api_key` set, any other `x-api-key`
    gets the real 401 body."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.page_size = 20
        self.api_key = api_key
        self._replies: deque[Reply] = deque()
        self._ids = count(1)
        self._app = Starlette(
            routes=[Route("/v1/messages", self._messages, methods=["POST"]), Route("/v1/models", self._list_models)]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def enqueue(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == "/v1/messages"]

    async def _record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=body if isinstance(body, dict) else None,
            query=dict(request.query_params),
        )
        self.requests.append(recorded)
        return recorded

    def _rejection(self, recorded: RecordedRequest) -> Response | None:
        """What the real API says to a request without a valid key or version header."""
        key = recorded.headers.get("x-api-key")
        if not key or (self.api_key is not None and key != self.api_key):
            return JSONResponse(error_body(401, "invalid x-api-key"), status_code=401)
        if "anthropic-version" not in recorded.headers:
            return JSONResponse(error_body(400, "anthropic-version: header is required"), status_code=400)
        return None

    async def _list_models(self, request: Request) -> Response:
        recorded = await self._record(request)
        rejection = self._rejection(recorded)
        if rejection is not None:
            return rejection
        limit = max(1, min(int(recorded.query.get("limit", "20")), 1000, self.page_size))
        ids = [model["id"] for model in self.models]
        after = recorded.query.get("after_id")
        start = ids.index(after) + 1 if after in ids else 0
        page = self.models[start : start + limit]
        return JSONResponse(
            {
                "data": page,
                "has_more": start + limit < len(self.models),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def _messages(self, request: Request) -> Response:
        recorded = await self._record(request)
        rejection = self._rejection(recorded)
        if rejection is not None:
            return rejection
        body = recorded.body or {}
        if not isinstance(body.get("max_tokens"), int) or not body.get("model") or "messages" not in body:
            return JSONResponse(error_body(400, "model, max_tokens and messages are required"), status_code=400)
        reply = self._replies.popleft() if self._replies else text_reply()
        msg_id = f"msg_fake_{next(self._ids):04d}"
        renderer = _Renderer(reply, msg_id, str(body["model"]), request)
        return renderer.stream() if body.get("stream") is True else renderer.json()


class _Renderer:
    """One reply in Anthropic's wire format."""

    def __init__(self, reply: Reply, msg_id: str, model: str, request: Request) -> None:
        self.reply = reply
        self.msg_id = msg_id
        self.model = model
        self.request = request

    # --- non-streaming ---

    def json(self) -> Response:
        reply = self.reply
        if isinstance(reply, ErrorReply):
            return _error_response(reply)
        if isinstance(reply, TextReply):
            return JSONResponse(self._message(reply), headers=dict(reply.headers))
        if isinstance(reply, MidstreamErrorReply):
            # The JSON API has no partial answers: the error is the whole body, with a 200 status.
            return JSONResponse(error_body(reply.code, reply.message))
        if isinstance(reply, CutStreamReply):
            return Response(orjson.dumps(self._message(text_reply(reply.partial_text)))[:-10], 200, media_type=_JSON)
        if isinstance(reply, StallReply):
            final = orjson.dumps(self._message(text_reply(reply.partial_text or "late")))
            return StreamingResponse(self._stalled(reply.seconds, b"", final), media_type=_JSON)
        if isinstance(reply, GarbageReply):
            return Response(reply.body.encode(), reply.status, media_type=_JSON)
        return _raw_response(reply)

    def _message(self, reply: TextReply) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        for call in reply.tool_calls:
            try:
                arguments: Any = orjson.loads(call.arguments) if call.arguments.strip() else {}
            except orjson.JSONDecodeError:
                arguments = call.arguments
            content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
        message: dict[str, Any] = {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": reply.model or self.model,
            "content": content,
            "stop_reason": STOP_REASONS[reply.stop],
            "stop_sequence": None,
        }
        if reply.usage is not None:
            message["usage"] = usage_json(reply.usage)
        return message

    # --- streaming ---

    def stream(self) -> Response:
        reply = self.reply
        if isinstance(reply, ErrorReply):
            return _error_response(reply)
        if isinstance(reply, RawReply):
            return _raw_response(reply)
        if isinstance(reply, GarbageReply):
            return Response(
                b"event: message_start\ndata: " + reply.body.encode() + b"\n\n", reply.status, media_type=_SSE
            )
        if isinstance(reply, StallReply):
            head = self._start(None) + b"".join(self._text_block(0, reply.partial_text, 4, keepalive=False))
            return StreamingResponse(self._stalled(reply.seconds, head, b""), media_type=_SSE)
        return StreamingResponse(_iterate(self._events()), media_type=_SSE, headers=self._headers())

    def _headers(self) -> dict[str, str]:
        return dict(self.reply.headers) if isinstance(self.reply, TextReply) else {}

    def _events(self) -> Iterator[bytes]:
        reply = self.reply
        if isinstance(reply, TextReply):
            yield from self._text_events(reply)
        elif isinstance(reply, MidstreamErrorReply):
            yield self._start(None)
            yield from self._text_block(0, reply.partial_text, reply.chunk_size, keepalive=True)
            yield sse("error", error_body(reply.code, reply.message))
        elif isinstance(reply, CutStreamReply):
            yield self._start(None)
            yield from self._text_block(0, reply.partial_text, reply.chunk_size, keepalive=False, stop=False)

    def _text_events(self, reply: TextReply) -> Iterator[bytes]:
        yield self._start(reply.usage, reply.model)
        if reply.keepalive:
            yield PING
        index = 0
        if reply.text:
            yield from self._text_block(index, reply.text, reply.chunk_size, keepalive=reply.keepalive)
            index += 1
        for call in reply.tool_calls:
            start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            for piece in split_text(call.arguments, reply.chunk_size):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        delta_event: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": STOP_REASONS[reply.stop], "stop_sequence": None},
        }
        if reply.usage is not None:
            delta_event["usage"] = {"output_tokens": reply.usage.output_tokens}
        yield sse("message_delta", delta_event)
        yield sse("message_stop", {"type": "message_stop"})

    def _start(self, usage: Usage | None, model: str | None = None) -> bytes:
        message: dict[str, Any] = {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": model or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if usage is not None:
            message["usage"] = usage_json(usage, output_tokens=1)
        return sse("message_start", {"type": "message_start", "message": message})

    def _text_block(self, index: int, text: str, size: int, *, keepalive: bool, stop: bool = True) -> Iterator[bytes]:
        start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        yield sse("content_block_start", start)
        for number, piece in enumerate(split_text(text, size)):
            delta = {"type": "text_delta", "text": piece}
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            if keepalive and number % 4 == 3:
                yield PING
        if stop:
            yield sse("content_block_stop", {"type": "content_block_stop", "index": index})

    async def _stalled(self, seconds: float, head: bytes, tail: bytes) -> AsyncIterator[bytes]:
        """`head`, then silence for `seconds` (ending early once the client has gone), then `tail`."""
        if head:
            yield head
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await self.request.is_disconnected():
                return
            await anyio.sleep(0.02)
        if tail:
            yield tail


_SSE = "text/event-stream"
_JSON = "application/json"


async def _iterate(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _error_response(reply: ErrorReply) -> Response:
    body = error_body(reply.status, reply.message, reply.error_type)
    return JSONResponse(body, status_code=reply.status, headers=dict(reply.headers))


def _raw_response(reply: RawReply) -> Response:
    return StreamingResponse(
        _iterate(iter(reply.chunks)),
        status_code=reply.status,
        media_type=reply.content_type,
        headers=dict(reply.headers),
    )


class _Switch:
    """The ASGI app of the shared server: forwards to the current test's FakeAnthropic."""

    def __init__(self) -> None:
        self.target: FakeAnthropic | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "no FakeAnthropic is installed"
        await self.target(scope, receive, send)


@pytest.fixture(scope="session")
def _anthropic_server() -> Iterator[tuple[_Switch, str]]:
    """One loopback server for the session (starting and stopping uvicorn per test costs ~0.2 s)."""
    switch = _Switch()
    with serve(switch) as server:
        yield switch, server.url


@pytest.fixture
def fake_anthropic(_anthropic_server: tuple[_Switch, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeUpstream]:
    """A fresh FakeAnthropic on loopback; ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY point t-koma at it."""
    switch, url = _anthropic_server
    app = FakeAnthropic(api_key=TEST_KEY)
    switch.target = app
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    try:
        yield FakeUpstream(app=app, url=url, base_url=url)
    finally:
        switch.target = None
