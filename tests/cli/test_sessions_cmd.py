"""`t-koma sessions` and `t-koma history` as subprocesses over a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from t_koma.messages import ProviderUsage, ReasoningBlock, TextBlock, ToolResultBlock, ToolUseBlock
from t_koma.store.base import UsageRecord
from t_koma.store.sqlite import SqliteStore


def t_koma(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "t_koma", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert "Traceback" not in done.stderr
    return done


def database() -> Path:
    return Path(os.environ["T_KOMA_DATA_DIR"]) / "koma.sqlite3"


async def populate() -> tuple[str, str]:
    """Two sessions: an older one with a tool round trip and usage, then a newer one with one message."""
    store = await SqliteStore.open(database())
    try:
        older = await store.create_session("List the files")
        await store.append_message(older.id, "user", (TextBlock("List the files"),))
        call = ToolUseBlock("call_1", "run_shell_command", {"command": "ls"})
        asked = await store.append_message(older.id, "assistant", (call,), model="test/alpha")
        await store.append_message(older.id, "user", (ToolResultBlock("call_1", "a.txt\nb.txt"),))
        answered = await store.append_message(older.id, "assistant", (TextBlock("Two files."),), model="test/alpha")
        for message, cost in ((asked, 0.001), (answered, 0.002)):
            usage = ProviderUsage(input_tokens=100, output_tokens=10, cost=cost)
            await store.record_usage(UsageRecord(older.id, message.id, "openrouter", "test/alpha", usage, 5.0))
        newer = await store.create_session("Second chat")
        await store.append_message(newer.id, "user", (TextBlock("Hello again"),))
        return older.id, newer.id
    finally:
        await store.close()


def test_with_no_database_there_is_nothing_to_list_and_nothing_is_created() -> None:
    assert t_koma("sessions").stdout.startswith("No sessions yet")
    assert json.loads(t_koma("sessions", "--json").stdout) == []
    assert not database().exists()


def test_sessions_lists_counts_tokens_and_cost_newest_first() -> None:
    older, newer = asyncio.run(populate())

    listed = json.loads(t_koma("sessions", "--json").stdout)

    assert [s["id"] for s in listed] == [newer, older]
    first, second = listed
    assert set(second) == {
        "id",
        "title",
        "created_at",
        "updated_at",
        "message_count",
        "input_tokens",
        "output_tokens",
        "cost",
    }
    assert (second["title"], second["message_count"], second["input_tokens"], second["output_tokens"]) == (
        "List the files",
        4,
        200,
        20,
    )
    assert abs(second["cost"] - 0.003) < 1e-9
    assert (first["message_count"], first["cost"]) == (1, None)
    table = t_koma("sessions").stdout
    assert older in table and "List the files" in table and "$0.0030" in table


def test_history_prints_a_session_as_text_and_json() -> None:
    older, newer = asyncio.run(populate())

    text = t_koma("history", older).stdout
    as_json = json.loads(t_koma("history", older, "--json").stdout)

    assert "[assistant · test/alpha]" in text
    assert '-> run_shell_command {"command": "ls"}' in text
    assert "   b.txt" in text and "Two files." in text
    assert as_json["session"]["id"] == older
    assert [m["role"] for m in as_json["messages"]] == ["user", "assistant", "user", "assistant"]
    assert as_json["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "run_shell_command", "input": {"command": "ls"}}
    ]
    assert [m["position"] for m in as_json["messages"]] == [0, 1, 2, 3]
    assert json.loads(t_koma("history", "last", "--json").stdout)["session"]["id"] == newer


def test_an_unknown_session_exits_2_with_one_line() -> None:
    asyncio.run(populate())

    done = t_koma("history", "sess_nope")
    as_json = t_koma("history", "sess_nope", "--json")

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "sess_nope" in done.stderr
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["type"] == "session_not_found"


def test_history_last_without_sessions_says_how_to_start_one() -> None:
    done = t_koma("history", "last")

    assert done.returncode == 2 and "t-koma ask" in done.stderr


async def populate_reasoning() -> str:
    """A session whose answer carries reasoning: a three-line thought with escape sequences, and an opaque item."""
    store = await SqliteStore.open(database())
    try:
        session = await store.create_session("Think first")
        await store.append_message(session.id, "user", (TextBlock("Think first"),))
        thought = ReasoningBlock(
            "openrouter", "text", "\x1b]0;pwned\x07Weigh the options.\n\nOption A\x1b[2J.\nOption B.", signature="s1"
        )
        opaque = ReasoningBlock("openrouter", "encrypted", data="b3BhcXVl", format="google-gemini-v1", index=1)
        content = (thought, opaque, TextBlock("B\x1b[31m wins."))
        await store.append_message(session.id, "assistant", content, model="google/gemini-3-pro-preview")
        return session.id
    finally:
        await store.close()


def test_history_folds_reasoning_into_one_line_and_json_keeps_every_block() -> None:
    session_id = asyncio.run(populate_reasoning())

    text = t_koma("history", session_id).stdout
    as_json = json.loads(t_koma("history", session_id, "--json").stdout)

    assert "thinking: ␛]0;pwned␇Weigh the options. … (3 lines)\nB␛[31m wins." in text
    assert "Option B" not in text and "\x1b" not in text
    blocks = as_json["messages"][1]["content"]
    assert [block["type"] for block in blocks] == ["reasoning", "reasoning", "text"]
    assert blocks[0]["text"].endswith("Option B.") and blocks[0]["signature"] == "s1"
    assert (blocks[1]["kind"], blocks[1]["data"], blocks[1]["index"]) == ("encrypted", "b3BhcXVl", 1)


HOSTILE = "copy\x1b]52;c;ZXZpbA==\x07 retitle\x1b]0;pwned\x07 clear\x1b[2J\x1b[H done"
HOSTILE_SHOWN = "copy␛]52;c;ZXZpbA==␇ retitle␛]0;pwned␇ clear␛[2J␛[H done"


async def populate_hostile() -> str:
    """A session whose title, answer and tool output write to the clipboard, retitle the window and clear it."""
    store = await SqliteStore.open(database())
    try:
        session = await store.create_session(HOSTILE)
        await store.append_message(session.id, "user", (TextBlock(HOSTILE),))
        call = ToolUseBlock("call_1", "run_shell_command", {"command": "cat notes"})
        await store.append_message(session.id, "assistant", (call,), model="test/alpha")
        await store.append_message(session.id, "user", (ToolResultBlock("call_1", HOSTILE),))
        await store.append_message(session.id, "assistant", (TextBlock(HOSTILE),), model="test/alpha")
        return session.id
    finally:
        await store.close()


def test_hostile_titles_text_and_output_are_shown_visible_and_inert_and_json_keeps_them_exact() -> None:
    session = asyncio.run(populate_hostile())

    listed = t_koma("sessions").stdout
    history = t_koma("history", session).stdout

    assert "copy␛]52;c;ZXZpbA==␇" in listed and "\x1b" not in listed and "\x07" not in listed
    assert history.count(HOSTILE_SHOWN) == 4  # the title, the prompt, the tool's output and the answer
    assert "\x1b" not in history and "\x07" not in history
    assert json.loads(t_koma("sessions", "--json").stdout)[0]["title"] == HOSTILE
    messages = json.loads(t_koma("history", session, "--json").stdout)["messages"]
    assert messages[3]["content"] == [{"type": "text", "text": HOSTILE}]
