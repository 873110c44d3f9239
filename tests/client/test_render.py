"""What the chat prints: streamed Markdown, tool blocks, folded output, one-line notices."""

from __future__ import annotations

import asyncio
import io
import json
import re

from rich.console import Console

from t_koma.client.frames import ErrorFrame, Fallback, ToolCall, ToolResult
from t_koma.client.render import MarkdownStream, Renderer, fold, thinking_view
from t_koma.client.sanitize import command_of
from tests.client.ptk import until


def console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, force_terminal=terminal, color_system=None), out


async def test_text_that_arrives_in_a_burst_is_shown_when_the_burst_ends() -> None:
    screen, out = console(terminal=True)
    stream = MarkdownStream(screen)
    for piece in ("I am", " thinking", " about it"):
        stream.append(piece)  # within the refresh interval: only the first is drawn at once
    await until(lambda: "I am thinking about it" in out.getvalue(), timeout=2)
    stream.finish()


async def test_a_long_answer_scrolls_up_as_it_streams_and_every_line_is_printed_once() -> None:
    screen, out = console()
    stream = MarkdownStream(screen)
    stream.append("\n\n".join(f"line {i}" for i in range(30)))
    await until(lambda: "line 20" in out.getvalue(), timeout=2)  # settled lines are printed for good
    assert "line 29" not in out.getvalue()  # the last few stay live until the end
    stream.finish()
    printed = [line.strip() for line in out.getvalue().splitlines() if line.strip()]
    assert printed == [f"line {i}" for i in range(30)]


def test_shell_commands_are_shown_as_commands_other_tools_as_json() -> None:
    assert command_of("run_shell_command", '{"command": "ls -la"}') == "ls -la"
    assert command_of("search", '{"q": "x"}') == '{"q": "x"}'
    assert command_of("run_shell_command", "not json") == "not json"


def test_fold_keeps_the_first_lines_and_counts_the_rest() -> None:
    assert fold("a\nb\nc\n", 2) == ("a\nb", 1)
    assert fold("a", 2) == ("a", 0)


def test_tool_blocks_output_and_one_liners() -> None:
    screen, out = console()
    renderer = Renderer(screen)
    renderer.start_turn()
    renderer.tool_call(ToolCall("c1", "run_shell_command", '{"command": "seq 1 9"}'))
    renderer.tool_result(ToolResult("c1", "\n".join(str(i) for i in range(1, 10)), False))
    renderer.tool_result(ToolResult("c2", "boom", True))
    renderer.fallback(Fallback("sonnet", "kimi", "rate_limited: slow down"))
    renderer.error(ErrorFrame("all models failed", "all_models_exhausted"))
    renderer.end_turn()
    text = out.getvalue()
    assert "⚙ run_shell_command" in text and "$ seq 1 9" in text
    assert "│ 6" in text and "│ 7" not in text and "… 3 more lines (/output 1 shows all)" in text
    assert "✗ failed" in text and "│ boom" in text
    assert "↪ sonnet failed (rate_limited: slow down); falling back to kimi" in text
    assert "✗ all_models_exhausted: all models failed" in text
    before = len(out.getvalue())
    renderer.full_output(1)
    shown = out.getvalue()[before:]
    assert "run_shell_command: seq 1 9" in shown and "│ 1" in shown and "│ 9" in shown


THOUGHTS = "\n".join(f"thought {i}" for i in range(1, 9))
HOSTILE = "evil\x1b[2J\x1b]0;pwned\x07 plan\x9b31m done\x1b]52;c;ZXZpbA==\x07"
FOLDED = "✻ thinking\n  │ thought 1\n  │ thought 2\n  │ thought 3\n  │ … 5 more lines — /thinking to expand\n"


