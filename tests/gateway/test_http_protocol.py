"""The gateway's HTTP protocol: a response's head leaves with its first body bytes (one write instead of two), yet
never waits longer than the current event-loop turn, and responses stay byte-for-byte what the app sent."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from t_koma.config.loader import load_config
from t_koma.gateway import server
from t_koma.gateway.http_protocol import HeadCoalescingHttpToolsProtocol, HeadHoldingTransport
from t_koma.gateway.server import uvicorn_config


class RecordingTransport(asyncio.Transport):
    """The socket side of `HeadHoldingTransport`: records each write (a system call in real life)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    socket_side = RecordingTransport()
    transport = HeadHoldingTransport(socket_side, asyncio.get_running_loop())

    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    await asyncio.sleep(0)

    assert socket_side.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_a_head_without_body_leaves_at_the_end_of_the_loop_turn_and_later_chunks_go_straight_out() -> None:
    socket_side = RecordingTransport()
    transport = HeadHoldingTransport(socket_side, asyncio.get_running_loop())

    transport.write(b"HEAD")
    assert socket_side.writes == []
    await asyncio.sleep(0)
    assert socket_side.writes == [b"HEAD"]

    transport.write(b"chunk 1")
    transport.write(b"chunk 2")
    assert socket_side.writes == [b"HEAD", b"chunk 1", b"chunk 2"]


async def test_closing_sends_a_held_head_first() -> None:
    socket_side = RecordingTransport()
    transport = HeadHoldingTransport(socket_side, asyncio.get_running_loop())

    transport.write(b"HEAD")
    transport.close()
    await asyncio.sleep(0)

    assert (socket_side.writes, socket_side.closed) == ([b"HEAD"], True)


def late_stream_app(release: asyncio.Event) -> Any:
    """`/json` answers at once; `/late` sends its head, then its first chunk only once `/release` was called."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/release":
            release.set()
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await release.wait()
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await send({"type": "http.response.body", "body": b" second"})
            return
        body = b'{"ok": true}'
        message = await receive()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body if message["type"] == "http.request" else b""})

    return app


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = late_stream_app(asyncio.Event())
    server = uvicorn.Server(uvicorn.Config(app, http=HeadCoalescingHttpToolsProtocol, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert server.started
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_responses_on_one_keep_alive_connection_arrive_whole(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapped: list[HeadHoldingTransport] = []
    original_init = HeadHoldingTransport.__init__

    def counting_init(self: HeadHoldingTransport, *args: Any) -> None:
        original_init(self, *args)
        wrapped.append(self)

    monkeypatch.setattr(HeadHoldingTransport, "__init__", counting_init)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(5):
            async with session.post(server_url + "/json", data=b"x" * 100) as response:
                assert (response.status, await response.read()) == (200, b'{"ok": true}')
        async with session.post(server_url + "/json", data=b"x", expect100=True) as response:
            assert (response.status, await response.read()) == (200, b'{"ok": true}')

    assert len(wrapped) == 6  # one per request: uvicorn still starts each cycle through _start_asgi_task


async def test_a_stream_head_is_not_held_back_until_its_first_chunk(server_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(server_url + "/late") as response:
        assert response.status == 200  # the head arrived while the first chunk is still held back
        async with session.get(server_url + "/release") as released:
            assert released.status == 200
        assert await response.read() == b"first second"


def test_the_gateway_serves_http_through_this_protocol_on_uvloop_without_an_access_log() -> None:
    settings = uvicorn_config(late_stream_app(asyncio.Event()), load_config(), "127.0.0.1", 0)

    assert settings.http is HeadCoalescingHttpToolsProtocol
    assert issubclass(HeadCoalescingHttpToolsProtocol, HttpToolsProtocol)
    assert settings.access_log is False
    assert server._loop_factory() is uvloop.new_event_loop


def test_a_gateway_process_freezes_start_up_objects_and_collects_the_young_generation_less_often() -> None:
    script = (
        "import gc, sys; from t_koma.gateway.server import prepare_process; prepare_process(); "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 10000, 'aiohttp' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)

    assert result.stdout.split() == ["7000", "True", "True"]
