"""The OpenAI-compatible HTTP API: `POST /v1/chat/completions` (through `engine.complete` / `engine.stream`,
so the model's fallback chain and circuit breaker apply; no tools run here) and `GET /v1/models`. Errors
come back in OpenAI's shape `{"error": {"message", "type", "code"}}` with a matching status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from t_koma.config.model import DEFAULT_KEY_ENV
from t_koma.engine.events import FallbackEvent, ServedBy
from t_koma.errors import (
    AllModelsExhaustedError,
    ConfigError,
    InvalidModelError,
    MissingKeyError,
    ProviderError,
    RateLimitError,
    TKomaError,
)
from t_koma.gateway.access import check_http
from t_koma.gateway.event_stream import EventStream
from t_koma.gateway.openai_convert import (
    ChunkWriter,
    RequestError,
    completion,
    finish_reason,
    parse_request,
    reasoning_details,
)
from t_koma.gateway.state import GatewayState
from t_koma.messages import Finish, JSONObject, ReasoningDelta, TextDelta, ToolCallEvent, UsageEvent

log = logging.getLogger(__name__)

OVERHEAD_HEADER = "x-t-koma-overhead-ms"
SERVED_BY_HEADER = "x-t-koma-served-by"
_JSON = "application/json"
_REFUSED_UPSTREAM_AUTH = (401, 402, 403)


class JSONBytes(Response):
    media_type = _JSON


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


async def chat_completions(request: Request) -> Response | EventStream:
    started = time.perf_counter()
    state: GatewayState = request.app.state.gateway
    refused = check_http(request, state)
    if refused is not None:
        return refused
    try:
        body = await read_body(request, state.config.gateway.max_body_bytes)
        parsed = parse_request(body, state.engine.resolver.default_chain())
    except RequestError as exc:
        return error_response(exc)
    if state.config.logging.log_bodies:
        log.info("v1 request model=%s stream=%s body=%s", parsed.model, parsed.stream, body.decode(errors="replace"))
    if parsed.stream:
        return await _stream(state, parsed.chain, parsed.conversation, started)
    engine = state.engine
    parse_seconds = time.perf_counter() - started
    try:
        response, served = await engine.complete(parsed.chain, parsed.conversation)
    except TKomaError as exc:
        return error_response(exc)
    after = time.perf_counter()
    content = orjson.dumps(completion(response, response.model or served.model))
    overhead = parse_seconds + time.perf_counter() - after
    return JSONBytes(content, headers={OVERHEAD_HEADER: _ms(overhead), SERVED_BY_HEADER: served.label})


BODY_TIMEOUT_SECONDS = 60.0
"""How long a `/v1` request body may take to arrive."""


class BodyTooLargeError(RequestError):
    """A `/v1` request body over `[gateway] max_body_bytes` (HTTP 413)."""

    error_type = "request_too_large"
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the request body is larger than {limit} bytes: send a smaller request, or raise "
            "[gateway] max_body_bytes in config.toml"
        )


class BodyTimeoutError(RequestError):
    """A `/v1` request body that did not arrive in `BODY_TIMEOUT_SECONDS` (HTTP 408)."""

    error_type = "request_timeout"
    status = 408

    def __init__(self) -> None:
        super().__init__(f"the request body did not arrive within {BODY_TIMEOUT_SECONDS:.0f} s: send it at once")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with `BodyTooLargeError` as soon as its declared or received size passes
    `limit` (so an oversized body is never held in memory), or `BodyTimeoutError` when it trickles in too slowly."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyTooLargeError(limit)
    except TimeoutError:
        raise BodyTimeoutError() from None
    return bytes(body)


async def _stream(
    state: GatewayState, chain: tuple[str, ...], conversation: Any, started: float
) -> Response | EventStream:
    """Read the stream up to its first token before answering, so that a chain that fails entirely still gets
    a proper HTTP error status; after that, errors travel inside the stream."""
    overhead = time.perf_counter() - started
    events = state.engine.stream(chain, conversation).__aiter__()
    prelude: list[bytes] = []
    served: ServedBy | None = None
    first: Any = None
    try:
        async for event in events:
            mark = time.perf_counter()
            if isinstance(event, ServedBy):
                served = event
            elif isinstance(event, FallbackEvent):
                prelude.append(
                    ChunkWriter.comment(f"fallback from {event.from_model} to {event.to_model}: {event.error}")
                )
            else:
                first = event
                overhead += time.perf_counter() - mark
                break
            overhead += time.perf_counter() - mark
    except TKomaError as exc:
        await _close(events)
        return error_response(exc)
    mark = time.perf_counter()
    writer = ChunkWriter(served.model if served else chain[0])
    headers = {OVERHEAD_HEADER: _ms(overhead + time.perf_counter() - mark), "cache-control": "no-cache"}
    if served is not None:
        headers[SERVED_BY_HEADER] = served.label
    return EventStream(_sse(state, writer, events, prelude, first), headers)


async def _sse(
    state: GatewayState, writer: ChunkWriter, events: AsyncIterator[Any], prelude: list[bytes], first: Any
) -> AsyncIterator[bytes]:
    state.v1_streams += 1
    tool_calls = 0
    usage = None
    event = first
    try:
        for line in prelude:
            yield line
        yield writer.role()
        while event is not None:
            if isinstance(event, TextDelta):
                yield writer.text(event.text)
            elif isinstance(event, ReasoningDelta):
                yield writer.reasoning(event.text)
            elif isinstance(event, ToolCallEvent):
                yield writer.tool_call(tool_calls, event.call)
                tool_calls += 1
            elif isinstance(event, UsageEvent):
                usage = event.usage
            elif isinstance(event, Finish):
                response = event.response
                if response.model:
                    writer.set_model(response.model)
                details = reasoning_details(response.reasoning)
                if details:  # complete items in one delta (clients merge deltas by index)
                    yield writer.reasoning_details(details)
                yield writer.finish(finish_reason(response.stop_reason, tool_calls > 0))
                yield writer.usage(response.usage or usage)
            elif isinstance(event, ServedBy):
                writer.set_model(event.model)
            event = await anext(events, None)
    except TKomaError as exc:
        log.warning("v1 stream failed after the first token: %s", exc.message)
        yield ChunkWriter.error(_error_body(exc, _status(exc)))
    finally:
        state.v1_streams -= 1
        await _close(events)
    yield ChunkWriter.DONE


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the stream already failed; its error was reported
            log.debug("closing a v1 stream failed", exc_info=True)


# --- errors ---------------------------------------------------------------------------------------------


def _status(exc: TKomaError) -> int:
    if isinstance(exc, BodyTooLargeError | BodyTimeoutError):
        return exc.status
    if isinstance(exc, RequestError):
        return 400
    if isinstance(exc, AllModelsExhaustedError):
        return _status(exc.last_error) if exc.last_error is not None else 503
    if isinstance(exc, InvalidModelError):
        return 404
    if isinstance(exc, MissingKeyError):
        return 500
    if isinstance(exc, ConfigError):
        return 404
    if isinstance(exc, ProviderError):
        status = exc.status or 502
        if status in _REFUSED_UPSTREAM_AUTH:
            return 502  # the gateway's upstream key was refused, not the caller's token
        if status in (408, 504):
            return 504
        return status if 400 <= status < 600 else 502
    return 500


_OPENAI_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def _error_body(exc: TKomaError, status: int) -> JSONObject:
    code = exc.type
    if status == 404 and isinstance(exc, ConfigError | InvalidModelError):
        code = "model_not_found"
    error_type = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body: JSONObject = {"message": exc.message, "type": error_type, "code": code}
    if isinstance(exc, RequestError) and exc.param:
        body["param"] = exc.param
    if isinstance(exc, AllModelsExhaustedError):
        body["attempts"] = [{"model": label, "error": why} for label, why in exc.attempts]
    return {"error": body}


def error_response(exc: TKomaError) -> Response:
    status = _status(exc)
    headers: dict[str, str] = {}
    limited = exc.last_error if isinstance(exc, AllModelsExhaustedError) else exc
    if isinstance(limited, RateLimitError) and limited.retry_after is not None:
        headers["retry-after"] = str(int(limited.retry_after + 0.999))
    if status >= 500 and not isinstance(exc, MissingKeyError):
        log.warning("v1 request failed (%d): %s", status, exc.message)
    if isinstance(exc, BodyTooLargeError | BodyTimeoutError):
        headers["connection"] = "close"  # the rest of the body is never read
    return JSONBytes(orjson.dumps(_error_body(exc, status)), status_code=status, headers=headers)


# --- models ---------------------------------------------------------------------------------------------


async def list_models(request: Request) -> Response:
    state: GatewayState = request.app.state.gateway
    refused = check_http(request, state)
    if refused is not None:
        return refused
    config = state.config
    data: list[JSONObject] = [
        {
            "id": alias,
            "object": "model",
            "created": 0,
            "owned_by": "t-koma",
            "name": f"{alias} → {model.provider}/{model.model}",
        }
        for alias, model in config.models.items()
    ]
    kinds = ["openrouter"]
    if config.secrets.has(DEFAULT_KEY_ENV["anthropic"]):
        kinds.append("anthropic")
    catalogs = await asyncio.gather(*(state.resolver.catalog(kind).models() for kind in kinds), return_exceptions=True)
    for kind, models in zip(kinds, catalogs, strict=True):
        if isinstance(models, BaseException):
            log.warning("the %s catalog is unavailable for /v1/models: %s", kind, models)
            continue
        for info in models:
            entry: JSONObject = {
                "id": f"{kind}/{info.id}",
                "object": "model",
                "created": 0,
                "owned_by": kind,
                "name": info.name,
            }
            if info.context_length is not None:
                entry["context_length"] = info.context_length
            data.append(entry)
    return JSONBytes(orjson.dumps({"object": "list", "data": data}))
