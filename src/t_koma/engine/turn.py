"""One agent turn: the tool loop over the fallback chain, each step persisted as soon as it completes.

A step is one provider call (streamed or not) through the chain; its assistant message and usage row are
written before any tool runs, and the results of all its tool calls are written as one user message before the
next step. A killed process therefore loses at most the step in flight; a cancelled turn writes what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial

from t_koma.engine.approval import ApprovalGate
from t_koma.engine.events import (
    EventSink,
    FallbackEvent,
    FallbackRecord,
    ReasoningDeltaEvent,
    StepUsage,
    TextDeltaEvent,
    ToolCallRecord,
    ToolCallRequest,
    ToolCallStarted,
    ToolResultEvent,
    TurnDone,
    TurnRequest,
    TurnResult,
)
from t_koma.engine.fallback import Attempt, ChainWalk, FallbackChain
from t_koma.engine.history import clean_content
from t_koma.errors import InvalidResponseError, ReasoningExhaustedError, TKomaError, scrub
from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ProviderResponse,
    ProviderUsage,
    ReasoningDelta,
    StreamEvent,
    SystemBlock,
    TextBlock,
    TextDelta,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
    limit_history,
)
from t_koma.providers.base import Provider
from t_koma.store.base import Store, UsageRecord
from t_koma.tools.base import ToolContext, ToolRegistry, ToolResult

CANCELLED_MARKER = "[cancelled by the user]"
NOT_RUN_CANCELLED = "Not run: the user cancelled the turn."
NOT_RUN_MAX_STEPS = "Not run: the turn reached its step limit ({max_steps} model calls)."
PARTIAL_SAVE_SECONDS = 1.0
"""While a step streams, its text so far is saved at most this often: a killed process loses at most that much."""
LENGTH_STOP_REASONS = frozenset({"length", "max_tokens"})
"""Stop reasons that mean "the output limit was reached" (OpenAI-format and Anthropic spellings)."""


@dataclass(frozen=True, slots=True)
class TurnDeps:
    """What every turn of an engine shares."""

    store: Store
    chain: FallbackChain
    tools: ToolRegistry
    tool_context: ToolContext


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """What this turn was asked to do, settled before its first step."""

    request: TurnRequest
    session_id: str
    turn_id: str
    walk: ChainWalk
    system: tuple[SystemBlock, ...]
    tools: tuple[ToolDefinition, ...]
    max_steps: int
    message_limit: int


class Turn:
    """Runs one planned turn; `history` already ends with the (persisted) user message."""

    def __init__(
        self, deps: TurnDeps, plan: TurnPlan, history: list[Message], gate: ApprovalGate, sink: EventSink
    ) -> None:
        self.deps = deps
        self.plan = plan
        self.history = history
        self.gate = gate
        self.sink = sink
        self.records: list[ToolCallRecord] = []
        self.fallbacks: list[FallbackRecord] = []
        self.usage = ProviderUsage()
        self.steps = 0
        self._partial: list[str] = []
        self._partial_timer: asyncio.TimerHandle | None = None
        self._partial_save: asyncio.Future[None] | None = None
        self._partial_kept = False
        self._reasoning: list[str] = []
        self._open_calls: tuple[ToolUseBlock, ...] = ()
        self._results: list[ToolResultBlock] = []
        self._finished = False

    @property
    def session_id(self) -> str:
        return self.plan.session_id

    async def run(self) -> TurnResult:
        store = self.deps.store
        try:
            result = await self._loop()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # the cancellation must propagate even if the note cannot be written
                await self._close_cancelled()
                await self._forget_partial()
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):  # the turn's own error matters more than a failed note
                await store.finish_turn(self.plan.turn_id, "failed", _error_type(exc))
                await self._forget_partial()
            raise
        if not self._finished:  # a last step with no tool calls recorded the turn as done with its message
            await store.finish_turn(self.plan.turn_id, "done", result.stop_reason)
        await self.sink(TurnDone(result))
        return result

    async def _loop(self) -> TurnResult:
        while True:
            response, attempt, message_id = await self._step()
            calls = response.tool_calls
            if not calls:
                return self._result(response, attempt, message_id, response.stop_reason)
            if self.steps >= self.plan.max_steps:
                await self._leave_unrun(calls)
                return self._result(response, attempt, message_id, "max_steps")
            await self._run_tools(calls)

    # --- one provider call -------------------------------------------------------------------------------

    async def _step(self) -> tuple[ProviderResponse, Attempt, str]:
        self.steps += 1
        plan = self.plan
        request = ConversationRequest(
            system=plan.system,
            messages=tuple(limit_history(self.history, plan.message_limit)),
            tools=plan.tools,
            tool_choice=plan.request.tool_choice if plan.tools else None,
            reasoning=plan.request.reasoning,
        )
        walk = plan.walk.again()
        (response, latency_ms), attempt = await self.deps.chain.call(walk, partial(self._call, request), self._moved)
        self.fallbacks.extend(walk.fallbacks)
        check_answered(response, attempt.label)
        return response, attempt, await self._persist_step(response, attempt, latency_ms)

    async def _call(self, request: ConversationRequest, attempt: Attempt) -> tuple[ProviderResponse, float]:
        self._partial.clear()
        started = time.perf_counter()
        if self.plan.request.stream:
            response = await self._stream(attempt.provider, request)
        else:
            response = await attempt.provider.complete(request)
            if response.reasoning_text:
                await self.sink(ReasoningDeltaEvent(self.session_id, response.reasoning_text))
            if response.text:
                self._partial.append(response.text)
                await self.sink(TextDeltaEvent(self.session_id, response.text))
        return response, (time.perf_counter() - started) * 1000.0

    async def _stream(self, provider: Provider, request: ConversationRequest) -> ProviderResponse:
        response: ProviderResponse | None = None
        events = provider.stream(request)
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    self._partial.append(event.text)
                    await self.sink(TextDeltaEvent(self.session_id, event.text))
                    if self._partial_timer is None:
                        self._partial_timer = asyncio.get_running_loop().call_later(
                            PARTIAL_SAVE_SECONDS, self._partial_due
                        )
                elif isinstance(event, ReasoningDelta):
                    await self.sink(ReasoningDeltaEvent(self.session_id, event.text))
                elif isinstance(event, Finish):
                    response = event.response
        finally:
            await close_stream(events)
        if response is None:
            raise InvalidResponseError("the stream ended without a final event", provider=provider.name)
        return response

    def _partial_due(self) -> None:
        self._partial_timer = None
        self._partial_save = asyncio.ensure_future(self._save_partial())

    async def _save_partial(self) -> None:
        """Keep the text this step has streamed so far (a second after a delta, even when the stream then stalls)."""
        text = "".join(self._partial)
        if text:
            await self.deps.store.save_partial(self.plan.turn_id, self.plan.session_id, text)
            self._partial_kept = True

    async def _forget_partial(self) -> None:
        """The step is stored whole (or dropped): no more saves of its partial text, and the kept one goes."""
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None
        if self._partial_save is not None:
            save, self._partial_save = self._partial_save, None
            with contextlib.suppress(Exception):  # a failed save only loses what it would have kept
                await save
        if self._partial_kept:
            self._partial_kept = False
            await self.deps.store.discard_partial(self.plan.turn_id)

    async def _moved(self, from_label: str, to_label: str, error: str) -> None:
        """The chain moved on (or retries): the partial text of the failed attempt is dropped."""
        self._partial.clear()
        await self._forget_partial()
        await self.sink(FallbackEvent(self.session_id, from_label, to_label, error))

    async def _persist_step(self, response: ProviderResponse, attempt: Attempt, latency_ms: float) -> str:
        store, plan = self.deps.store, self.plan
        content = clean_content(response.content)
        model = response.model or attempt.spec.model
        usage = response.usage or ProviderUsage()
        record = UsageRecord(plan.session_id, None, attempt.spec.kind, model, usage, latency_ms)
        last = not response.tool_calls
        stored = await store.append_step(
            plan.session_id,
            content,
            record,
            model=model,
            turn_id=plan.turn_id,
            finishes=last,
            stop_reason=response.stop_reason,
        )
        self._finished = last
        self._partial.clear()
        await self._forget_partial()
        if response.reasoning_text:
            self._reasoning.append(response.reasoning_text)
        self.history.append(Message("assistant", content))
        self._open_calls, self._results = response.tool_calls, []
        self.usage = self.usage + usage
        await self.sink(StepUsage(plan.session_id, attempt.spec.kind, model, usage, latency_ms))
        return stored.id

    # --- tool calls --------------------------------------------------------------------------------------

    async def _run_tools(self, calls: Sequence[ToolUseBlock]) -> None:
        for call in calls:
            arguments = arguments_text(call)
            await self.sink(ToolCallStarted(self.session_id, call.id, call.name, arguments))
            result = await self._outcome(call, arguments)
            self._results.append(ToolResultBlock(call.id, result.content, result.is_error))
            self.records.append(ToolCallRecord(call.id, call.name, arguments, result.content, result.is_error))
            await self.sink(ToolResultEvent(self.session_id, call.id, result.content, result.is_error))
        await self._persist_results(tuple(self._results))

    async def _outcome(self, call: ToolUseBlock, arguments: str) -> ToolResult:
        if call.arguments_error is not None:
            return ToolResult(invalid_arguments_message(call), is_error=True)
        tool = self.deps.tools.get(call.name) if self.plan.tools else None
        if tool is None:
            return ToolResult(unknown_tool_message(call.name, [t.name for t in self.plan.tools]), is_error=True)
        denial = await self.gate.denial(tool, ToolCallRequest(call.id, call.name, arguments))
        if denial is not None:
            return ToolResult(denial, is_error=True)
        context = self.deps.tool_context
        try:
            result = await tool.run(call.input, context)
        except Exception as exc:  # a broken tool must not end the turn: the model sees what went wrong
            result = ToolResult(f"Error: {call.name} failed: {type(exc).__name__}: {exc}", is_error=True)
        # A command can print a key (`cat .env`, `env | base64`): redacted before it goes upstream, is stored or shown.
        return ToolResult(scrub(result.content, context.secrets), result.is_error) if context.secrets else result

    async def _leave_unrun(self, calls: Sequence[ToolUseBlock]) -> None:
        """`max_steps` reached: list the calls unexecuted, and tell the model in history why they were not run."""
        note = NOT_RUN_MAX_STEPS.format(max_steps=self.plan.max_steps)
        for call in calls:
            self.records.append(ToolCallRecord(call.id, call.name, arguments_text(call), None, None))
        await self._persist_results(tuple(ToolResultBlock(call.id, note, is_error=True) for call in calls))

    async def _persist_results(self, results: tuple[ToolResultBlock, ...]) -> None:
        plan = self.plan
        await self.deps.store.append_message(plan.session_id, "user", results, turn_id=plan.turn_id)
        self.history.append(Message("user", results))
        self._open_calls, self._results = (), []

    # --- endings -----------------------------------------------------------------------------------------

    async def _close_cancelled(self) -> None:
        """Write what the turn had when it was cancelled: results for its open calls, then its partial text with a
        marker, and mark the turn cancelled."""
        store, plan = self.deps.store, self.plan
        if self._open_calls:
            answered = {result.tool_use_id for result in self._results}
            unrun = [call for call in self._open_calls if call.id not in answered]
            for call in unrun:
                self.records.append(ToolCallRecord(call.id, call.name, arguments_text(call), None, None))
            closing = [ToolResultBlock(call.id, NOT_RUN_CANCELLED, is_error=True) for call in unrun]
            await self._persist_results((*self._results, *closing))
        text = "".join(self._partial)
        note = f"{text}\n\n{CANCELLED_MARKER}" if text.strip() else CANCELLED_MARKER
        await store.append_message(
            plan.session_id, "assistant", (TextBlock(note),), turn_id=plan.turn_id, status="cancelled"
        )
        await store.finish_turn(plan.turn_id, "cancelled", "cancelled")

    def _result(
        self, response: ProviderResponse, attempt: Attempt, message_id: str, stop_reason: str | None
    ) -> TurnResult:
        return TurnResult(
            session_id=self.session_id,
            message_id=message_id,
            text=response.text,
            stop_reason=stop_reason,
            provider=attempt.spec.kind,
            model=response.model or attempt.spec.model,
            tool_calls=tuple(self.records),
            usage=self.usage,
            steps=self.steps,
            fallbacks=tuple(self.fallbacks),
            reasoning="\n\n".join(self._reasoning) or None,
        )


def check_answered(response: ProviderResponse, label: str) -> None:
    """Refuse an empty answer that a reasoning model left when its reasoning used the whole output limit: the user
    gets `ReasoningExhaustedError` naming the fix instead of a blank reply."""
    if response.stop_reason not in LENGTH_STOP_REASONS or response.text.strip() or response.tool_calls:
        return
    reasoned = bool(response.reasoning) or bool(response.usage and response.usage.reasoning_tokens)
    if reasoned:
        raise ReasoningExhaustedError(response.usage.output_tokens if response.usage else None, label)


async def close_stream(events: AsyncIterator[StreamEvent]) -> None:
    """Release a provider stream (its HTTP response) now rather than when it is garbage-collected."""
    if isinstance(events, AsyncGenerator):
        await events.aclose()


def arguments_text(call: ToolUseBlock) -> str:
    """The call's arguments as the model sent them (when they were not valid JSON) or as JSON."""
    if call.arguments_error is not None and call.raw_arguments is not None:
        return call.raw_arguments
    return json.dumps(call.input, ensure_ascii=False)


def invalid_arguments_message(call: ToolUseBlock) -> str:
    sent = (call.raw_arguments or "")[:500]
    return (
        f"Error: the arguments of this {call.name} call are not a valid JSON object ({call.arguments_error}). "
        f"You sent: {sent!r}. Call the tool again with a JSON object that matches its parameters schema."
    )


def unknown_tool_message(name: str, available: Sequence[str]) -> str:
    offered = ", ".join(available) if available else "none (tools are disabled for this turn)"
    return f"Error: there is no tool named {name!r}. Available tools: {offered}."


def _error_type(exc: Exception) -> str:
    return exc.type if isinstance(exc, TKomaError) else type(exc).__name__
