"""A minimal, fast OpenAI-format upstream for benchmarks: `POST /api/v1/chat/completions` (and `/v1/...`) answers
a fixed completion as JSON, or as SSE when the body asks for `"stream": true`; `GET /api/v1/models` serves a
one-model catalog; `GET /health` says ok. Replies are pre-rendered bytes so the fake costs as little as possible.

Run: `python bench/fake_upstream.py --port 8090` (prints `ready <port>` once listening; `--port 0` picks one).
`--latency-ms` delays every answer (a model's time to first token), `--chunks` sets the number of content chunks,
`--chunk-delay-ms` spaces them out (a stream that lasts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MODEL = "openai/gpt-4o-mini"
WORDS = ["Hello", " from", " the", " fast", " fake", " upstream", ",", " ten", " chunks", "."]
USAGE = {
    "prompt_tokens": 24,
    "completion_tokens": 10,
    "total_tokens": 34,
    "prompt_tokens_details": {"cached_tokens": 0},
    "cost": 0.000012,
}


def words(chunks: int) -> list[str]:
    """`chunks` content pieces (the ten default words, repeated as needed)."""
    return [WORDS[i % len(WORDS)] for i in range(max(1, chunks))]


def _completion(pieces: list[str] = WORDS) -> bytes:
    return orjson.dumps(
        {
            "id": "gen-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "provider": "Bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": "stop",
                    "native_finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def _chunk(delta: dict[str, object], finish: str | None = None, usage: dict[str, object] | None = None) -> bytes:
    body: dict[str, object] = {
        "id": "gen-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "provider": "Bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _stream_parts(pieces: list[str] = WORDS) -> list[bytes]:
    parts = [_chunk({"role": "assistant", "content": ""}) + _chunk({"content": pieces[0]})]
    parts += [_chunk({"content": word}) for word in pieces[1:]]
    parts.append(_chunk({}, "stop") + _chunk({}, None, USAGE) + b"data: [DONE]\n\n")
    return parts


def _stream() -> bytes:
    return b"".join(_stream_parts())


COMPLETION = _completion()
STREAM = _stream()
MODELS = orjson.dumps(
    {
        "data": [
            {
                "id": MODEL,
                "name": "OpenAI: GPT-4o-mini",
                "description": "bench",
                "context_length": 128000,
                "pricing": {"prompt": "0.00000015", "completion": "0.0000006"},
                "supported_parameters": ["tools", "tool_choice", "max_tokens"],
            }
        ]
    }
)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if orjson.loads(body).get("stream") is True:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(STREAM)
        await response.write_eof()
        return response
    return web.Response(body=COMPLETION, content_type="application/json")


def shaped_chat(chunks: int, latency_ms: float, chunk_delay_ms: float) -> Handler:
    """`chat` with a different stream length, a delay before answering and a pause between stream chunks."""
    pieces = words(chunks)
    completion, parts = _completion(pieces), _stream_parts(pieces)
    whole = b"".join(parts)

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if orjson.loads(body).get("stream") is not True:
            return web.Response(body=completion, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if chunk_delay_ms <= 0:
            await response.write(whole)
        else:
            for number, part in enumerate(parts):
                if number:
                    await asyncio.sleep(chunk_delay_ms / 1000)
                await response.write(part)
        await response.write_eof()
        return response

    return handler


async def models(request: web.Request) -> web.Response:
    return web.Response(body=MODELS, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def make_app(handler: Handler | None = None) -> web.Application:
    app = web.Application()
    for prefix in ("/api/v1", "/v1"):
        app.router.add_post(prefix + "/chat/completions", handler or chat)
        app.router.add_get(prefix + "/models", models)
    app.router.add_get("/health", health)
    return app


async def serve(port: int, handler: Handler | None = None) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    runner = web.AppRunner(make_app(handler), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    print(f"ready {sock.getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--chunks", type=int, default=len(WORDS), help="content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause between stream chunks")
    args = parser.parse_args()
    shaped = args.latency_ms > 0 or args.chunks != len(WORDS) or args.chunk_delay_ms > 0
    handler = shaped_chat(args.chunks, args.latency_ms, args.chunk_delay_ms) if shaped else None
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(serve(args.port, handler))


if __name__ == "__main__":
    main()
