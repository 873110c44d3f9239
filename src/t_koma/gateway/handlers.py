"""Answers to each client message of one connection, and that connection's state: the model selection, the
current session and the turns it started. Handlers return quickly; chat turns and catalog fetches run as tasks
so that `cancel`, `ping` and `tool_approval` are read while they run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from t_koma.engine.engine import session_title
from t_koma.engine.events import TurnRequest
from t_koma.errors import ConfigError, InvalidModelError, MissingKeyError, TKomaError
from t_koma.gateway import frames
from t_koma.gateway.protocol import (
    Cancel,
    Chat,
    ClientMessage,
    CreateSession,
    DeleteSession,
    GetHistory,
    ListAvailableModels,
    ListProviders,
    ListSessions,
    Ping,
    RequestId,
    SelectProvider,
    SwitchSession,
    ToolApproval,
)
from t_koma.gateway.turns import FrameSink, RunningTurn
from t_koma.messages import JSONObject
from t_koma.providers.factory import normalize_provider_name

if TYPE_CHECKING:
    from t_koma.gateway.state import GatewayState

log = logging.getLogger(__name__)


class Handlers:
    """One connection's message handlers (`dispatch`) and state."""

    def __init__(self, sink: Any, state: GatewayState) -> None:
        self.sink: FrameSink = sink
        self.state = state
        self.chain: tuple[str, ...] = state.engine.resolver.default_chain()
        self.provider: str | None = None
        self.session_id: str | None = None
        self.turns: dict[str, RunningTurn] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def dispatch(self, message: ClientMessage) -> None:
        try:
            await getattr(self, _HANDLERS[type(message)])(message)
        except TKomaError as exc:
            await self.send(frames.error_from(exc, message.id))
        except Exception:
            log.exception("handling %s failed", type(message).__name__)
            await self.send(frames.error("internal error", "internal_error", message.id))

    async def send(self, frame: JSONObject) -> None:
        await self.sink.send(frame)

    def hello(self) -> JSONObject:
        provider, model = self._describe(self.chain[0] if self.chain else None)
        return frames.hello(
            session_id=self.session_id,
            provider=provider,
            model=model,
            chain=self.chain,
            max_frame_bytes=self.state.config.gateway.max_frame_bytes,
            providers=self.state.providers,
        )

    def _describe(self, ref: str | None) -> tuple[str | None, str | None]:
        if ref is None:
            return None, None
        configured = self.state.config.models.get(ref)
        if configured is not None and self.provider is None:
            return configured.provider, configured.model
        try:
            spec = self.state.resolver.resolve(ref, self.provider)
        except TKomaError:
            return self.provider, ref
        return spec.kind, spec.model

    def detach_turns(self) -> None:
        for turn in self.turns.values():
            turn.detach(self.sink)
        for task in self._tasks:
            task.cancel()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- models ----------------------------------------------------------------------------------------

    async def select_provider(self, message: SelectProvider) -> None:
        failure = _invalid_model_frame(message.id)
        try:
            kind = self._provider_kind(message.provider)
        except ConfigError as exc:
            await self.send(failure(exc.message, "unknown_provider"))
            return
        try:
            spec = await self.state.resolver.validate(message.model, message.provider)
        except MissingKeyError as exc:
            await self.send(failure(exc.message, "missing_api_key", key_env=exc.variable))
            return
        except InvalidModelError as exc:
            extra = {"suggestions": list(exc.suggestions)} if exc.suggestions else {}
            await self.send(failure(exc.message, "unknown_model", **extra))
            return
        except ConfigError as exc:
            await self.send(failure(exc.message, "unknown_model"))
            return
        self.chain = (message.model,)
        self.provider = message.provider
        log.info("selected provider=%s model=%s", spec.kind, spec.model)
        await self.send(frames.frame("provider_selected", message.id, provider=kind, model=spec.model))

    def _provider_kind(self, provider: str) -> str:
        try:
            return normalize_provider_name(provider)
        except ConfigError:
            server = self.state.config.models.get(provider.strip())
            if server is not None and server.provider == "openai_compatible":
                return "openai_compatible"
            raise

    async def list_available_models(self, message: ListAvailableModels) -> None:
        try:
            kind = self._provider_kind(message.provider)
        except ConfigError as exc:
            await self.send(_invalid_model_frame(message.id)(exc.message, "unknown_provider"))
            return
        self._spawn(self._send_models(message.id, message.provider, kind, message.everything))

    async def _send_models(self, request_id: RequestId, provider: str, kind: str, everything: bool) -> None:
        config = self.state.config
        configured = [m.model for m in config.models.values() if m.provider == kind]
        catalog = self.state.resolver.catalog(provider)
        try:
            models = await (catalog.models() if everything else catalog.top(configured, n=20))
        except TKomaError as exc:
            await self.send(frames.error_from(exc, request_id))
            return
        await self.send(frames.available_models(request_id, kind, models))

    async def list_providers(self, message: ListProviders) -> None:
        await self.send(frames.frame("providers", message.id, providers=[p.to_dict() for p in self.state.providers]))

    # --- sessions --------------------------------------------------------------------------------------

    async def create_session(self, message: CreateSession) -> None:
        info = await self.state.engine.store.create_session(message.title)
        self.session_id = info.id
        await self.send(frames.session_created(message.id, info))

    async def list_sessions(self, message: ListSessions) -> None:
        summaries = await self.state.engine.store.list_sessions()
        sessions = [
            frames.session_entry(s, active=s.session.id == self.session_id, busy=self.state.turns.busy(s.session.id))
            for s in summaries
        ]
        await self.send(frames.frame("session_list", message.id, sessions=sessions))

    async def switch_session(self, message: SwitchSession) -> None:
        info = await self.state.engine.store.get_session(message.session_id)
        if info is None:
            await self.send(_session_not_found(message.id, message.session_id))
            return
        self.session_id = info.id
        running = self.state.turns.get(info.id)
        if running is not None and running.sink.closed:
            # The client reconnected while its turn ran on: its remaining frames come here.
            running.attach(self.sink)
            self.turns[info.id] = running
        await self.send(frames.frame("session_switched", message.id, session_id=info.id, title=info.title))

    async def delete_session(self, message: DeleteSession) -> None:
        if self.state.turns.busy(message.session_id):
            await self.send(frames.error("a turn is running in this session; cancel it first", "busy", message.id))
            return
        if not await self.state.engine.store.delete_session(message.session_id):
            await self.send(_session_not_found(message.id, message.session_id))
            return
        self.state.engine.approvals.forget(message.session_id)
        if self.session_id == message.session_id:
            self.session_id = None
        await self.send(frames.frame("session_deleted", message.id, session_id=message.session_id))

    async def get_history(self, message: GetHistory) -> None:
        session_id = message.session_id or self.session_id
        if session_id is None:
            await self.send(
                frames.error("no current session: name one with session_id", "session_not_found", message.id)
            )
            return
        if await self.state.engine.store.get_session(session_id) is None:
            await self.send(_session_not_found(message.id, session_id))
            return
        messages = await self.state.engine.store.load_messages(session_id)
        await self.send(frames.history(message.id, session_id, messages))

    # --- turns -----------------------------------------------------------------------------------------

    async def chat(self, message: Chat) -> None:
        if self.state.draining:
            await self.send(frames.error("the gateway is shutting down", "shutting_down", message.id))
            return
        store = self.state.engine.store
        session_id = message.session_id or self.session_id
        if session_id is None:
            info = await store.create_session(session_title(message.content))
            session_id = info.id
            await self.send(frames.session_created(message.id, info))
        elif message.session_id not in (None, self.session_id) and await store.get_session(session_id) is None:
            # The current session was checked when it became current; should it be deleted since, the turn fails
            # with the same `session_not_found` error (the engine reads the session anyway).
            await self.send(_session_not_found(message.id, session_id))
            return
        self.session_id = session_id
        if self.state.turns.busy(session_id):
            await self.send(
                frames.error("a turn is already running in this session", "busy", message.id, session_id=session_id)
            )
            return
        request = TurnRequest(
            content=message.content,
            chain=self.chain,
            provider=self.provider,
            session_id=session_id,
            reasoning=message.reasoning,
            stream=True,
            metadata={"client": "websocket"},
        )
        turn = RunningTurn(self.state, self.sink, message.id, request, session_id)
        self.turns = {sid: t for sid, t in self.turns.items() if self.state.turns.get(sid) is t}
        self.turns[session_id] = turn
        if self.state.config.logging.log_bodies:
            log.info("turn start session=%s chain=%s content=%r", session_id, ",".join(self.chain), message.content)
        else:
            log.info("turn start session=%s chain=%s chars=%d", session_id, ",".join(self.chain), len(message.content))
        turn.start()

    async def tool_approval(self, message: ToolApproval) -> None:
        for session_id, turn in self.turns.items():
            if message.session_id not in (None, session_id):
                continue
            if turn.decide(message.call_id, message.decision):
                return
        await self.send(
            frames.error(f"no tool call '{message.call_id}' is waiting for approval", "not_found", message.id)
        )

    async def cancel(self, message: Cancel) -> None:
        targets = [
            turn
            for session_id, turn in self.turns.items()
            if message.session_id in (None, session_id) and self.state.turns.get(session_id) is turn
        ]
        if not targets:
            await self.send(frames.error("no turn is running", "not_found", message.id))
            return
        for turn in targets:
            log.info("cancel session=%s", turn.session_id)
            turn.cancel()

    async def ping(self, message: Ping) -> None:
        await self.send(frames.frame("pong", message.id))


# Message type → handler method (one table for every connection).
_HANDLERS: dict[type, str] = {
    SelectProvider: "select_provider",
    ListAvailableModels: "list_available_models",
    ListProviders: "list_providers",
    Chat: "chat",
    CreateSession: "create_session",
    ListSessions: "list_sessions",
    SwitchSession: "switch_session",
    DeleteSession: "delete_session",
    GetHistory: "get_history",
    ToolApproval: "tool_approval",
    Cancel: "cancel",
    Ping: "ping",
}


def _session_not_found(request_id: RequestId, session_id: str) -> JSONObject:
    return frames.error(f"no session '{session_id[:80]}'", "session_not_found", request_id)


def _invalid_model_frame(request_id: RequestId) -> Callable[..., JSONObject]:
    def build(message: str, reason: str, **details: Any) -> JSONObject:
        return frames.error(message, "invalid_model", request_id, reason=reason, **details)

    return build
