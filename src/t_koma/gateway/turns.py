"""One WebSocket chat turn as a task: it runs `engine.run_turn`, renders the engine's events as frames for the
connection that owns it, answers approval requests through that connection, and ends with exactly one
`response` or `error` frame. The connection can be swapped (a client reconnecting to the session) or lost
(frames are dropped, pending approvals denied); the turn itself runs to its end either way."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from t_koma.engine.events import (
    ApprovalDecision,
    ApprovalNeeded,
    EngineEvent,
    FallbackEvent,
    ReasoningDeltaEvent,
    StepUsage,
    TextDeltaEvent,
    ToolCallRequest,
    ToolCallStarted,
    ToolResultEvent,
    TurnRequest,
    TurnResult,
)
from t_koma.errors import TKomaError, TurnCancelledError
from t_koma.gateway import frames
from t_koma.gateway.protocol import RequestId
from t_koma.messages import JSONObject, ProviderUsage

if TYPE_CHECKING:
    from t_koma.gateway.state import GatewayState

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Where a turn's frames go: a live connection."""

    @property
    def closed(self) -> bool: ...

    async def send(self, frame: JSONObject) -> None: ...


class RunningTurn:
    """A turn in flight for one session."""

    def __init__(
        self, state: GatewayState, sink: FrameSink, request_id: RequestId, request: TurnRequest, session_id: str
    ) -> None:
        self.state = state
        self.sink = sink
        self.request_id = request_id
        self.session_id = session_id
        self._request = request
        self._approvals: dict[str, asyncio.Future[ApprovalDecision]] = {}
        self._asked: set[str] = set()
        self._step_text: list[str] = []
        self._usage = ProviderUsage()
        self._provider: str | None = None
        self._model: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.state.turns.add(self)
        # The request with the approval callback (bound to self) lives only in the running coroutine's frame:
        # stored on self it would make a reference cycle, and every finished turn would wait for the cyclic GC.
        request = replace(self._request, approval=self._approve)
        self._task = asyncio.create_task(self._run(request), name=f"turn-{self.session_id}")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    # --- approvals -------------------------------------------------------------------------------------

    def decide(self, call_id: str, decision: ApprovalDecision) -> bool:
        future = self._approvals.get(call_id)
        if future is None or future.done():
            return False
        future.set_result(decision)
        return True

    def detach(self, sink: FrameSink) -> None:
        """`sink` went away: deny what it was asked, drop further frames until another connection attaches."""
        if self.sink is not sink:
            return
        for future in self._approvals.values():
            if not future.done():
                future.set_result("deny")

    def attach(self, sink: FrameSink) -> None:
        self.sink = sink

    async def _approve(self, call: ToolCallRequest) -> ApprovalDecision:
        if self.sink.closed:
            return "deny"
        await self._ask(call.call_id, call.name, call.arguments)
        future = self._approvals.get(call.call_id)
        if future is None:
            return "deny"
        try:
            return await future
        finally:
            self._approvals.pop(call.call_id, None)
            self._asked.discard(call.call_id)  # models may reuse a call ID in a later step

    async def _ask(self, call_id: str, name: str, arguments: str) -> None:
        """Send one request per call (the engine may both emit `ApprovalNeeded` and call back); the future
        exists before the frame leaves so that an instant answer is never lost."""
        if call_id in self._asked:
            return
        self._asked.add(call_id)
        self._approvals[call_id] = asyncio.get_running_loop().create_future()
        await self._send(
            frames.frame(
                "tool_approval_request",
                self.request_id,
                session_id=self.session_id,
                call_id=call_id,
                name=name,
                arguments=arguments,
            )
        )

    # --- the turn --------------------------------------------------------------------------------------

    async def _send(self, frame: JSONObject) -> None:
        sink = self.sink
        if not sink.closed:
            await sink.send(frame)

    async def _run(self, request: TurnRequest) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self.state.engine.run_turn(request, self._on_event)
        except (asyncio.CancelledError, TurnCancelledError):
            outcome = "cancelled"
            await self._send(
                frames.cancelled_response(
                    self.request_id, self.session_id, "".join(self._step_text), self._provider, self._model, self._usage
                )
            )
        except TKomaError as exc:
            log.warning("turn failed session=%s: %s", self.session_id, exc.message)
            await self._send(frames.error_from(exc, self.request_id, session_id=self.session_id))
        except Exception:
            log.exception("turn crashed session=%s", self.session_id)
            await self._send(
                frames.error(
                    "internal error while running the turn",
                    "internal_error",
                    self.request_id,
                    session_id=self.session_id,
                )
            )
        else:
            outcome = result.stop_reason or "done"
            await self._send(frames.response(self.request_id, result))
            self._log_done(result, started)
        finally:
            self.detach(self.sink)
            self.state.turns.remove(self)
            self._step_text.clear()  # the connection may keep this object until its next chat
            if outcome in ("error", "cancelled"):
                log.info(
                    "turn %s session=%s after %.0f ms", outcome, self.session_id, (time.perf_counter() - started) * 1000
                )

    def _log_done(self, result: TurnResult, started: float) -> None:
        log.info(
            "turn done session=%s model=%s stop=%s steps=%d tokens=%d/%d %.0f ms",
            self.session_id,
            result.model,
            result.stop_reason,
            result.steps,
            result.usage.input_tokens,
            result.usage.output_tokens,
            (time.perf_counter() - started) * 1000,
        )

    async def _on_event(self, event: EngineEvent) -> None:
        rid, sid = self.request_id, self.session_id
        if isinstance(event, TextDeltaEvent):
            self._step_text.append(event.text)
            await self._send({"type": "text_delta", **_id(rid), "session_id": sid, "text": event.text})
        elif isinstance(event, ReasoningDeltaEvent):
            await self._send({"type": "reasoning_delta", **_id(rid), "session_id": sid, "text": event.text})
        elif isinstance(event, ToolCallStarted):
            self._step_text.clear()
            await self._send(
                frames.frame(
                    "tool_call", rid, session_id=sid, call_id=event.call_id, name=event.name, arguments=event.arguments
                )
            )
        elif isinstance(event, ApprovalNeeded):
            if not self.sink.closed:
                await self._ask(event.call_id, event.name, event.arguments)
        elif isinstance(event, ToolResultEvent):
            await self._send(
                frames.frame(
                    "tool_result",
                    rid,
                    session_id=sid,
                    call_id=event.call_id,
                    content=event.content,
                    is_error=event.is_error,
                )
            )
        elif isinstance(event, FallbackEvent):
            self._step_text.clear()
            log.info("fallback session=%s from=%s to=%s: %s", sid, event.from_model, event.to_model, event.error)
            await self._send(
                frames.frame(
                    "fallback",
                    rid,
                    session_id=sid,
                    from_model=event.from_model,
                    to_model=event.to_model,
                    error=event.error,
                )
            )
        elif isinstance(event, StepUsage):
            self._usage = self._usage + event.usage
            self._provider, self._model = event.provider, event.model


def _id(request_id: RequestId) -> JSONObject:
    return {} if request_id is None else {"id": request_id}
