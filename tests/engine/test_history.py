"""Stored sessions become histories every upstream accepts (pure functions, no I/O)."""

from __future__ import annotations

from pathlib import Path

from t_koma.engine.engine import session_title
from t_koma.engine.history import DEFAULT_SYSTEM_PROMPT, MISSING_RESULT, repair_history, system_prompt
from t_koma.messages import Message, TextBlock, ToolResultBlock, ToolUseBlock


def call(call_id: str) -> ToolUseBlock:
    return ToolUseBlock(call_id, "run_shell_command", {"command": "ls"})


def test_a_well_formed_history_is_unchanged() -> None:
    history = [
        Message.user("list files"),
        Message("assistant", (TextBlock("Sure."), call("c1"))),
        Message("user", (ToolResultBlock("c1", "a.txt"),)),
        Message("assistant", (TextBlock("There is a.txt."),)),
    ]

    assert repair_history(history) == history


def test_a_call_without_results_gets_an_error_result_before_the_next_message() -> None:
    history = [
        Message.user("list files"),
        Message("assistant", (call("c1"), call("c2"))),
        Message("assistant", (TextBlock("[turn interrupted]"),)),
        Message.user("try again"),
    ]

    repaired = repair_history(history)

    assert [m.role for m in repaired] == ["user", "assistant", "user", "assistant", "user"]
    assert repaired[2].content == (
        ToolResultBlock("c1", MISSING_RESULT, is_error=True),
        ToolResultBlock("c2", MISSING_RESULT, is_error=True),
    )


def test_partial_results_are_completed_in_call_order_and_orphans_dropped() -> None:
    history = [
        Message.user("go"),
        Message("assistant", (call("c1"), call("c2"))),
        Message("user", (ToolResultBlock("c2", "two"), ToolResultBlock("stray", "?"))),
    ]

    repaired = repair_history(history)

    assert repaired[2].content == (ToolResultBlock("c1", MISSING_RESULT, is_error=True), ToolResultBlock("c2", "two"))


def test_consecutive_user_messages_are_merged_and_empty_text_dropped() -> None:
    history = [
        Message.user("first question (its turn failed)"),
        Message("assistant", (TextBlock("  \n"),)),
        Message.user("second question"),
    ]

    repaired = repair_history(history)

    assert repaired == [
        Message("user", (TextBlock("first question (its turn failed)"), TextBlock("second question"))),
    ]


def test_an_unanswered_call_at_the_end_is_closed_before_the_new_user_message() -> None:
    repaired = repair_history([Message.user("go"), Message("assistant", (call("c1"),)), Message.user("next")])

    assert repaired[-1].content == (ToolResultBlock("c1", MISSING_RESULT, is_error=True), TextBlock("next"))


def test_system_prompt_mentions_the_shell_tool_and_workspace_only_when_offered() -> None:
    with_tools = system_prompt(None, tool_names=["run_shell_command"], workspace=Path("/w/s"), timeout_seconds=120)
    without = system_prompt("Be terse.", tool_names=[], workspace=Path("/w/s"), timeout_seconds=120)

    assert len(with_tools) == 1
    assert with_tools[0].text.startswith(DEFAULT_SYSTEM_PROMPT)
    assert "run_shell_command" in with_tools[0].text and "/w/s" in with_tools[0].text
    assert without[0].text == "Be terse."


def test_session_titles_are_short_single_lines() -> None:
    assert session_title("  What is\nin here?  ") == "What is in here?"
    long = session_title("word " * 40)
    assert len(long) <= 61 and long.endswith("…")
