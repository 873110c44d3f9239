"""Everything the chat prints, with rich: the model's folded thinking, the streaming Markdown answer, tool call
blocks, folded tool output, and one-line notices for fallbacks, errors and usage.

The answer streams through `rich.live`, as aider does: the Markdown is re-rendered as text arrives, lines that
can no longer change scroll up into the terminal's scrollback, and only the last few stay live. So long answers
never redraw more than a handful of lines, and the finished answer is ordinary scrollback text. Reasoning streams
into a dim block that only ever shows its first lines (`/thinking` prints it all). Everything the model or a tool
wrote passes `terminal_safe` before it is drawn.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.spinner import Spinner
from rich.syntax import Syntax
from rich.text import Text

from t_koma.client.frames import ErrorFrame, Fallback, ToolCall, ToolResult
from t_koma.client.sanitize import ESCAPED_WARNING, command_of, needs_escaping, terminal_safe

LIVE_LINES = 6
"""Lines of a streaming answer kept live (re-rendered); everything above them is printed for good."""
REFRESH_SECONDS = 0.05
FOLDED_LINES = 6
THINKING_LINES = 3
"""Lines of reasoning shown in a thinking block; `/thinking` prints the rest."""
THINKING_HINT = "/thinking to expand"


class _Streamed:
    """Text that streams in and is redrawn at most every REFRESH_SECONDS, and once more after a burst ends."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.text = ""
        self._rendered_at = 0.0
        self._scheduled: asyncio.TimerHandle | None = None

    def append(self, delta: str) -> None:
        self.text += delta
        if self._scheduled is not None:
            return
        wait = self._rendered_at + REFRESH_SECONDS - time.monotonic()
        if wait <= 0:
            self._refresh()
        else:
            self._scheduled = asyncio.get_running_loop().call_later(wait, self._refresh)

    def _refresh(self) -> None:
        self._scheduled = None
        self._draw()
        self._rendered_at = time.monotonic()

    def _stop_refreshing(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def _draw(self) -> None:
        raise NotImplementedError


class MarkdownStream(_Streamed):
    """One streaming Markdown answer. `append(delta)` as text arrives; `finish()` at the end."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._printed = 0
        self._live: Live | None = None

    def _draw(self) -> None:
        self._render(final=False)

    def finish(self) -> None:
        self._stop_refreshing()
        if self.text or self._live is not None:
            self._render(final=True)

    def _lines(self) -> list[str]:
        sink = io.StringIO()
        console = Console(
            file=sink,
            width=self.console.width,
            force_terminal=self.console.is_terminal,
            color_system=self.console.color_system,  # type: ignore[arg-type]  # same names as accepted
            no_color=self.console.no_color,
        )
        console.print(Markdown(terminal_safe(self.text)))
        return sink.getvalue().splitlines(keepends=True)

    def _render(self, *, final: bool) -> None:
        if self._live is None:
            self._live = Live(Text(""), console=self.console, auto_refresh=False, vertical_overflow="visible")
            self._live.start()
        lines = self._lines()
        if final:
            # The live area keeps its last rendering when stopped: make that the rest of the answer.
            self._live.update(_text(lines[self._printed :]), refresh=True)
            self._live.stop()
            self._live = None
            return
        stable = max(len(lines) - LIVE_LINES, 0)
        self._live.update(_text(lines[stable:]), refresh=stable <= self._printed)
        if stable > self._printed:
            self._live.console.print(_text(lines[self._printed : stable]))  # above the live area, for good
            self._printed = stable


def _text(lines: list[str]) -> Text:
    return Text.from_ansi("".join(lines).rstrip("\n"))


def thinking_view(reasoning: str, hint: str | None = THINKING_HINT, *, lines: int = THINKING_LINES) -> Group:
    """A folded thinking block: a title, the first `lines` non-blank lines of `reasoning` (each cut to one row),
    and how many more there are (with `hint` on how to see them)."""
    shown, hidden = fold("\n".join(line for line in terminal_safe(reasoning).splitlines() if line.strip()), lines)
    rows = [_row("✻ thinking", "dim italic"), *(_row(f"  │ {line}", "dim") for line in shown.splitlines())]
    if hidden:
        more = f"… {hidden} more line{'s' if hidden != 1 else ''}"
        rows.append(_row(f"  │ {more} — {hint}" if hint else f"  │ {more}", "dim italic"))
    return Group(*rows)


def _row(text: str, style: str) -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


class ThinkingBlock(_Streamed):
    """One stretch of streamed reasoning, folded. On a terminal it is drawn live (transient) while it grows;
    `close()` prints the folded block for good, `discard()` leaves nothing (a failed attempt's thinking)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._live: Live | None = None
        if console.is_terminal:
            self._live = Live(Text(""), console=console, auto_refresh=False, transient=True)
            self._live.start()

    def _draw(self) -> None:
        if self._live is not None:
            self._live.update(thinking_view(self.text), refresh=True)

    def _stop(self) -> None:
        self._stop_refreshing()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def close(self) -> None:
        self._stop()
        if self.text.strip():
            self.console.print(thinking_view(self.text))

    def discard(self) -> None:
        self._stop()


@dataclass(frozen=True, slots=True)
class ToolOutput:
    name: str
    command: str
    content: str
    is_error: bool


def fold(content: str, lines: int = FOLDED_LINES) -> tuple[str, int]:
    """The first `lines` lines of `content` and how many more there are."""
    all_lines = content.rstrip("\n").splitlines()
    return "\n".join(all_lines[:lines]), max(len(all_lines) - lines, 0)


def tool_call_view(name: str, arguments: str) -> RenderableType:
    """A tool call as a panel holding its whole command, every line of it, control characters made visible;
    under it, a line counting the lines of a multi-line command and a warning when control characters were there."""
    raw = command_of(name, arguments)
    command = terminal_safe(raw)
    body: RenderableType = (
        Syntax(f"$ {command}", "bash", word_wrap=True, background_color="default")
        if name == "run_shell_command"
        else Text(command)
    )
    title = Text(terminal_safe(f"⚙ {name}"))
    parts: list[RenderableType] = [Panel(body, title=title, title_align="left", border_style="cyan", expand=False)]
    lines = len(command.splitlines())
    if lines > 1:
        parts.append(Text(f"↑ {lines} lines: all of them run", style="yellow"))
    if needs_escaping(raw):
        parts.append(Text(ESCAPED_WARNING, style="bold yellow"))
    return Group(*parts)


class Renderer:
    """Prints a turn's events and the chat's notices to a rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._answer: MarkdownStream | None = None
        self._thinking: ThinkingBlock | None = None
        self._spinner: Live | None = None
        self._calls: dict[str, ToolCall] = {}
        self.outputs: list[ToolOutput] = []
        """The tool outputs of the last turn, in full (`/output` shows them)."""
        self._thoughts: list[str] = []
        """The last turn's reasoning, one entry per thinking block, up to the current step."""
        self._step_thoughts: list[str] = []
        """The current step's (since the last tool result): a fallback drops them with the step's text."""

    @property
    def thoughts(self) -> str:
        """The last turn's reasoning in full (`/thinking` shows it); "" when the model showed none."""
        return "\n\n".join(thought for thought in (*self._thoughts, *self._step_thoughts) if thought.strip())

    # --- turn lifecycle --------------------------------------------------------------------------------

    def start_turn(self) -> None:
        self._calls.clear()
        self.outputs = []
        self._thoughts, self._step_thoughts = [], []
        self.waiting("thinking …")

    def waiting(self, label: str) -> None:
        """A transient spinner until the next output."""
        self.settle()
        if self.console.is_terminal:
            self._spinner = Live(Spinner("dots", text=Text(label, style="dim")), console=self.console, transient=True)
            self._spinner.start()

    def settle(self) -> None:
        """Stop whatever is live (spinner, thinking block, streaming answer) before printing something else."""
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        if self._thinking is not None:
            self._thinking.close()
            self._thinking = None
        if self._answer is not None:
            self._answer.finish()
            self._answer = None

    def text(self, delta: str) -> None:
        if self._answer is None:
            self.settle()
            self._answer = MarkdownStream(self.console)
        self._answer.append(delta)

    def reasoning(self, delta: str) -> None:
        """A piece of the model's reasoning: into the current thinking block (a new one after other output)."""
        if self._thinking is None:
            self.settle()
            self._thinking = ThinkingBlock(self.console)
            self._step_thoughts.append("")
        self._thinking.append(delta)
        self._step_thoughts[-1] += delta

    def end_turn(self) -> None:
        self.settle()

    # --- blocks and one-liners -------------------------------------------------------------------------

    def tool_call(self, call: ToolCall) -> None:
        if call.call_id in self._calls:
            return
        self.settle()
        self._calls[call.call_id] = call
        self.console.print(tool_call_view(call.name, call.arguments))

    def tool_result(self, result: ToolResult) -> None:
        self.settle()
        self._thoughts += self._step_thoughts  # the step is over: a later fallback no longer drops them
        self._step_thoughts = []
        call = self._calls.get(result.call_id)
        name = call.name if call else "tool"
        self.outputs.append(
            ToolOutput(name, command_of(name, call.arguments) if call else "", result.content, result.is_error)
        )
        shown, hidden = fold(terminal_safe(result.content))
        style = "red" if result.is_error else "dim"
        label = "✗ failed" if result.is_error else "✓ output"
        self.console.print(Text(f"  {label}", style=style))
        if shown:
            self.console.print(Text("\n".join(f"  │ {line}" for line in shown.splitlines()), style=style))
        if hidden:
            number = len(self.outputs)
            self.console.print(Text(f"  │ … {hidden} more lines (/output {number} shows all)", style="dim italic"))

    def fallback(self, event: Fallback) -> None:
        """The attempt failed: its thinking goes (a live block is erased, and `/thinking` forgets it)."""
        if self._thinking is not None:
            self._thinking.discard()
            self._thinking = None
        self._step_thoughts = []
        self.settle()
        line = f"↪ {event.from_model} failed ({event.error}); falling back to {event.to_model}"
        self.console.print(Text(terminal_safe(line), style="yellow"))

    def error(self, error: ErrorFrame) -> None:
        self.settle()
        self.console.print(Text(terminal_safe(f"✗ {error.type}: {error.message}"), style="bold red"))

    def notice(self, message: str, style: str = "dim") -> None:
        """A one-line notice; it may quote a session title or a gateway message, so it is made terminal-safe."""
        self.settle()
        self.console.print(Text(terminal_safe(message), style=style))

    def cancelled(self) -> None:
        self.settle()
        self.console.print(Text("⏹ cancelled — the partial answer is kept", style="yellow"))

    def usage(self, summary: str) -> None:
        self.settle()
        self.console.print(Text(summary, style="dim"))

    def full_output(self, number: int | None) -> None:
        """`/output [N]`: the last turn's tool outputs in full (all, or the Nth)."""
        chosen = self.outputs if number is None else self.outputs[number - 1 : number]
        if not chosen:
            self.notice("no tool output in the last turn" if number is None else f"no tool output #{number}")
            return
        for output in chosen:
            title = terminal_safe(f"{output.name}: {output.command}" if output.command else output.name)
            style = "red" if output.is_error else "default"
            body = Text(terminal_safe(output.content), style=style)
            self.console.print(Panel(body, title=Text(title), title_align="left", expand=False))

    def full_thinking(self) -> None:
        """`/thinking`: the last turn's reasoning in full, dimmed."""
        if not self.thoughts:
            self.notice("no reasoning in the last turn")
            return
        self.console.print(Text("✻ thinking", style="dim italic"))
        self.console.print(Text(terminal_safe(self.thoughts), style="dim"))
