"""The `/ws` chat endpoint: the access checks, then one `Connection` per socket that reads typed client
messages, answers them, and starts chat turns as tasks (`turns.RunningTurn`). Frames leave through a
per-connection queue drained by a writer task, bounded in frames and in bytes (`[gateway] send_queue_bytes`),
so a slow client only ever slows its own turns, and one that stops reading is dropped before it costs more."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from t_koma.gateway import frames
from t_koma.gateway.access import admit_websocket
from t_koma.gateway.handlers import Handlers
from t_koma.gateway.protocol import ProtocolError, parse_client_message
from t_koma.gateway.state import GatewayState
from t_koma.messages import JSONObject

log = logging.getLogger(__name__)

SEND_QUEUE_FRAMES = 1024
SLOW_CLIENT_SECONDS = 30.0


class Connection:
    """One client socket: its send queue and writer, and its state (selection, current session, turns)."""

    def __init__(self, websocket: WebSocket, state: GatewayState) -> None:
        self.websocket = websocket
        self.state = state
        self.closed = False
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(SEND_QUEUE_FRAMES)
        self._queue_limit_bytes = state.config.gateway.send_queue_bytes
        self._room = asyncio.Event()
        self.queued_bytes = 0
        """Bytes of frames queued or being written; at most `send_queue_bytes`, or one frame when that is larger."""
        self.peak_queued_bytes = 0
        self._slow_client_seconds = SLOW_CLIENT_SECONDS
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.handlers = Handlers(self, state)

    async def send(self, frame: JSONObject) -> None:
        """Queue a frame. A full queue (in frames or bytes) makes the caller wait (its turn slows down); a client
        that does not make room within `slow_client_seconds` is disconnected with code 1008."""
        if self.closed:
            return
        data = orjson.dumps(frame)
        if not self._fits(len(data)) and not await self._wait_for_room(len(data)):
            if not self.closed:
                log.warning(
                    "closing a WebSocket client that stopped reading (%d bytes unsent, at most %d queued)",
                    self.queued_bytes,
                    self.peak_queued_bytes,
                )
                self._close_soon()
            return
        self.queued_bytes += len(data)
        self.peak_queued_bytes = max(self.peak_queued_bytes, self.queued_bytes)
        self._queue.put_nowait(data)

    def _fits(self, size: int) -> bool:
        if self._queue.full():
            return False
        return self.queued_bytes == 0 or self.queued_bytes + size <= self._queue_limit_bytes

    async def _wait_for_room(self, size: int) -> bool:
        """Whether room for `size` bytes came within `slow_client_seconds` (False if the connection closed)."""
        try:
            async with asyncio.timeout(self._slow_client_seconds):
                while not self._fits(size):
                    self._room.clear()
                    await self._room.wait()
                    if self.closed:
                        return False
        except TimeoutError:
            return False
        return True

    def _close_soon(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._room.set()
        self.handlers.detach_turns()
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close_socket(1008, "client too slow"))

    async def _close_socket(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)

    async def _write(self) -> None:
        websocket = self.websocket
        queue = self._queue
        try:
            while True:
                data = await queue.get()
                await websocket.send_text(data.decode())
                self.queued_bytes -= len(data)
                self._room.set()
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True
            self._room.set()

    async def serve(self) -> None:
        self._writer = asyncio.create_task(self._write())
        await self.send(self.handlers.hello())
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                await self._handle(raw)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.closed = True
            self._room.set()
            self.handlers.detach_turns()
            self._finish_writer()

    def _finish_writer(self) -> None:
        if self._writer is not None:
            self._writer.cancel()

    async def _handle(self, raw: str | bytes) -> None:
        try:
            message = parse_client_message(raw)
        except ProtocolError as exc:
            await self.send(frames.error(exc.message, exc.error_type, exc.request_id))
            return
        await self.handlers.dispatch(message)


async def websocket_endpoint(websocket: WebSocket) -> None:
    state: GatewayState = websocket.app.state.gateway
    admission = await admit_websocket(websocket, state)
    if not admission.ok:
        return
    await websocket.accept(subprotocol=admission.subprotocol)
    client = websocket.client
    log.info("ws connected from %s:%s", client.host if client else "?", client.port if client else "?")
    await Connection(websocket, state).serve()
    log.info("ws disconnected from %s:%s", client.host if client else "?", client.port if client else "?")
