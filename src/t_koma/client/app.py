"""The chat loop: prompt (multi-line, bottom status bar), slash commands, and running turns against the gateway.

Ctrl+C: at the prompt it clears the input, and pressed twice on an empty line it quits; while a turn runs (the
terminal is then in normal mode, so Ctrl+C is a SIGINT) the first cancels the turn (`cancel`) and a second
quits. Nothing here queries the terminal (no cursor-position requests), so it runs under pexpect and tmux.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompt_toolkit.application import get_app_or_none
from prompt_toolkit.formatted_text import StyleAndTextTuples
from rich.console import Console

from t_koma.client.catalog import v1_catalog
from t_koma.client.commands import SlashCommands
from t_koma.client.connection import GatewayConnection
from t_koma.client.frames import (
    ErrorFrame,
    Fallback,
    Frame,
    GatewayError,
    GatewayUnavailableError,
    ModelEntry,
    ReasoningDelta,
    Response,
    TextDelta,
    ToolApprovalRequest,
    ToolCall,
    ToolResult,
    TurnEvent,
    Usage,
)
from t_koma.client.menus import QuitRequested, ask_approval
from t_koma.client.prompt import ChatPrompt
from t_koma.client.render import Renderer
from t_koma.client.selection import Selector
from t_koma.client.status import (
    PROVIDER_LABELS,
    SEPARATOR,
    ConnectionState,
    StatusState,
    model_label,
    session_label,
    status_segments,
    turn_summary,
)

_DECIDED = {"approve": "approved", "deny": "denied", "always": "approved for the rest of this session"}


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """What `t-koma chat` was asked for. `aliases` maps the local config's aliases to their provider."""

    model: str | None = None
    provider: str | None = None
    session: str | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    history_file: Path | None = None
    http_url: str | None = None


