"""The chat end to end against the fake gateway over a real WebSocket: keys through prompt_toolkit's pipe input,
answers printed by rich to a buffer."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from prompt_toolkit.input import PipeInput
from rich.console import Console

from t_koma.client.app import ChatApp, ChatOptions
from t_koma.client.commands import resolve_session
from t_koma.client.connection import GatewayConnection
from t_koma.client.frames import GatewayError, SessionEntry, Usage
from t_koma.client.status import status_text
from tests.client.fake_gateway import DOOMED_THOUGHT, THOUGHTS, TOKEN, TOOL_COMMANDS, FakeGateway
from tests.client.ptk import CTRL_C, ENTER, ESC, Screen, terminal, until
from tests.fakes.server import serve


@pytest.fixture
def gateway() -> Iterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    with serve(fake) as server:
        yield fake, server.url


@dataclass
class Chat:
    app: ChatApp
    pipe: PipeInput
    screen: Screen
    out: io.StringIO
    fake: FakeGateway
    task: asyncio.Future[None]

    @property
    def printed(self) -> str:
        return self.out.getvalue()

    async def type(self, text: str) -> None:
        """Type a line at the prompt once it waits for input, and wait until the chat has handled it."""
        await self.submit(text)
        await until(lambda: self.app.inputs_done == self.app.inputs_started)

    async def submit(self, text: str) -> None:
        """Type a line at the prompt and wait only until the chat has taken it."""
        await until(lambda: self.app.waiting_for_input)
        before = self.app.inputs_started
        self.pipe.send_text(text + ENTER)
        await until(lambda: self.app.inputs_started > before or self.app.quitting)

    async def shows(self, text: str) -> None:
        await until(lambda: text in self.printed)


@asynccontextmanager
async def chat(gateway: tuple[FakeGateway, str], **options: object) -> AsyncIterator[Chat]:
    fake, url = gateway
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False, color_system=None)
    with terminal(columns=120) as (pipe, screen):
        conn = GatewayConnection(url.replace("http", "ws") + "/ws", lambda: TOKEN, reconnect_delays=(0.02, 0.05))
        await conn.connect()
        app = ChatApp(conn, console, ChatOptions(http_url=url, **options), token=TOKEN)  # type: ignore[arg-type]
        task = asyncio.ensure_future(app.run())
        try:
            yield Chat(app, pipe, screen, out, fake, task)
            await asyncio.wait_for(task, 10)
        finally:
            task.cancel()
            await conn.close()


async def pick_default_model(c: Chat) -> None:
    await until(lambda: "Select Model Provider" in c.screen.text)
    c.pipe.send_text(ESC)


async def test_menu_2_picks_openrouter_enter_the_first_model_then_a_streamed_answer_and_status(
    gateway: tuple[FakeGateway, str],
) -> None:
    async with chat(gateway) as c:
        await until(lambda: "Select Model Provider" in c.screen.text)
        assert "║  1. Anthropic (Claude) (set ANTHROPIC_API_KEY)  ║" in c.screen.text
        c.pipe.send_text("2")
        await until(lambda: "OpenRouter models" in c.screen.text)
        c.pipe.send_text(ENTER)
        await c.type("hello")
        await c.shows("tokens 1,200 in / 34 out")
        assert c.fake.of_type("select_provider")[0]["model"] == "vendor0/model-0"
        assert "Hello world!" in c.printed
        assert "tokens 1,200 in / 34 out · cache r1.0k w0 83% · $0.0012 (session $0.0012)" in c.printed
        await until(lambda: c.app.waiting_for_input)
        assert status_text(c.app.status()).startswith("OpenRouter · vendor0/model-0 │ session sess-000")
        assert "turn ↑1.2k ↓34 │ session ↑1.2k ↓34 │ cache r1.0k w0 83% │ $0.0012" in status_text(c.app.status())
        # the bottom toolbar is drawn without asking the terminal for the cursor position
        await until(lambda: "turn ↑1.2k ↓34 │ session ↑1.2k ↓34 │ cache r1.0k w0 83% │ $0.0012" in c.screen.text)
        assert "\x1b[6n" not in c.screen.getvalue()
        await c.type("again")
        await c.shows("(session $0.0024)")
        assert c.app.session_usage == Usage(2400, 68, 2000, 0, cost=0.0024)
        await c.type("/quit")


async def test_escape_at_the_menu_keeps_the_default_model(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("hi")
        await c.shows("tokens")
        assert c.fake.of_type("select_provider") == []
        assert "OpenRouter · anthropic/claude-sonnet-4.5" in status_text(c.app.status())
        await c.type("/quit")


async def test_model_option_skips_the_menus(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway, model="vendor7/model-7") as c:
        await c.type("/quit")
    assert c.fake.of_type("select_provider") == [
        {"type": "select_provider", "provider": "openrouter", "model": "vendor7/model-7", "id": "select_provider-1"}
    ]
    assert "Select Model Provider" not in c.screen.text


async def test_a_refused_model_option_stops_with_the_gateway_error(gateway: tuple[FakeGateway, str]) -> None:
    with pytest.raises(GatewayError, match="unknown model 'x/y'"):
        async with chat(gateway, model="x/y"):
            pass


async def test_multi_line_input_with_alt_enter(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("first line" + ESC + ENTER + "second line")
        await c.shows("tokens")
        assert c.fake.of_type("chat")[0]["content"] == "first line\nsecond line"
        await c.type("/quit")


async def test_slash_commands(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("hello")
        await c.shows("tokens")
        first = c.app.connection.session_id
        await c.type("/new")
        await c.shows("started")
        second = c.app.connection.session_id
        assert second != first and c.app.session_usage == Usage()
        await c.type("/sessions")
        await c.shows("tokens in/out")
        await c.type("/switch 1")
        await c.shows("switched to session")
        assert c.app.connection.session_id == first
        assert c.app.session_usage.cost == pytest.approx(0.0012)
        await c.type("/history")
        await c.shows("> hello")
        await c.type("/help")
        await c.shows("/switch ID")
        await c.type("/nonsense")
        await c.shows("unknown command /nonsense")
        await c.type("/switch zzz")
        await c.shows("no session 'zzz'")
        await c.type("/quit")
    assert c.fake.of_type("switch_session")[0]["session_id"] == first


async def test_model_command_shows_the_refusal_inline_and_re_prompts(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await until(lambda: c.app.waiting_for_input)
        c.pipe.send_text("/model" + ENTER)
        await until(lambda: "OpenRouter models" in c.screen.text)
        c.pipe.send_text("not/a-model")
        await until(lambda: "as a custom model ID" in c.screen.text)
        c.pipe.send_text(ENTER)
        await until(lambda: "unknown model 'not/a-model' — did you mean vendor1/model-1?" in c.screen.text)
        c.pipe.send_text("\x15" + "vendor1/model-1" + ENTER)  # Ctrl+U clears the input
        await c.shows("now using OpenRouter · vendor1/model-1")
        await c.type("/quit")


async def test_tool_call_approval_and_folded_output(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.submit("tool")
        await c.shows("$ seq 1 20")
        await until(lambda: "Run run_shell_command?" in c.screen.text)
        c.pipe.send_text("y")
        await c.shows("tokens")
        assert c.fake.of_type("tool_approval")[0]["decision"] == "approve"
        assert "│ line 6" in c.printed and "│ line 7" not in c.printed
        assert "… 14 more lines (/output 1 shows all)" in c.printed
        await c.type("/output 1")
        await c.shows("line 20")
        await c.type("/quit")


async def test_fallback_and_errors_are_one_line_each(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("fallback")
        await c.shows("↪ sonnet failed (rate_limited); falling back to kimi")
        await c.type("fail")
        await c.shows("✗ rate_limited: Rate limited")
        await c.type("/quit")


async def test_ctrl_c_cancels_a_running_turn(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.submit("slow")
        await until(lambda: bool(c.fake.of_type("chat")) and c.app.status().busy)
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends for Ctrl+C while the answer streams
        await c.shows("cancelled — the partial answer is kept")
        assert len(c.fake.of_type("cancel")) == 1
        await c.type("/quit")


async def test_second_ctrl_c_during_a_turn_quits(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.submit("slow")
        await until(lambda: bool(c.fake.of_type("chat")) and c.app.status().busy)
        c.app.interrupt()
        await until(lambda: bool(c.fake.of_type("cancel")))
        c.app.interrupt()
    assert c.app.quitting


async def test_ctrl_c_twice_at_an_empty_prompt_quits(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await until(lambda: c.app.waiting_for_input)
        c.pipe.send_text("typed" + CTRL_C)  # clears the input
        await until(lambda: c.app.status().notice is None and c.app.waiting_for_input)
        c.pipe.send_text(CTRL_C)
        await until(lambda: c.app.status().notice == "press Ctrl+C again to quit")
        c.pipe.send_text(CTRL_C)
    assert c.fake.of_type("chat") == []


async def test_the_chat_reconnects_and_continues_the_same_session(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("hello")
        await c.shows("tokens")
        session = c.app.connection.session_id
        await c.submit("drop")
        await c.shows("gateway_unavailable")
        await until(lambda: c.app.connection.state == "connected" and bool(c.fake.of_type("switch_session")))
        assert c.fake.of_type("switch_session")[0]["session_id"] == session
        await c.type("after")
        await until(lambda: c.printed.count("tokens") == 2)
        assert c.fake.of_type("chat")[-1]["session_id"] == session
        await c.type("/quit")


async def test_session_last_continues_the_latest_session(gateway: tuple[FakeGateway, str]) -> None:
    fake = gateway[0]
    fake.new_session("old")
    latest = fake.new_session("latest")
    latest.messages.append({"role": "user", "content": "x", "blocks": []})
    async with chat(gateway, session="last", model="vendor1/model-1") as c:
        await until(lambda: c.app.waiting_for_input)
        assert c.app.connection.session_id == latest.id
        await c.type("/quit")


async def test_an_unknown_session_option_is_an_error(gateway: tuple[FakeGateway, str]) -> None:
    with pytest.raises(GatewayError, match="no session 'nope'"):
        async with chat(gateway, session="nope"):
            pass


def test_sessions_are_found_by_number_id_or_short_prefix() -> None:
    sessions = [SessionEntry("sess_4db95716aa"), SessionEntry("sess_4dc00000bb"), SessionEntry("sess_99")]
    assert resolve_session("2", sessions) == sessions[1]
    assert resolve_session("sess_99", sessions) == sessions[2]
    assert resolve_session("4db", sessions) == sessions[0]
    assert resolve_session("4d", sessions) == "'4d' matches 2 sessions; type more of the ID"
    assert resolve_session("zz", sessions) == "no session 'zz' (see /sessions)"


async def test_an_interrupt_during_start_up_leaves(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await until(lambda: "Select Model Provider" in c.screen.text)
        c.app.interrupt()  # a SIGINT while the menus are up (e.g. `kill -INT`)
    assert c.task.done() and c.fake.of_type("select_provider") == [] and c.fake.of_type("chat") == []


async def test_reasoning_is_folded_above_the_answer_and_thinking_expands_it(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("think")
        await c.shows("tokens 1,200 in / 34 out · 1,500 reasoning")
        block = "✻ thinking\n  │ thought 1\n  │ thought 2\n  │ thought 3\n  │ … 5 more lines — /thinking to expand\n"
        assert block + "Hello world!" in c.printed
        assert "thought 4" not in c.printed
        assert "│ session ↑1.2k ↓34 · 1.5k reasoning │" in status_text(c.app.status())
        await c.type("/thinking")
        await c.shows("thought 8")
        assert THOUGHTS in c.printed
        await c.type("/history")
        await until(lambda: c.printed.count("✻ thinking") == 3)
        assert c.printed.rstrip().endswith("… 5 more lines\nHello world!")  # folded, without the /thinking hint
        await c.type("hello")
        await c.shows("(session $0.0024)")
        await c.type("/thinking")
        await c.shows("no reasoning in the last turn")
        await c.type("/quit")


async def test_a_fallback_drops_the_failed_attempts_thinking(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("think-fallback")
        await c.shows("tokens")
        assert "↪ sonnet failed (rate_limited); falling back to kimi" in c.printed
        assert DOOMED_THOUGHT not in c.printed
        await c.type("/thinking")
        await c.shows("thought 8")
        assert DOOMED_THOUGHT not in c.printed
        await c.type("/quit")


async def test_reasoning_command_sets_shows_and_clears_the_level_sent_with_each_message(
    gateway: tuple[FakeGateway, str],
) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("/reasoning")
        await c.shows("reasoning: as configured for each model (/reasoning LEVEL changes it)")
        await c.type("/reasoning max")
        await c.shows("✗ reasoning level 'max' is not one of none, minimal, low, medium, high, xhigh, off, on or a")
        await c.type("/reasoning HIGH")
        await c.shows("reasoning: high for the next messages")
        assert status_text(c.app.status()).startswith("OpenRouter · anthropic/claude-sonnet-4.5 │ reasoning high │")
        await until(lambda: "reasoning high" in c.screen.text)  # in the bottom toolbar
        await c.type("one")
        await c.shows("tokens")
        await c.type("/reasoning 8000")
        await c.type("two")
        await until(lambda: c.printed.count("tokens") == 2)
        await c.type("/reasoning")
        await c.shows("reasoning: 8000 for every message")
        await c.type("/reasoning default")
        await c.type("three")
        await until(lambda: c.printed.count("tokens") == 3)
        assert "reasoning" not in status_text(c.app.status())
        await c.type("/help")
        await c.shows("/reasoning [LEVEL]")
        assert "/thinking" in c.printed
        await c.type("/quit")
    assert [frame.get("reasoning") for frame in c.fake.of_type("chat")] == ["high", "8000", None]


async def test_hostile_reasoning_is_shown_with_its_escape_sequences_visible(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        await c.type("think-hostile")
        await c.shows("tokens")
        await c.type("/thinking")
        await until(lambda: c.printed.count("evil␛[2J␛]0;pwned␇ plan\\x9b31m done␛]52;c;ZXZpbA==␇") == 2)
        for sequence in ("\x1b", "\x9b", "\x07"):
            assert sequence not in c.printed
        await c.type("/quit")


WARNING = "⚠ this command contains control characters (shown as ␛"
HOSTILE_SHOWN = "copy␛]52;c;ZXZpbA==␇ retitle␛]0;pwned␇ clear␛[2J␛[H done"


async def asked(c: Chat, turn: str) -> str:
    """Send `turn` (a tool call the fake asks approval for), deny it; what was printed up to the prompt."""
    before = len(c.printed)
    await c.submit(turn)
    await until(lambda: "Run run_shell_command?" in c.screen.text)
    printed = c.printed[before:]
    c.pipe.send_text("n")
    await c.shows("denied")
    await until(lambda: c.app.inputs_done == c.app.inputs_started)
    return printed


async def test_a_command_that_erases_its_own_line_is_shown_whole_and_flagged(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        printed = await asked(c, "tool-spoof")
        assert "$ touch X #␛[2K␛[1G│ $ ls -la" in printed and WARNING in printed
        assert "\x1b" not in c.printed
        assert WARNING not in await asked(c, "tool")  # a clean command gets no warning
        await c.type("/quit")


async def test_long_and_multi_line_commands_are_shown_whole(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        await pick_default_model(c)
        printed = await asked(c, "tool-long")
        unboxed = "".join(line.strip().strip("│").strip() for line in printed.splitlines())
        assert TOOL_COMMANDS["tool-long"].replace(" ", "") in unboxed.replace(" ", "")
        printed = await asked(c, "tool-lines")
        assert "$ ls -la" in printed and "rm -rf ~/important" in printed and "↑ 32 lines: all of them run" in printed
        await c.type("/quit")


async def test_hostile_text_output_history_and_titles_are_visible_and_inert(gateway: tuple[FakeGateway, str]) -> None:
    async with chat(gateway) as c:
        c.fake.new_session("title\x1b]0;pwned\x07 clear\x1b[2J")
        await pick_default_model(c)
        await c.submit("hostile")
        await until(lambda: "Run run_shell_command?" in c.screen.text)
        c.pipe.send_text("y")
        await c.shows("tokens")
        assert c.printed.count(HOSTILE_SHOWN) == 2  # the tool's output and the answer
        await c.type("/history")
        await until(lambda: c.printed.count(HOSTILE_SHOWN) == 3)
        await c.type("/sessions")
        await c.shows("title␛]0;pwned␇ clear␛[2J")
        await c.type("/switch 1")
        await c.shows("“title␛]0;pwned␇ clear␛[2J”")
        assert "\x1b" not in c.printed and "\x07" not in c.printed
        await c.type("/quit")
