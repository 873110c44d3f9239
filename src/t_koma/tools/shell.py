"""`run_shell_command`: runs a command with `/bin/sh -c` in the workspace, bounded in time and output.

The command gets its own session and process group, so a timeout (or a cancelled turn) stops it together with
every process it started. Its environment is `ToolContext.env`, which has no provider keys. Output beyond
`ToolContext.output_cap_bytes` keeps its head and tail around a "[... N bytes cut ...]" marker. Nothing here
raises for a failing command: failures are `is_error` results the model can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from t_koma.tools.base import Tool, ToolContext, ToolResult

TIMEOUT_CEILING_FACTOR = 10
"""`timeout_seconds` may lower the configured timeout or raise it up to this many times the configured value."""
STOP_GRACE_SECONDS = 2.0
"""Between SIGTERM and SIGKILL when a command's process group is stopped."""
DRAIN_SECONDS = 1.0
"""How long output pipes may stay open after the shell exits (background processes still writing)."""

_READ_CHUNK = 64 * 1024
_POLL_SECONDS = 0.05


class ShellTool(Tool):
    """Runs a shell command for the model; see the module docstring for the limits it applies."""

    name = "run_shell_command"
    description = (
        "Run a shell command with /bin/sh -c in the workspace directory and get back its exit code, stdout and "
        "stderr. Use it to inspect files, run programs, tests and builds. The command runs non-interactively "
        "(stdin is empty), so never start anything that waits for input. It is stopped, together with every "
        "process it started, when it runs longer than its timeout: the configured default (120 s unless changed), "
        f"which `timeout_seconds` can lower or raise up to {TIMEOUT_CEILING_FACTOR}x. Long output keeps only its "
        "beginning and end, so filter it (grep, head, tail) when you need a specific part. A non-zero exit code "
        "is reported as an error. Background processes that keep the command's output open are stopped when it "
        "finishes; redirect their output (`cmd > log 2>&1 &`) to keep them running (until t-koma itself stops, which "
        "stops every process a command left behind)."
    )
    parameters: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "description": "The shell command line to run, e.g. `ls -la` or `python -m pytest -q tests/`.",
            },
            "timeout_seconds": {
                "type": "number",
                "description": "Optional time limit for this command, in seconds.",
            },
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            return ToolResult(
                "error: missing or invalid 'command' argument: expected a non-empty string with the shell command "
                "to run",
                is_error=True,
            )
        resolved = _resolve_timeout(arguments.get("timeout_seconds"), context.timeout_seconds)
        if isinstance(resolved, ToolResult):
            return resolved
        timeout, capped = resolved
        if not context.workspace.is_dir():
            return ToolResult(f"error: the workspace directory {context.workspace} does not exist", is_error=True)
        loop = asyncio.get_running_loop()
        cap = context.output_cap_bytes
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _CommandProtocol(cap),
                "/bin/sh",
                "-c",
                command,
                cwd=context.workspace,
                env=dict(context.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return ToolResult(f"error: could not start /bin/sh: {exc}", is_error=True)
        outcome = await _supervise(transport, protocol, timeout, cap)
        return _render(outcome, timeout, capped=capped)


@dataclass
class _Capture:
    """Keeps the first and the last `keep` bytes of a stream and counts the rest."""

    keep: int
    head: bytearray
    tail: bytearray
    total: int = 0

    @classmethod
    def new(cls, keep: int) -> _Capture:
        return cls(max(keep, 0), bytearray(), bytearray())

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.keep:
                del self.tail[: len(self.tail) - self.keep]

    def render(self, budget: int) -> str:
        """The stream's text in at most `budget` bytes (head and tail around a cut marker if it is longer)."""
        if self.total <= budget:
            return bytes(self.head + self.tail).decode("utf-8", "replace")
        tail_n = budget // 2
        head_n = budget - tail_n
        # Without a gap (total <= 2*keep) the last bytes may start inside `head`.
        source = self.tail if len(self.tail) >= tail_n else self.head + self.tail
        tail = bytes(source[len(source) - tail_n :]) if tail_n else b""
        cut = self.total - head_n - tail_n
        head = bytes(self.head[:head_n]).decode("utf-8", "replace")
        end = tail.decode("utf-8", "replace")
        before = "" if head.endswith("\n") else "\n"
        after = "" if end.startswith("\n") else "\n"
        return f"{head}{before}[... {cut} bytes cut ...]{after}{end}"


class _CommandProtocol(asyncio.SubprocessProtocol):
    """Collects a command's output and tells when the shell has exited and when its output pipes closed (they
    can outlive the shell when background processes inherit them)."""

    def __init__(self, cap: int) -> None:
        self.stdout = _Capture.new(cap)
        self.stderr = _Capture.new(cap)
        self.exited = asyncio.Event()
        self.pipes_closed = asyncio.Event()
        self._open_pipes = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.stdout if fd == 1 else self.stderr).add(chunk)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open_pipes.discard(fd)
        if not self._open_pipes:
            self.pipes_closed.set()

    def process_exited(self) -> None:
        self.exited.set()


