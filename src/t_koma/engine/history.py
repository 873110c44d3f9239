"""Turning stored messages into a history every provider accepts, and the turn's system prompt.

Stored sessions can hold shapes that upstreams reject: a tool call whose results were never written (a
process killed mid-step, a turn that hit `max_steps` in an older version), two user messages in a row (a turn
that failed before the model answered), empty or whitespace-only text blocks. `repair_history` fixes them
without losing anything the model should see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from t_koma.messages import ContentBlock, Message, SystemBlock, TextBlock, ToolResultBlock, ToolUseBlock

DEFAULT_SYSTEM_PROMPT = (
    "You are t-koma, a capable assistant that works from the user's terminal. "
    "Answer clearly and concisely; prefer facts you have checked over guesses."
)

SHELL_PROMPT = (
    "You can run shell commands with the run_shell_command tool. Each command runs with `sh -c` in a fresh "
    "process in the workspace directory {workspace} (no state is kept between calls), is killed after "
    "{timeout:g} seconds unless you pass a shorter or longer timeout_seconds, and its output is capped. Use it "
    "when the answer depends on files, the system or a computation. The user may have to approve each command, "
    "and a denied or failed command comes back to you as an error result."
)

MISSING_RESULT = "Not run: the turn ended before this call was executed."


def clean_content(content: Iterable[ContentBlock]) -> tuple[ContentBlock, ...]:
    """Drop empty and whitespace-only text blocks (upstreams reject them)."""
    return tuple(block for block in content if not (isinstance(block, TextBlock) and not block.text.strip()))


def repair_history(messages: Sequence[Message]) -> list[Message]:
    """Every tool call answered by the next message, no orphan results, no empty messages, roles alternating."""
    repaired: list[Message] = []
    open_calls: tuple[ToolUseBlock, ...] = ()
    for message in messages:
        content = clean_content(message.content)
        if message.role == "assistant":
            if open_calls:
                _append(repaired, Message("user", _answer(open_calls, ())))
            open_calls = tuple(block for block in content if isinstance(block, ToolUseBlock))
            _append(repaired, Message("assistant", content))
            continue
        results = tuple(block for block in content if isinstance(block, ToolResultBlock))
        rest = tuple(block for block in content if not isinstance(block, ToolResultBlock))
        _append(repaired, Message("user", _answer(open_calls, results) + rest))
        open_calls = ()
    if open_calls:
        _append(repaired, Message("user", _answer(open_calls, ())))
    return repaired


def _answer(calls: Sequence[ToolUseBlock], results: Sequence[ToolResultBlock]) -> tuple[ContentBlock, ...]:
    """One result per call, in call order; results that answer no call are dropped."""
    by_id = {result.tool_use_id: result for result in results}
    return tuple(by_id.get(call.id) or ToolResultBlock(call.id, MISSING_RESULT, is_error=True) for call in calls)


def _append(messages: list[Message], message: Message) -> None:
    if not message.content:
        return
    if messages and messages[-1].role == message.role:
        messages[-1] = Message(message.role, messages[-1].content + message.content)
        return
    messages.append(message)


def system_prompt(
    base: str | None, *, tool_names: Sequence[str], workspace: Path, timeout_seconds: float
) -> tuple[SystemBlock, ...]:
    """The base prompt (the request's, the config's or the default) plus what the model must know about its
    tools. One block, so that providers put a single cache breakpoint on it."""
    parts = [base.strip() if base and base.strip() else DEFAULT_SYSTEM_PROMPT]
    if "run_shell_command" in tool_names:
        parts.append(SHELL_PROMPT.format(workspace=workspace, timeout=timeout_seconds))
    return (SystemBlock("\n\n".join(parts)),)
