"""How `t-koma ask` shows a turn: the answer streams to stdout; tool calls, results, fallbacks and approval
prompts go to stderr, one short line each, so that stdout stays the model's text. With `--show-reasoning` the
model's reasoning streams to stderr too, dimmed on a terminal.

Model output is hostile: whatever reaches a terminal (the answer when stdout is one, reasoning and notes always)
goes through `terminal_safe` first, so that it cannot move the cursor, retitle the window or worse. A piped answer
is left byte for byte as the model wrote it."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TextIO

from t_koma.client.sanitize import ESCAPED_WARNING, command_of, needs_escaping, terminal_safe
from t_koma.engine.events import (
    ApprovalDecision,
    EngineEvent,
    FallbackEvent,
    ReasoningDeltaEvent,
    StepUsage,
    TextDeltaEvent,
    ToolCallRequest,
    ToolCallStarted,
    ToolResultEvent,
    TurnResult,
)

SUMMARY_CHARS = 160
RESULT_LINES = 3
DIM = "\x1b[2m"
RESET = "\x1b[0m"


class AskRenderer:
    """The engine's event sink for `ask`. With `quiet` (`--json`) nothing is written; reasoning is written only
    with `show_reasoning`."""

    def __init__(
        self,
        *,
        quiet: bool,
        show_reasoning: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.quiet = quiet
        self.show_reasoning = show_reasoning
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._out_tty = is_terminal(self.out)
        self._err_tty = is_terminal(self.err)
        self._line_open = False
        self._thinking_open = False
        self._step_has_text = False

    async def __call__(self, event: EngineEvent) -> None:
        if self.quiet:
            return
        if isinstance(event, TextDeltaEvent):
            self._text(event.text)
        elif isinstance(event, ReasoningDeltaEvent):
            self._reasoning(event.text)
        elif isinstance(event, ToolCallStarted):
            self.note(f"[tool] {event.name}: {call_summary(event.name, event.arguments)}")
        elif isinstance(event, ToolResultEvent):
            self.note(result_summary(event.content, event.is_error))
        elif isinstance(event, FallbackEvent):
            self._fallback(event)
        elif isinstance(event, StepUsage):
            self._step_has_text = False

    def _text(self, text: str) -> None:
        if self._out_tty:
            text = terminal_safe(text)
        if not text:
            return
        self._end_thinking()
        self._write_out(text)
        self._line_open = not text.endswith("\n")
        self._step_has_text = True

    def _reasoning(self, text: str) -> None:
        """A piece of reasoning on stderr: neutralised, dimmed on a terminal, never mixed into the answer's line."""
        text = terminal_safe(text) if self.show_reasoning else ""
        if not text:
            return
        self.end_line()
        self.err.write(f"{DIM}{text}{RESET}" if self._err_tty else text)
        self.err.flush()
        self._thinking_open = not text.endswith("\n")

    def _end_thinking(self) -> None:
        """Close a half-written line of reasoning before anything else is written."""
        if self._thinking_open:
            self.err.write("\n")
            self.err.flush()
            self._thinking_open = False

    def _write_out(self, text: str) -> None:
        """stdout may be a pipe whose reader left (`| head -1`): the turn goes on (it is stored), unprinted."""
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())  # so that the interpreter's final flush does not fail either
            os.close(devnull)

    def _fallback(self, event: FallbackEvent) -> None:
        action = f"retrying {event.to_model}" if event.to_model == event.from_model else f"trying {event.to_model}"
        discard = "; discard the partial answer above" if self._step_has_text else ""
        self.note(f"t-koma: {event.from_model} failed ({event.error}); {action}{discard}")
        self._step_has_text = False

    def end_line(self) -> None:
        """Close a half-written line of the answer before writing to stderr (they share the terminal)."""
        if self._line_open:
            self._write_out("\n")
            self._line_open = False

    def end_lines(self) -> None:
        """Close whatever line is half-written, the answer's or the reasoning's."""
        self.end_line()
        self._end_thinking()

    def note(self, line: str) -> None:
        self.end_lines()
        self.err.write(terminal_safe(line) + "\n")
        self.err.flush()

    def finish(self, result: TurnResult) -> None:
        if self.quiet:
            return
        self.end_lines()
        if result.stop_reason == "max_steps":
            unrun = sum(1 for call in result.tool_calls if call.result is None)
            self.note(
                f"t-koma: stopped after {result.steps} model calls (the step limit); {unrun} tool call(s) not run. "
                "Continue with --session last, or allow more with --max-steps N."
            )


class TerminalApproval:
    """Asks on the terminal before each tool call: y(es) / n(o) / a(lways). End of input means no."""

    def __init__(self, renderer: AskRenderer, stdin: TextIO | None = None) -> None:
        self.renderer = renderer
        self.stdin = stdin or sys.stdin

    async def __call__(self, call: ToolCallRequest) -> ApprovalDecision:
        self.renderer.end_lines()
        err = self.renderer.err
        question = approval_question(call.name, call.arguments)
        while True:
            err.write(question)
            err.flush()
            line = await read_line(self.stdin)
            answer = line.strip().lower()
            if not line or answer in ("n", "no", ""):
                return "deny"
            if answer in ("y", "yes"):
                return "approve"
            if answer in ("a", "always"):
                return "always"


async def read_line(stream: TextIO) -> str:
    """One line from a terminal without blocking the event loop (so Ctrl+C still cancels the turn)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = stream.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return stream.readline()


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False


def call_summary(name: str, arguments: str) -> str:
    """The whole command of a shell call, else the arguments: every line, never shortened (made terminal-safe when
    written, like every note)."""
    return command_of(name, arguments)


def approval_question(name: str, arguments: str) -> str:
    """The approval prompt: the whole command, control characters visible; a multi-line command on lines of its
    own with their count, and a warning line when control characters were escaped."""
    raw = call_summary(name, arguments)
    command = terminal_safe(raw)
    lines = command.splitlines() or [""]
    warning = f"{ESCAPED_WARNING}\n" if needs_escaping(raw) else ""
    choices = "? [y]es / [n]o / [a]lways: "
    if len(lines) == 1:
        return f"{warning}Run {terminal_safe(name)}: {command}{choices}"
    body = "".join(f"  | {line}\n" for line in lines)
    return f"Run {terminal_safe(name)} ({len(lines)} lines, all of them run):\n{body}{warning}Run it{choices}"


def result_summary(content: str, is_error: bool) -> str:
    lines = [line for line in content.splitlines() if line.strip()]
    head = [f"    {shorten(line)}" for line in lines[:RESULT_LINES]]
    more = len(lines) - RESULT_LINES
    if more > 0:
        head.append(f"    ... ({more} more lines)")
    label = "[error]" if is_error else "[ok]"
    return "\n".join([f"  {label}", *head]) if head else f"  {label} (no output)"


def shorten(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."
