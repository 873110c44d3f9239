"""A fake Anthropic Messages API on 127.0.0.1: `POST /v1/messages` (SSE with `event:` lines and `ping` events, or
JSON) and `GET /v1/models` (paginated with `after_id` / `limit`). It records every request and plays the scripted
replies of `tests.fakes.replies` in Anthropic's wire format, reasoning as `thinking` / `redacted_thinking` blocks.

It is as strict about extended thinking as the real API (see `thinking_refusal`): with `thinking` enabled, a tool
loop whose assistant turn does not start with the very thinking blocks (and signatures) this fake produced for
those tool calls gets the real 400, and so do a bad budget, a forced `tool_choice` or a sampling override::

    fake_anthropic.app.enqueue(text_reply("Hi"), error_reply(529, "Overloaded"))
    ... call the client ...
    assert fake_anthropic.app.requests[0].headers["x-api-key"] == "sk-ant-test-SECRET-0002"
"""

from __future__ import annotations

import base64
import hashlib
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
    Thought,
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
THINKING_TYPES = ("thinking", "redacted_thinking")
DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"

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
    """Anthropic's `usage`; cache fields only when the reply sets them (the API omits them on some models), and
    `output_tokens_details.thinking_tokens` only in final counts (not in `message_start`'s `output_tokens=1`)."""
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
    }
    if usage.cache_read_tokens is not None:
        out["cache_read_input_tokens"] = usage.cache_read_tokens
    if usage.cache_creation_tokens is not None:
        out["cache_creation_input_tokens"] = usage.cache_creation_tokens
    if output_tokens is None:
        out.update(thinking_usage(usage))
    return out


def thinking_usage(usage: Usage) -> dict[str, Any]:
    if usage.reasoning_tokens is None:
        return {}
    return {"output_tokens_details": {"thinking_tokens": usage.reasoning_tokens}}


def fake_signature(msg_id: str, number: int, text: str) -> str:
    """An opaque signature, different for every message, block and text (real ones are long base64)."""
    digest = hashlib.sha256(f"{msg_id}:{number}:{text}".encode()).digest()
    return base64.b64encode(digest * 3).decode()


def thinking_blocks(reply: TextReply, msg_id: str) -> list[dict[str, Any]]:
    """The reply's thoughts as the complete content blocks this fake produces (and expects back, unmodified)."""
    return [_thinking_block(thought, msg_id, number) for number, thought in enumerate(reply.reasoning)]


def _thinking_block(thought: Thought, msg_id: str, number: int) -> dict[str, Any]:
    if thought.encrypted is not None:
        return {"type": "redacted_thinking", "data": thought.encrypted}
    signature = thought.signature or fake_signature(msg_id, number, thought.text)
    return {"type": "thinking", "thinking": thought.text, "signature": signature}


# --- the real API's thinking rules -------------------------------------------------------------------


