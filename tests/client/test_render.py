"""What the chat prints: streamed Markdown, tool blocks, folded output, one-line notices."""

from __future__ import annotations

import io

from rich.console import Console

from t_koma.client.frames import ErrorFrame, Fallback, ToolCall, ToolResult
from t_koma.client.render import MarkdownStream, Renderer, command_of, fold
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
