"""uvicorn's httptools HTTP/1.1 protocol, with a connection cap, a deadline for request heads, and each
response's head and first body bytes sent in one write.

Limits: a connection past `max_connections` (HTTP and WebSocket together) gets a 503 and is closed before
anything is read; a connection that does not complete a request head (or a WebSocket handshake request) within
`HEAD_TIMEOUT_SECONDS` of connecting, or of the first byte of its next request, gets a 408 and is closed, so idle
or trickling sockets cannot pile up. Idle keep-alive connections are closed by uvicorn's `timeout_keep_alive`.

Write coalescing:
uvicorn writes the status line and headers the moment the app sends `http.response.start`, then the body in a
second write. On loopback each write is a system call that also wakes the client, which then parses a head
without a body and waits again: measured with bench/gateway.py, merging them cuts ~0.05-0.1 ms off every
request. The head is held until the response's next write (a JSON body, or a stream's first chunk) or the end of
the current event-loop turn, whichever comes first, so a stream whose first chunk is late is not delayed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import uvicorn
from uvicorn._types import ASGI3Application, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class HeadHoldingTransport(asyncio.Transport):
    """The transport one request/response cycle writes through: its first write (the response head, or a
    `100 Continue`) waits for the next write or the end of the loop turn; everything else goes straight on."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._head: bytes | None = None
        self._loop = loop

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        if head is None:
            self._head = bytes(data)
            self._loop.call_soon(self._flush)
            return
        if head:
            self._head = b""
            data = head + data
        self._transport.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, b""
        if head and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


HEAD_TIMEOUT_SECONDS = 10.0
"""How long a connection may take to send a complete request head."""

log = logging.getLogger(__name__)


class GatewayUvicornConfig(uvicorn.Config):
    """uvicorn's config plus the gateway's connection cap (read by `HeadCoalescingHttpToolsProtocol`)."""

    def __init__(self, app: Any, *, max_connections: int | None = None, **options: Any) -> None:
        super().__init__(app, **options)
        self.max_connections = max_connections


def _canned(status: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    return head.encode() + body


def _busy_response(limit: int) -> bytes:
    error = {
        "message": f"the gateway is at its connection limit ({limit}): retry later, or raise [gateway] "
        "max_connections in config.toml",
        "type": "server_error",
        "code": "too_many_connections",
    }
    extra = "content-type: application/json\r\nretry-after: 1\r\n"
    return _canned("503 Service Unavailable", orjson.dumps({"error": error}), extra)


_TIMEOUT_RESPONSE = _canned("408 Request Timeout")


class HeadCoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with the connection cap and head deadline, whose request/response cycles write
    through a `HeadHoldingTransport`."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit: int | None = getattr(self.config, "max_connections", None)
        if limit is not None and len(self.connections) > limit:
            log.warning("refused a connection: %d open, the limit is %d", len(self.connections) - 1, limit)
            transport.write(_busy_response(limit))
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.warning("closed a connection that sent no complete request within %.0f s", HEAD_TIMEOUT_SECONDS)
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        cycle.transport = HeadHoldingTransport(cycle.transport, self.loop)
        super()._start_asgi_task(cycle, app)


class DenialAwareWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol that counts a denial response (`websocket.http.response.*`, the 401 /
    403 of a refused upgrade) as a finished handshake: uvicorn logged every refused attempt as an ERROR
    ("ASGI callable returned without completing handshake") although the answer had been sent."""

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True