@dataclass(frozen=True, slots=True)
class _Outcome:
    returncode: int | None
    stdout: _Capture
    stderr: _Capture
    cap: int
    timed_out: bool
    background_stopped: bool


async def _supervise(
    transport: asyncio.SubprocessTransport, protocol: _CommandProtocol, timeout: float, cap: int
) -> _Outcome:
    pgid = transport.get_pid()  # start_new_session=True makes the shell its group's leader
    timed_out = background_stopped = False
    try:
        if not await _within(protocol.exited, timeout):
            timed_out = True
            await _stop_group(pgid, protocol)
        if not await _within(protocol.pipes_closed, DRAIN_SECONDS):
            background_stopped = not timed_out
            await _stop_group(pgid, protocol)
            await _within(protocol.pipes_closed, DRAIN_SECONDS)
    finally:
        if not (protocol.exited.is_set() and protocol.pipes_closed.is_set()):
            # Cancelled, or output held open by processes that left the group: leave nothing behind the turn.
            _signal_group(pgid, signal.SIGKILL)
            # Reap the shell now: once the loop is gone nobody would, and the process would outlive us.
            await _within(protocol.exited, STOP_GRACE_SECONDS)
        transport.close()
    return _Outcome(transport.get_returncode(), protocol.stdout, protocol.stderr, cap, timed_out, background_stopped)


async def _within(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def _stop_group(pgid: int, protocol: _CommandProtocol) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left after a grace period."""
    _signal_group(pgid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE_SECONDS
    while loop.time() < deadline:
        if not protocol.exited.is_set():
            await _within(protocol.exited, _POLL_SECONDS)
        elif _group_alive(pgid):
            await asyncio.sleep(_POLL_SECONDS)
        else:
            return
    _signal_group(pgid, signal.SIGKILL)
    await protocol.exited.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process group has a member that is not a zombie (orphaned zombies may never be reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return True
    for name in entries:
        try:
            raw = Path("/proc", name, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _resolve_timeout(value: Any, default: float) -> tuple[float, bool] | ToolResult:
    """(effective timeout, whether the requested one was capped), or an error result for a bad value."""
    if value is None:
        return default, False
    number = _as_number(value)
    if number is None or number <= 0:
        return ToolResult(
            f"error: invalid 'timeout_seconds' argument {value!r}: expected a positive number of seconds",
            is_error=True,
        )
    ceiling = default * TIMEOUT_CEILING_FACTOR
    return min(number, ceiling), number > ceiling


def _budgets(cap: int, out_total: int, err_total: int) -> tuple[int, int]:
    """Split the output cap between stdout and stderr: each gets at least half, or all it needs."""
    if out_total + err_total <= cap:
        return out_total, err_total
    half = cap // 2
    if err_total <= half:
        return cap - err_total, err_total
    if out_total <= half:
        return out_total, cap - out_total
    return cap - half, half


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "exit code: unknown (the process could not be waited for)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"exit code: {returncode} (killed by {name})"
    return f"exit code: {returncode}"


def _render(outcome: _Outcome, timeout: float, *, capped: bool) -> ToolResult:
    lines: list[str] = []
    if outcome.timed_out:
        lines.append(
            f"error: the command timed out after {timeout:g} s and was stopped together with its child "
            "processes. Output so far:"
        )
    elif capped:
        lines.append(f"note: timeout_seconds was capped at {timeout:g} s")
    lines.append(_describe_exit(outcome.returncode))
    out_budget, err_budget = _budgets(outcome.cap, outcome.stdout.total, outcome.stderr.total)
    if outcome.stdout.total:
        lines += ["stdout:", outcome.stdout.render(out_budget).rstrip("\n")]
    if outcome.stderr.total:
        lines += ["stderr:", outcome.stderr.render(err_budget).rstrip("\n")]
    if not outcome.stdout.total and not outcome.stderr.total:
        lines.append("(no output)")
    if outcome.background_stopped:
        lines.append(
            "note: background processes still holding the output open after the command exited were stopped; "
            "redirect their output (cmd > log 2>&1 &) to keep them running"
        )
    is_error = outcome.timed_out or outcome.returncode != 0
    return ToolResult("\n".join(lines), is_error=is_error)