def thinking_refusal(body: Mapping[str, Any], produced: Mapping[str, list[dict[str, Any]]]) -> str | None:
    """The 400 message the real API gives a request that breaks an extended-thinking rule, or None. `produced`
    maps each tool_use id this fake answered to the thinking blocks of that answer."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("content"), list)]
    refusal = _thinking_last_refusal(messages)
    if refusal is not None:
        return refusal
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return _thinking_off_refusal(messages)
    return _thinking_settings_refusal(body, thinking) or _tool_loop_refusal(messages, produced)


def _thinking_last_refusal(messages: list[dict[str, Any]]) -> str | None:
    for number, message in enumerate(messages):
        content = message["content"]
        if message.get("role") == "assistant" and content and _type(content[-1]) in THINKING_TYPES:
            return f"messages.{number}: The final block in an assistant message cannot be `thinking`."
    return None


def _thinking_off_refusal(messages: list[dict[str, Any]]) -> str | None:
    number, assistant = _last_assistant(messages)
    if assistant is not None and any(_type(block) in THINKING_TYPES for block in assistant["content"]):
        return (
            f"messages.{number}.content.0: When thinking is disabled, an `assistant` message in the final position "
            "cannot contain `thinking`. To use thinking blocks, enable `thinking` in your request."
        )
    return None


def _thinking_settings_refusal(body: Mapping[str, Any], thinking: Mapping[str, Any]) -> str | None:
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= body["max_tokens"]:
        return f"`max_tokens` must be greater than `thinking.budget_tokens`. {DOCS}#max-tokens-and-context-window-size"
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    if body.get("temperature", 1) != 1:
        return f"`temperature` may only be set to 1 when thinking is enabled. {DOCS}#feature-compatibility"
    if "top_k" in body:
        return f"`top_k` must be unset when thinking is enabled. {DOCS}#feature-compatibility"
    if body.get("top_p", 1) < 0.95:
        return f"`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. {DOCS}"
    return None


def _tool_loop_refusal(messages: list[dict[str, Any]], produced: Mapping[str, list[dict[str, Any]]]) -> str | None:
    """A conversation ending in tool results: its assistant turn must start with the thinking this fake produced
    for those calls, identical block for block."""
    if not messages or not any(_type(block) == "tool_result" for block in messages[-1]["content"]):
        return None
    number, assistant = _last_assistant(messages)
    if assistant is None:
        return None
    content = assistant["content"]
    if not content or _type(content[0]) not in THINKING_TYPES:
        found = _type(content[0]) if content else "nothing"
        return (
            f"messages.{number}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
            "When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding "
            "the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks "
            f"from previous turns. To avoid this requirement, disable `thinking`. {DOCS}"
        )
    calls = [block.get("id") for block in content if _type(block) == "tool_use"]
    expected = produced.get(str(calls[0])) if calls else None
    if not expected or content[: len(expected)] != expected:
        return f"messages.{number}.content.0: Invalid `signature` in `thinking` block"
    return None


def _last_assistant(messages: list[dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    for number in range(len(messages) - 1, -1, -1):
        if messages[number].get("role") == "assistant":
            return number, messages[number]
    return -1, None


def _type(block: Any) -> Any:
    return block.get("type") if isinstance(block, dict) else None


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
        self.thinking_by_tool: dict[str, list[dict[str, Any]]] = {}
        """The thinking blocks of each answer that called tools, by tool_use id (what must come back)."""
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
        refusal = thinking_refusal(body, self.thinking_by_tool)
        if refusal is not None:  # the scripted reply stays queued, as an upstream that refused never answered
            return JSONResponse(error_body(400, refusal), status_code=400)
        reply = self._replies.popleft() if self._replies else text_reply()
        msg_id = f"msg_fake_{next(self._ids):04d}"
        if isinstance(reply, TextReply):
            for call in reply.tool_calls:
                self.thinking_by_tool[call.id] = thinking_blocks(reply, msg_id)
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
        content = thinking_blocks(reply, self.msg_id)
        if reply.text:
            content.append({"type": "text", "text": reply.text})
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
        for block in thinking_blocks(reply, self.msg_id):
            yield from self._thinking_events(index, block, reply)
            index += 1
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
            delta_event["usage"] = {"output_tokens": reply.usage.output_tokens} | thinking_usage(reply.usage)
        yield sse("message_delta", delta_event)
        yield sse("message_stop", {"type": "message_stop"})

    def _thinking_events(self, index: int, block: dict[str, Any], reply: TextReply) -> Iterator[bytes]:
        """A redacted block whole in its start event; a thinking block as `thinking_delta` pieces (with pings) and
        one `signature_delta`, as the real stream sends them."""
        if block["type"] == "redacted_thinking":
            yield _block_start(index, block)
        else:
            yield _block_start(index, {"type": "thinking", "thinking": ""})
            for number, piece in enumerate(split_text(block["thinking"], reply.chunk_size)):
                yield _block_delta(index, {"type": "thinking_delta", "thinking": piece})
                if reply.keepalive and number % 4 == 3:
                    yield PING
            yield _block_delta(index, {"type": "signature_delta", "signature": block["signature"]})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})

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


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


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