class ChatApp:
    """One chat: owns the prompt, the renderer and the running turn; talks through `connection`."""

    def __init__(
        self, connection: GatewayConnection, console: Console, options: ChatOptions, token: str | None = None
    ) -> None:
        self.connection = connection
        self.console = console
        self.options = options
        self.renderer = Renderer(console)
        fetch = None
        if options.http_url is not None:
            http_url = options.http_url

            async def fetch_catalog(provider: str) -> list[ModelEntry]:
                return await v1_catalog(http_url, token, provider)

            fetch = fetch_catalog
        self.selector = Selector(connection, self.renderer, fetch)
        self.commands = SlashCommands(self)
        self.session_usage = Usage()
        self.turn_usage: Usage | None = None
        self.served: tuple[str, str] | None = None
        self.reasoning_level: str | None = None
        """`/reasoning LEVEL`: sent with every message of this chat; None = each model's configured reasoning."""
        self.notice: str | None = None
        self.quitting = False
        self.inputs_started = 0
        self.inputs_done = 0
        """Counts of input lines taken from the prompt and fully handled (for tests and scripted runs)."""
        self._interrupts = 0
        self._task: asyncio.Task[None] | None = None
        self._cancelling: asyncio.Future[None] | None = None
        self._in_turn = False
        self._prompt: ChatPrompt | None = None
        self._lost = False
        connection.on_state = self._on_state
        connection.on_notice = self._on_notice

    # --- status ----------------------------------------------------------------------------------------

    def current_model(self) -> tuple[str | None, str | None]:
        """The model that answered last, else the selection, else the gateway's default."""
        if self.served is not None:
            return self.served
        if self.connection.selection is not None:
            return self.connection.selection
        hello = self.connection.hello
        return (hello.provider, hello.model) if hello is not None else (None, None)

    def status(self) -> StatusState:
        provider, model = self.current_model()
        return StatusState(
            provider=provider,
            model=model,
            session_id=self.connection.session_id,
            turn=self.turn_usage,
            session=self.session_usage,
            connection=self.connection.state,
            busy=self._in_turn,
            notice=self.notice,
            reasoning=self.reasoning_level,
        )

    @property
    def waiting_for_input(self) -> bool:
        """True while the prompt is up and nothing else runs."""
        return self._task is None and self._prompt is not None and self._prompt.waiting

    def _toolbar(self) -> StyleAndTextTuples:
        out: StyleAndTextTuples = []
        app = get_app_or_none()
        width = app.output.get_size().columns if app is not None else None
        for index, (style, text) in enumerate(status_segments(self.status(), width)):
            if index:
                out.append(("class:status.sep", SEPARATOR))
            out.append((style, text))
        return out

    def _refresh(self) -> None:
        app = get_app_or_none()
        if app is not None and app.is_running:
            app.invalidate()

    def _tell(self, message: str, style: str = "yellow") -> None:
        """A notice: in the status bar while the prompt waits for input, else printed."""
        if self._prompt is not None and self._prompt.waiting:
            self.notice = message
            self._refresh()
        else:
            self.renderer.notice(message, style=style)

    def _on_state(self, state: ConnectionState) -> None:
        if state == "reconnecting":
            self._lost = True
            self._tell("⚠ connection to the gateway lost — reconnecting …")
        elif state == "connected" and self._lost:
            self._lost = False
            self._tell("✓ reconnected to the gateway", style="green")
        self._refresh()

    def _on_notice(self, frame: Frame) -> None:
        if isinstance(frame, ErrorFrame):
            self._tell(f"✗ {frame.type}: {frame.message}", style="bold red")

    def _hint(self, message: str) -> None:
        self.notice = message

    def select_done(self) -> None:
        """After a successful selection the status shows it (until a turn says which model answered)."""
        self.served = None

    # --- the loop --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the requested session and choose the model, before the first prompt."""
        await self.commands.join_initial(self.options.session)
        if self.options.model:
            await self.selector.fixed(self.options.model, self.options.provider, self.options.aliases)
        elif self.options.provider:
            name = self.options.provider.lower().replace("-", "_").replace("open_router", "openrouter")
            await self.selector.pick_model(name, PROVIDER_LABELS.get(name, self.options.provider))
        else:
            await self.selector.interactive()
        current, model = self.current_model()
        label = model_label(StatusState(provider=current, model=model))
        self.renderer.notice(f"{label} · {session_label(self.connection.session_id)} · /help for commands")

    async def run(self) -> None:
        with self._sigint():
            if not await self._start():
                return
            self._prompt = ChatPrompt(self._toolbar, self._hint, self.options.history_file)
            while not self.quitting:
                try:
                    line = await self._prompt.read()
                except QuitRequested:
                    break
                self.notice = None
                await self._perform(self.handle(line))

    async def _start(self) -> bool:
        """`start()` as a task that Ctrl+C can cancel; False when the user left during it. Its errors (a refused
        `--model`, an unknown `--session`) propagate: they end the chat with their exit code."""
        self._task = asyncio.ensure_future(self.start())
        try:
            await asyncio.wait({self._task})
            if self._task.cancelled():
                return False
            self._task.result()
        except QuitRequested:
            return False
        finally:
            self._task = None
        return True

    async def handle(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        if text.startswith("/"):
            await self.commands.run(text)
        else:
            await self.send(line)

    async def _perform(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one input's work as a task that Ctrl+C can cancel."""
        self._interrupts = 0
        self.inputs_started += 1
        self._task = asyncio.ensure_future(work)
        try:
            await asyncio.wait({self._task})
            if not self._task.cancelled():
                self._task.result()
        except QuitRequested:
            self.quitting = True
        except GatewayError as exc:
            self.renderer.error(ErrorFrame(exc.message, exc.type))
        finally:
            self._task = None
            self.inputs_done += 1

    # --- turns -----------------------------------------------------------------------------------------

    async def send(self, content: str) -> None:
        self._in_turn = True
        self.renderer.start_turn()
        try:
            async for event in self.connection.turn(content, self.reasoning_level):
                await self._on_event(event)
        finally:
            self._in_turn = False
            self.renderer.end_turn()

    async def _on_event(self, event: TurnEvent) -> None:
        if isinstance(event, TextDelta):
            self.renderer.text(event.text)
        elif isinstance(event, ReasoningDelta):
            self.renderer.reasoning(event.text)
        elif isinstance(event, ToolCall):
            self.renderer.tool_call(event)
            self.renderer.waiting(f"running {event.name} …")
        elif isinstance(event, ToolApprovalRequest):
            await self._approve(event)
        elif isinstance(event, ToolResult):
            self.renderer.tool_result(event)
            self.renderer.waiting("thinking …")
        elif isinstance(event, Fallback):
            self.renderer.fallback(event)
        elif isinstance(event, Response):
            self._finish(event)
        else:
            self.renderer.error(event)
            if event.type == GatewayUnavailableError.error_type:
                self.renderer.notice("  the turn goes on in the gateway; /history shows its answer once reconnected")

    def _finish(self, response: Response) -> None:
        self.renderer.end_turn()
        if response.cancelled:
            self.renderer.cancelled()
        if response.provider and response.model:
            self.served = (response.provider, response.model)
        usage = response.usage or Usage()
        self.turn_usage = usage
        self.session_usage = self.session_usage + usage
        self.renderer.usage(turn_summary(usage, self.session_usage))

    async def _approve(self, request: ToolApprovalRequest) -> None:
        self.renderer.tool_call(ToolCall(request.call_id, request.name, request.arguments))
        self.renderer.settle()
        _flush_typeahead()
        decision = await ask_approval(request.name)
        if decision == "cancel":
            await self.connection.approve(request.call_id, "deny")
            await self.cancel_turn()
            return
        await self.connection.approve(request.call_id, decision)
        self.renderer.notice(f"  {_DECIDED[decision]}", style="dim")
        if decision != "deny":
            self.renderer.waiting(f"running {request.name} …")

    async def cancel_turn(self) -> None:
        self.renderer.notice("cancelling … (Ctrl+C again to quit)", style="yellow")
        with contextlib.suppress(GatewayError):
            await self.connection.cancel()

    def interrupt(self) -> None:
        """SIGINT (Ctrl+C outside the prompt): cancel the running turn (or command); a second one quits."""
        self._interrupts += 1
        if self._interrupts == 1 and self._in_turn:
            self._cancelling = asyncio.ensure_future(self.cancel_turn())
            return
        if self._interrupts == 1 and self._task is not None:
            self._task.cancel()
            self.renderer.notice("interrupted", style="yellow")
            return
        self.quitting = True
        if self._task is not None:
            self._task.cancel()
        if self._prompt is not None:
            self._prompt.quit()

    @contextlib.contextmanager
    def _sigint(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals (Windows)
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)


def _flush_typeahead() -> None:
    """Drop keys typed while the answer streamed, so none of them answers the approval prompt by accident."""
    if not sys.stdin.isatty():
        return
    with contextlib.suppress(ImportError, OSError):
        import termios

        termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
