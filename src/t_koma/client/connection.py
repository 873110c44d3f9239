"""The client's WebSocket connection to the gateway: requests matched to replies by the echoed `id`, a turn's
events as an async iterator, and automatic reconnects that re-join the same session and re-select the model.

One reader task owns the socket's receive side and routes every frame: a reply whose `id` belongs to a pending
request resolves it; frames of a running turn go to that turn's queue; anything else goes to `on_notice`.

Every connection attempt (the first and each reconnect) first has the listener prove on `/health` that it is the
user's gateway (`client.verify`); only then is the token sent in the WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from t_koma.client.frames import (
    TURN_EVENT_TYPES,
    AvailableModels,
    ErrorFrame,
    Frame,
    GatewayError,
    GatewayUnavailableError,
    Hello,
    History,
    Pong,
    ProviderList,
    ProviderSelected,
    Response,
    SessionCreated,
    SessionDeleted,
    SessionList,
    SessionSwitched,
    TurnEvent,
)
from t_koma.client.status import ConnectionState
from t_koma.client.verify import ForeignListenerError, http_base, require_gateway
from t_koma.client.wire import Incoming, parse_frame

F = TypeVar("F")

RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0)
"""Seconds between reconnect attempts; the last value repeats until the gateway is back or the client quits."""

MAX_INCOMING_FRAME = 64 * 1024 * 1024
VERIFY_TIMEOUT = 5.0
"""Seconds the listener has to answer the `/health` challenge (the same bound as the WebSocket handshake)."""


@dataclass(slots=True)
class _Pending:
    expects: frozenset[str]
    future: asyncio.Future[Incoming]


@dataclass(slots=True)
class _Turn:
    request_id: str
    queue: asyncio.Queue[TurnEvent] = field(default_factory=asyncio.Queue)


class GatewayConnection:
    """A live connection to the gateway's `/ws`. `token` is a callable so a restarted gateway's token is re-read."""

    def __init__(
        self,
        url: str,
        token: Callable[[], str | None],
        *,
        reconnect_delays: Sequence[float] = RECONNECT_DELAYS,
        request_timeout: float = 30.0,
        on_state: Callable[[ConnectionState], None] | None = None,
        on_notice: Callable[[Frame], None] | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self._delays = tuple(reconnect_delays) or RECONNECT_DELAYS
        self._timeout = request_timeout
        self.on_state: Callable[[ConnectionState], None] = on_state or (lambda state: None)
        """Called on every change of `state`."""
        self.on_notice: Callable[[Frame], None] = on_notice or (lambda frame: None)
        """Called with frames that answer nothing pending (e.g. an `error` about a `cancel`)."""
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._fire_and_forget: set[str] = set()
        self._turn: _Turn | None = None
        self.state: ConnectionState = "disconnected"
        self.session_id: str | None = None
        """The session this client is in; re-joined with `switch_session` after a reconnect."""
        self.selection: tuple[str, str] | None = None
        """The (provider, model) last confirmed by `provider_selected`; re-selected after a reconnect."""
        self.reconnects = 0
        self.hello: Hello | None = None
        """What the gateway said on connecting: its version, the current selection, the providers and their keys."""
        self._hello_seen = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def connect(self, hello_timeout: float = 5.0) -> None:
        """Open the first connection and wait for `hello`; raises `GatewayUnavailableError` when the gateway
        cannot be reached."""
        self._closing = False
        await self._open()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hello_seen.wait(), hello_timeout)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in (self._reader, self._reconnector):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._reader = self._reconnector = None
        self._fail_all(GatewayUnavailableError("the connection to the gateway was closed"))
        self._set_state("disconnected")

    async def _open(self) -> None:
        token = self._token()
        await asyncio.to_thread(require_gateway, http_base(self.url), lambda: token, VERIFY_TIMEOUT)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        host = urlsplit(self.url).hostname or ""
        proxy: Literal[True] | None = None if host in ("127.0.0.1", "localhost", "::1") else True
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                proxy=proxy,
                open_timeout=5,
                max_size=MAX_INCOMING_FRAME,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = " (wrong or missing token)" if status in (401, 403) else ""
            raise GatewayUnavailableError(f"the gateway at {self.url} refused the connection: {status}{hint}") from exc
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise GatewayUnavailableError(f"cannot connect to the gateway at {self.url}: {exc}") from exc
        self._ws = ws
        self._hello_seen.clear()
        self._reader = asyncio.create_task(self._read(ws), name="t-koma-gateway-reader")
        self._connected.set()
        self._set_state("connected")

    def _set_state(self, state: ConnectionState) -> None:
        if state != self.state:
            self.state = state
            self.on_state(state)

    # --- receiving -------------------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    continue
                self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
                self._connected.clear()
                self._lost()

    def _dispatch(self, message: str) -> None:
        try:
            data = json.loads(message)
            incoming = parse_frame(data) if isinstance(data, dict) else None
        except (ValueError, GatewayError) as exc:
            self.on_notice(ErrorFrame(f"unreadable frame from the gateway: {exc}", "protocol_error"))
            return
        if incoming is None:
            return
        self._track(incoming.frame)
        if isinstance(incoming.frame, Hello):
            self.hello = incoming.frame
            self._hello_seen.set()
            return
        turn = self._turn
        if turn is not None and incoming.type in TURN_EVENT_TYPES and incoming.id in (turn.request_id, None):
            self._turn_event(turn, incoming)
            return
        pending = self._match(incoming)
        if pending is not None:
            if not pending.future.done():
                pending.future.set_result(incoming)
            return
        if turn is not None and incoming.type in TURN_EVENT_TYPES and incoming.id not in self._fire_and_forget:
            self._turn_event(turn, incoming)
            return
        self._fire_and_forget.discard(incoming.id or "")
        self.on_notice(incoming.frame)

    def _track(self, frame: Frame) -> None:
        """Follow the current session from every frame that names it."""
        if isinstance(frame, SessionCreated | SessionSwitched | Response) and frame.session_id:
            self.session_id = frame.session_id
        elif isinstance(frame, SessionDeleted) and frame.session_id == self.session_id:
            self.session_id = None

    def _turn_event(self, turn: _Turn, incoming: Incoming) -> None:
        turn.queue.put_nowait(incoming.frame)  # type: ignore[arg-type]  # TURN_EVENT_TYPES are TurnEvents

    def _match(self, incoming: Incoming) -> _Pending | None:
        if incoming.id is not None:
            return self._pending.pop(incoming.id, None)
        # A gateway that does not echo ids: the oldest request expecting this type (or any, for an error).
        for request_id, pending in self._pending.items():
            if incoming.type in pending.expects or incoming.type == "error":
                return self._pending.pop(request_id)
        return None

    def _lost(self) -> None:
        self._fail_all(GatewayUnavailableError("the connection to the gateway was lost"))
        if self._closing:
            self._set_state("disconnected")
            return
        self._set_state("reconnecting")
        self._reconnector = asyncio.create_task(self._reconnect(), name="t-koma-gateway-reconnect")

    def _fail_all(self, error: GatewayUnavailableError) -> None:
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(error)
        if self._turn is not None:
            self._turn.queue.put_nowait(ErrorFrame(error.message, error.type))

    async def _reconnect(self) -> None:
        reported: str | None = None
        for attempt in itertools.count():
            await asyncio.sleep(self._delays[min(attempt, len(self._delays) - 1)])
            if self._closing:
                return
            try:
                await self._open()
            except ForeignListenerError as exc:
                if exc.message != reported:  # once, not on every attempt
                    reported = exc.message
                    self.on_notice(ErrorFrame(exc.message, exc.type))
                continue
            except GatewayUnavailableError:
                continue
            self.reconnects += 1
            await self._restore()
            return

    async def _restore(self) -> None:
        """After a reconnect: re-join the session and re-select the model this connection had."""
        try:
            if self.session_id is not None:
                await self.switch_session(self.session_id)
            if self.selection is not None:
                await self.select_provider(*self.selection)
        except GatewayError as exc:
            self.on_notice(ErrorFrame(f"after reconnecting: {exc.message}", exc.type))

    # --- sending ---------------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    async def _wait_connected(self) -> ClientConnection:
        if self._ws is None:
            if self._closing or self.state == "disconnected":
                raise GatewayUnavailableError("not connected to the gateway")
            try:
                await asyncio.wait_for(self._connected.wait(), self._timeout)
            except TimeoutError:
                raise GatewayUnavailableError("the gateway did not come back; still reconnecting") from None
        assert self._ws is not None
        return self._ws

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = await self._wait_connected()
        try:
            await ws.send(json.dumps(frame, ensure_ascii=False))
        except ConnectionClosed as exc:
            raise GatewayUnavailableError("the connection to the gateway was lost") from exc

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a frame that expects no reply (`tool_approval`, `cancel`); an `error` about it becomes a notice."""
        request_id = self._next_id(str(frame.get("type", "msg")))
        self._fire_and_forget.add(request_id)
        await self._send({**frame, "id": request_id})

    async def request(self, frame: dict[str, Any], expects: str, result: type[F]) -> F:
        """Send `frame` with a fresh `id` and return the reply of type `expects`; an `error` reply raises."""
        request_id = self._next_id(str(frame.get("type", "req")))
        future: asyncio.Future[Incoming] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(frozenset({expects}), future)
        try:
            await self._send({**frame, "id": request_id})
            incoming = await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise GatewayError(f"the gateway did not answer {frame.get('type')!r} in {self._timeout:.0f} s") from None
        finally:
            self._pending.pop(request_id, None)
        if isinstance(incoming.frame, ErrorFrame):
            raise incoming.frame.to_exception()
        if not isinstance(incoming.frame, result):
            raise GatewayError(f"unexpected {incoming.type!r} reply to {frame.get('type')!r}", remote_type="protocol")
        return incoming.frame

    # --- the protocol's messages -----------------------------------------------------------------------

    async def turn(self, content: str, reasoning: str | None = None) -> AsyncIterator[TurnEvent]:
        """Send `chat` in the current session (a new one when there is none) and yield the turn's events;
        the last event is a `Response` or an `ErrorFrame`. `reasoning` is a level for this turn (`"high"`, …)."""
        if self._turn is not None:
            raise GatewayError("a turn is already running")
        turn = _Turn(self._next_id("chat"))
        self._turn = turn
        try:
            frame: dict[str, Any] = {"type": "chat", "id": turn.request_id, "content": content}
            if self.session_id is not None:
                frame["session_id"] = self.session_id
            if reasoning is not None:
                frame["reasoning"] = reasoning
            await self._send(frame)
            while True:
                event = await turn.queue.get()
                yield event
                if isinstance(event, Response | ErrorFrame):
                    return
        finally:
            self._turn = None

    @property
    def turn_running(self) -> bool:
        return self._turn is not None

    async def cancel(self) -> None:
        """Stop this connection's running turn; it ends with a `response` marked cancelled."""
        await self.send({"type": "cancel"})

    async def approve(self, call_id: str, decision: str) -> None:
        await self.send({"type": "tool_approval", "call_id": call_id, "decision": decision})

    async def select_provider(self, provider: str, model: str) -> ProviderSelected:
        selected = await self.request(
            {"type": "select_provider", "provider": provider, "model": model}, "provider_selected", ProviderSelected
        )
        self.selection = (selected.provider, selected.model)
        return selected

    async def list_models(self, provider: str, *, everything: bool = False) -> AvailableModels:
        """The spec's top 20 of `provider`; `everything` asks for the whole catalog (`"all": true`, additive:
        a gateway that ignores it answers the top 20)."""
        frame: dict[str, Any] = {"type": "list_available_models", "provider": provider}
        if everything:
            frame["all"] = True
        return await self.request(frame, "available_models", AvailableModels)

    async def list_providers(self) -> ProviderList:
        return await self.request({"type": "list_providers"}, "providers", ProviderList)

    async def create_session(self, title: str | None = None) -> SessionCreated:
        frame: dict[str, Any] = {"type": "create_session"}
        if title:
            frame["title"] = title
        return await self.request(frame, "session_created", SessionCreated)

    async def list_sessions(self) -> SessionList:
        return await self.request({"type": "list_sessions"}, "session_list", SessionList)

    async def switch_session(self, session_id: str) -> SessionSwitched:
        return await self.request(
            {"type": "switch_session", "session_id": session_id}, "session_switched", SessionSwitched
        )

    async def delete_session(self, session_id: str) -> SessionDeleted:
        return await self.request(
            {"type": "delete_session", "session_id": session_id}, "session_deleted", SessionDeleted
        )

    async def history(self, session_id: str) -> History:
        return await self.request({"type": "get_history", "session_id": session_id}, "history", History)

    async def ping(self) -> Pong:
        return await self.request({"type": "ping"}, "pong", Pong)