def pieces(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_reasoning_is_a_folded_block_above_the_answer_and_thinking_shows_it_all() -> None:
    screen, out = console()
    renderer = Renderer(screen)
    renderer.start_turn()
    for piece in pieces(THOUGHTS):
        renderer.reasoning(piece)
    renderer.text("The answer.")
    renderer.end_turn()
    assert [line.rstrip() for line in out.getvalue().splitlines(keepends=True)] == [
        *FOLDED.splitlines(),
        "The answer.",
    ]
    assert renderer.thoughts == THOUGHTS
    renderer.full_thinking()
    assert out.getvalue().endswith("✻ thinking\n" + THOUGHTS + "\n")


async def test_on_a_terminal_the_block_streams_live_and_never_shows_more_than_its_first_lines() -> None:
    screen, out = console(terminal=True)
    renderer = Renderer(screen)
    renderer.start_turn()
    for piece in pieces(THOUGHTS, 3):
        renderer.reasoning(piece)
        await asyncio.sleep(0)
    await until(lambda: "… 5 more lines" in out.getvalue(), timeout=2)  # drawn before the reasoning ends
    renderer.text("The answer.")
    renderer.end_turn()
    printed = out.getvalue()
    assert "thought 4" not in printed
    assert re.search(r"/thinking to expand\n(\x1b\[[0-9;?]*[A-Za-z])*The answer\.", printed)  # the block stays


def test_blank_lines_do_not_count_and_long_lines_take_one_row() -> None:
    screen, out = console()
    screen.print(thinking_view("**Plan**\n\n" + "word " * 40 + "\n\nlast", hint=None))
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["✻ thinking", "  │ **Plan**"]
    assert len(lines) == 4 and lines[2].endswith("…") and len(lines[2]) <= 80 and lines[3] == "  │ last"


async def test_a_fallback_drops_the_thinking_of_the_failed_attempt() -> None:
    screen, out = console()
    renderer = Renderer(screen)
    renderer.start_turn()
    renderer.reasoning("step one")
    renderer.tool_call(ToolCall("c1", "run_shell_command", '{"command": "ls"}'))
    renderer.tool_result(ToolResult("c1", "a.txt", False))  # the step ended: its thinking stays
    renderer.reasoning("a doomed attempt")
    renderer.fallback(Fallback("sonnet", "kimi", "rate_limited"))
    renderer.reasoning("the second try")
    renderer.end_turn()
    assert "doomed" not in out.getvalue()
    assert renderer.thoughts == "step one\n\nthe second try"


async def test_on_a_terminal_a_fallback_erases_the_live_thinking_block() -> None:
    screen, out = console(terminal=True)
    renderer = Renderer(screen)
    renderer.start_turn()
    renderer.reasoning("a doomed attempt")
    await until(lambda: "doomed" in out.getvalue(), timeout=2)
    renderer.fallback(Fallback("sonnet", "kimi", "rate_limited"))
    after = out.getvalue().rsplit("doomed", 1)[1]
    assert "\x1b[2K" in after.split("↪")[0]  # the live lines are erased before the fallback line
    assert renderer.thoughts == ""


async def test_model_and_tool_output_reach_the_terminal_with_their_escapes_visible_and_inert() -> None:
    screen, out = console(terminal=True)
    renderer = Renderer(screen)
    renderer.start_turn()
    for piece in pieces(HOSTILE, 3):  # sequences split across deltas, as a stream may cut them
        renderer.reasoning(piece)
    renderer.text(HOSTILE)
    renderer.tool_call(ToolCall("c1", "run_shell_command", '{"command": "printf \\"\\u001b[2J\\""}'))
    renderer.tool_result(ToolResult("c1", HOSTILE, False))
    renderer.end_turn()
    renderer.full_thinking()
    renderer.full_output(1)
    printed = out.getvalue()
    for sequence in ("\x1b[2J", "\x1b]", "\x9b", "\x07"):
        assert sequence not in printed
    assert "evil␛[2J␛]0;pwned␇ plan\\x9b31m done␛]52;c;ZXZpbA==␇" in printed
    assert 'printf "␛[2J"' in printed


SPOOF = "touch X #\x1b[2K\x1b[1G│ $ ls -la"


def shown_call(command: str, width: int = 80) -> str:
    screen = Console(file=io.StringIO(), width=width, color_system=None)
    renderer = Renderer(screen)
    renderer.tool_call(ToolCall("c1", "run_shell_command", json.dumps({"command": command})))
    return screen.file.getvalue()  # type: ignore[attr-defined]


def test_a_command_that_erases_its_own_line_is_shown_whole_with_a_warning() -> None:
    shown = shown_call(SPOOF)
    assert "$ touch X #␛[2K␛[1G│ $ ls -la" in shown
    assert "\x1b" not in shown
    assert "⚠ this command contains control characters (shown as ␛" in shown


def test_a_clean_one_line_command_has_no_warning() -> None:
    assert "⚠" not in shown_call("ls -la") and "↑" not in shown_call("ls -la")


def test_a_long_command_is_shown_whole() -> None:
    command = "echo " + "x" * 495 + " END"
    shown = shown_call(command)
    unboxed = "".join(line.strip().strip("│").strip() for line in shown.splitlines())
    assert command.replace(" ", "") in unboxed.replace(" ", "")


def test_every_line_of_a_multi_line_command_is_shown_and_counted() -> None:
    command = "ls -la" + "\n" * 30 + "rm -rf ~/important"
    shown = shown_call(command)
    assert "$ ls -la" in shown and "rm -rf ~/important" in shown
    assert "↑ 31 lines: all of them run" in shown


def test_markup_in_a_tool_name_or_command_is_shown_as_written() -> None:
    screen, out = console()
    renderer = Renderer(screen)
    renderer.tool_call(ToolCall("c1", "[bold]x[/bold]", json.dumps({"q": "[/red]"})))
    renderer.tool_result(ToolResult("c1", "ok", False))
    renderer.full_output(1)
    assert "⚙ [bold]x[/bold]" in out.getvalue() and '[bold]x[/bold]: {"q": "[/red]"}' in out.getvalue()
