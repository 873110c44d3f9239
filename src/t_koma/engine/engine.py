"""`Engine`: the one entry point for model calls. `run_turn` is the agent turn (sessions, tool loop, fallback
chain); `complete` / `stream` are the pass-through used by `/v1/chat/completions` (fallback chain and circuit
breaker, usage logged, nothing else stored). The CLI and the gateway only render its events."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from t_koma.config.model import Approval, Config
from t_koma.engine.approval import ApprovalGate, RememberedApprovals
from t_koma.engine.events import (
    EngineEvent,
    EventSink,
    FallbackEvent,
    ServedBy,
    TurnRequest,
    TurnResult,
)
from t_koma.engine.fallback import (
    Attempt,
    ChainWalk,
    CircuitBreaker,
    FallbackChain,
    ProviderSource,
    RetryPolicy,
    describe_error,
)
from t_koma.engine.history import repair_history, system_prompt
from t_koma.engine.turn import Turn, TurnDeps, TurnPlan, close_stream
from t_koma.engine.usage_log import UsageLog
from t_koma.errors import ProviderError, SessionNotFoundError
from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ProviderResponse,
    ProviderUsage,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallEvent,
)
from t_koma.providers.factory import ModelResolver
from t_koma.store.base import SessionInfo, Store, StoredMessage, UsageRecord
from t_koma.store.sqlite import DEFAULT_TITLE, SqliteStore
from t_koma.tools.base import ToolContext, ToolRegistry
from t_koma.tools.leftovers import stop_leftovers
from t_koma.tools.registry import default_registry
from t_koma.tools.registry import tool_context as default_tool_context

TITLE_LENGTH = 60
HISTORY_MARGIN = 16
"""Stored messages a turn loads beyond `agent.message_limit`: `limit_history` cuts the history at a clean start
(never between a tool call and its result), and `repair_history` may merge messages, so a few more than the limit
are read; never the whole session, which grows without bound."""


async def _ignore(event: EngineEvent) -> None:
    """The sink used when the caller passes none."""


class Engine:
    """Runs turns for the CLI and the gateway. Build with `await Engine.open(config)`; `close()` when done."""

    def __init__(
        self,
        config: Config,
        store: Store,
        resolver: ProviderSource,
        tools: ToolRegistry,
        *,
        tool_context: ToolContext | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.resolver = resolver
        self.tools = tools
        self.breaker = CircuitBreaker(store, policy, clock)
        self.chain = FallbackChain(resolver, self.breaker, sleep=sleep)
        self.tool_context = tool_context or default_tool_context(config)
        self._deps = TurnDeps(store, self.chain, tools, self.tool_context)
        self._usage_log = UsageLog(store)
        self.approvals = RememberedApprovals()
        self._session_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @classmethod
    async def open(cls, config: Config, **options: Any) -> Engine:
        """Open the SQLite store in the data dir, mark turns of dead processes interrupted, build the resolver and
        the default tools."""
        store = await SqliteStore.open(config.database_path)
        try:
            await store.recover_interrupted_turns()
        except BaseException:
            await store.close()
            raise
        return cls(config, store, ModelResolver(config), default_registry(), **options)

    async def flush_usage(self) -> None:
        """Write the pass-through usage rows still buffered (they are written within a fraction of a second)."""
        await self._usage_log.flush()

    async def close(self) -> None:
        """Close everything and stop the processes tool commands left running in the background."""
        try:
            if self.tool_context.owner is not None:
                await asyncio.to_thread(stop_leftovers, self.tool_context.owner)
            await self.breaker.aclose()
            await self._usage_log.close()
            aclose = getattr(self.resolver, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self.store.close()

    # --- the agent turn ----------------------------------------------------------------------------------

    async def run_turn(self, request: TurnRequest, sink: EventSink | None = None) -> TurnResult:
        """One user message through the tool loop. Raises `ConfigError` for a bad chain (before anything is
        stored), `SessionNotFoundError`, or the error that ended the turn (`ProviderError`,
        `AllModelsExhaustedError`); on cancellation the turn is stored as cancelled and `CancelledError`
        propagates."""
        sink = sink or _ignore
        walk = self.chain.walk(request.chain, request.provider)
        created: SessionInfo | None = None
        if request.session_id is None:
            created = await self.store.create_session(session_title(request.content))
            session_id = created.id
        else:
            session_id = request.session_id
        async with self._session_lock(session_id):
            session, stored = (created, []) if created is not None else await self._stored(session_id)
            turn = await self._begin(request, session, stored, walk, sink)
            try:
                return await turn.run()
            finally:
                self.approvals.release(session_id)

    def _session_lock(self, session_id: str) -> asyncio.Lock:
        lock = self._session_locks.get(session_id)
        if lock is None:
            lock = self._session_locks[session_id] = asyncio.Lock()
        return lock

    async def _stored(self, session_id: str) -> tuple[SessionInfo, list[StoredMessage]]:
        """The session and the tail of its history, read together (one statement)."""
        limit = max(0, self.config.agent.message_limit) + HISTORY_MARGIN
        found = await self.store.get_session_with_recent_messages(session_id, limit)
        if found is None:
            raise SessionNotFoundError(
                f"no session with id {session_id!r}; list the stored ones with `t-koma sessions`"
            )
        return found

    async def _begin(
        self, request: TurnRequest, session: SessionInfo, stored: list[StoredMessage], walk: ChainWalk, sink: EventSink
    ) -> Turn:
        store = self.store
        user = Message.user(request.content)
        begin = store.begin_turn_with_message(session.id, user.content)
        if not stored and request.session_id is not None and _has_default_title(session):
            rename = store.rename_session(session.id, session_title(request.content))
            (turn_id, _), _ = await asyncio.gather(begin, rename)
        else:
            turn_id, _ = await begin
        history = repair_history([*(Message(m.role, m.content) for m in stored), user])
        plan = self._plan(request, session.id, turn_id, walk)
        return Turn(self._deps, plan, history, self._gate(request, session.id, sink), sink)

    def _plan(self, request: TurnRequest, session_id: str, turn_id: str, walk: ChainWalk) -> TurnPlan:
        agent = self.config.agent
        tools = self.tools.definitions() if request.tools_enabled else ()
        system = system_prompt(
            request.system or agent.system_prompt,
            tool_names=[tool.name for tool in tools],
            workspace=self.tool_context.workspace,
            timeout_seconds=self.tool_context.timeout_seconds,
        )
        max_steps = request.max_steps if request.max_steps is not None else agent.max_steps
        return TurnPlan(request, session_id, turn_id, walk, system, tools, max(1, max_steps), agent.message_limit)

    def _gate(self, request: TurnRequest, session_id: str, sink: EventSink) -> ApprovalGate:
        policy: Approval = self.config.shell.approval
        if request.auto_approve and policy != "deny":
            policy = "auto"
        return ApprovalGate(policy, request.approval, self.approvals.of(session_id), session_id, sink)

    # --- pass-through ------------------------------------------------------------------------------------

    async def complete(
        self, chain: Sequence[str], request: ConversationRequest, provider: str | None = None
    ) -> tuple[ProviderResponse, ServedBy]:
        """One non-streaming call through the chain; usage is logged with no session."""
        walk = self.chain.walk(chain, provider)

        async def call(attempt: Attempt) -> tuple[ProviderResponse, float]:
            started = time.perf_counter()
            response = await attempt.provider.complete(request)
            return response, (time.perf_counter() - started) * 1000.0

        (response, latency_ms), attempt = await self.chain.call(walk, call)
        self._log_usage(attempt, response, latency_ms)
        return response, served_by(attempt)

    async def stream(
        self, chain: Sequence[str], request: ConversationRequest, provider: str | None = None
    ) -> AsyncIterator[ServedBy | FallbackEvent | StreamEvent]:
        """One streaming call through the chain. Each attempt starts with `ServedBy`; a failure before the first
        text or tool call moves to the next model (yielding `FallbackEvent`); after it, the `ProviderError`
        (with `partial_text`) is raised."""
        walk = self.chain.walk(chain, provider)
        attempt = await walk.start()
        while True:
            yield served_by(attempt)
            started = time.perf_counter()
            committed = False
            events = attempt.provider.stream(request)
            try:
                async for event in events:
                    committed = committed or isinstance(event, TextDelta | ReasoningDelta | ToolCallEvent)
                    if isinstance(event, Finish):
                        self._log_usage(attempt, event.response, (time.perf_counter() - started) * 1000.0)
                    yield event
            except ProviderError as error:
                if committed:
                    if error.retryable:  # too late to move on, but the next call should not pick this model
                        await self.breaker.record_failure(attempt.label, error)
                    raise
                following = await walk.failed(attempt, error)
                yield FallbackEvent(None, attempt.label, following.label, describe_error(error))
                attempt = following
                continue
            finally:
                await close_stream(events)
            await walk.succeeded(attempt)
            return

    def _log_usage(self, attempt: Attempt, response: ProviderResponse, latency_ms: float) -> None:
        model = response.model or attempt.spec.model
        usage = response.usage or ProviderUsage()
        self._usage_log.add(UsageRecord(None, None, attempt.spec.kind, model, usage, latency_ms))


def served_by(attempt: Attempt) -> ServedBy:
    return ServedBy(attempt.spec.kind, attempt.spec.model, attempt.label)


def session_title(content: str) -> str:
    """A new session's title: the first line-ish of the first user message, about 60 characters."""
    text = " ".join(content.split())
    if len(text) <= TITLE_LENGTH:
        return text
    cut = text[:TITLE_LENGTH].rsplit(" ", 1)[0] or text[:TITLE_LENGTH]
    return cut + "…"


def _has_default_title(session: SessionInfo) -> bool:
    return session.title == DEFAULT_TITLE
