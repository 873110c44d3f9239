"""How `t-koma ask` shows a turn: the answer streams to stdout; tool calls, results, fallbacks and approval
prompts go to stderr, one short line each, so that stdout stays the model's text."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TextIO

from t_koma.engine.events import (
    ApprovalDecision,
    EngineEvent,
    FallbackEvent,
    StepUsage,
    TextDeltaEvent,
    ToolCallRequest,
    ToolCallStarted,
    ToolResultEvent,
    TurnResult,
)

SUMMARY_CHARS = 160
RESULT_LINES = 3


class AskRenderer:
    """The engine's event sink for `ask`. With `quiet` (`--json`) nothing is written."""

    def __init__(self, *, quiet: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.quiet = quiet
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._line_open = False
        self._step_has_text = False

    async def __call__(self, event: EngineEvent) -> None:
        if self.quiet:
            return
        if isinstance(event, TextDeltaEvent):
            self._text(event.text)
        elif isinstance(event, ToolCallStarted):
            self.note(f"[tool] {event.name}: {call_summary(event.name, event.arguments)}")
        elif isinstance(event, ToolResultEvent):
            self.note(result_summary(event.content, event.is_error))
        elif isinstance(event, FallbackEvent):
            self._fallback(event)
        elif isinstance(event, StepUsage):
            self._step_has_text = False

    def _text(self, text: str) -> None:
        if not text:
            return
        self._write_out(text)
        self._line_open = not text.endswith("\n")
        self._step_has_text = True

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

    def note(self, line: str) -> None:
        self.end_line()
        self.err.write(line + "\n")
        self.err.flush()

    def finish(self, result: TurnResult) -> None:
        if self.quiet:
            return
        self.end_line()
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
        self.renderer.end_line()
        err = self.renderer.err
        question = f"Run {call.name}: {call_summary(call.name, call.arguments)}? [y]es / [n]o / [a]lways: "
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


def call_summary(name: str, arguments: str) -> str:
    """The command of a shell call, else the arguments; one line, shortened."""
    shown = arguments
    if name == "run_shell_command":
        try:
            decoded = json.loads(arguments)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and isinstance(decoded.get("command"), str):
            shown = decoded["command"]
    return shorten(" ".join(shown.split()))


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
