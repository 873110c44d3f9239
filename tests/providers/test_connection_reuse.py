"""Streamed calls reuse the upstream connection: the end of the body that follows the last event (the chunked
terminator, often in a later TCP segment) is read before the stream returns, so aiohttp pools the connection
instead of closing it — else every streamed call would pay a new TCP and TLS handshake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from t_koma.messages import ConversationRequest, Finish, Message, TextDelta
from t_koma.providers.base import ProviderSpec
from t_koma.providers.openrouter import OpenRouterProvider


def sse(payload: object) -> bytes:
    data = b"data: " + (payload if isinstance(payload, bytes) else orjson.dumps(payload)) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNK = {"id": "gen-1", "model": "test/model", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
LAST = {"id": "gen-1", "model": "test/model", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


@dataclass
class SplitEndUpstream:
    """A raw HTTP/1.1 server streaming `hi` and `[DONE]`, then the terminating chunk in a separate, later write
    (or never, with `terminate=False`). Counts the connections it accepted."""

    terminate: bool = True
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                writer.write(HEAD + sse(CHUNK) + sse(LAST) + sse(b"[DONE]"))
                await writer.drain()
                if not self.terminate:
                    await reader.read()  # hold the body open until the client gives up on it
                    return
                await asyncio.sleep(0.02)  # the terminator comes in its own, later segment
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[SplitEndUpstream, str]]:
    fake = SplitEndUpstream()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield fake, f"http://127.0.0.1:{port}/api/v1"
    server.close()
    await server.wait_closed()


async def stream_once(provider: OpenRouterProvider) -> str:
    events = [event async for event in provider.stream(ConversationRequest(messages=(Message.user("Hi"),)))]
    assert isinstance(events[-1], Finish)
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_three_streams_share_one_connection(upstream: tuple[SplitEndUpstream, str]) -> None:
    fake, base_url = upstream
    provider = OpenRouterProvider(ProviderSpec("openrouter", "test/model", base_url, api_key="sk-or-test"))
    try:
        texts = [await stream_once(provider) for _ in range(3)]
    finally:
        await provider.aclose()

    assert texts == ["hi", "hi", "hi"]
    assert fake.connections == 1


async def test_a_body_that_never_ends_after_the_last_event_only_costs_its_connection(
    upstream: tuple[SplitEndUpstream, str],
) -> None:
    fake, base_url = upstream
    fake.terminate = False
    provider = OpenRouterProvider(ProviderSpec("openrouter", "test/model", base_url, api_key="sk-or-test"))
    try:
        texts = [await stream_once(provider) for _ in range(2)]
    finally:
        await provider.aclose()

    assert texts == ["hi", "hi"]
    assert fake.connections == 2
