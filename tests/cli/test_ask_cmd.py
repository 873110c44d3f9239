"""`t-koma ask` as a real subprocess against the fake OpenRouter: streamed text, the --json contract, exit
codes, tool approval without a TTY and on one, sessions, and what survives a kill -9 or a Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from t_koma.cli.ask_render import DIM, RESET
from t_koma.errors import ReasoningExhaustedError
from tests.engine.support import query, write_config
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import (
    StallReply,
    Thought,
    Usage,
    error_reply,
    midstream_error_reply,
    text_reply,
    tool_call_reply,
)

JSON_KEYS = {
    "provider",
    "model",
    "text",
    "reasoning",
    "stop_reason",
    "session_id",
    "steps",
    "tool_calls",
    "fallbacks",
    "usage",
}
USAGE_KEYS = {"input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "reasoning_tokens", "cost"}


def t_koma(*args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "t_koma", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert TEST_KEY not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def shell(call_id: str, command: str) -> tuple[str, str, str]:
    return (call_id, "run_shell_command", json.dumps({"command": command}))


def database() -> Path:
    return Path(os.environ["T_KOMA_DATA_DIR"]) / "koma.sqlite3"


def wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def config(fake_openrouter: FakeUpstream) -> None:
    write_config(approval="ask")


def test_the_answer_streams_to_stdout(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(text_reply("Hello there, human."))

    done = t_koma("ask", "Say hello")

    assert (done.returncode, done.stdout) == (0, "Hello there, human.\n")
    assert fake_openrouter.app.last_body["stream"] is True


def test_json_prints_one_object_with_the_contracted_shape(fake_openrouter: FakeUpstream) -> None:
    fake = fake_openrouter.app
    fake.enqueue(error_reply(502, "Bad gateway"))
    fake.enqueue(tool_call_reply([shell("call_1", "echo via-json")], text="Let me run it."))
    fake.enqueue(text_reply("It said via-json."))

    done = t_koma("ask", "--json", "--yes", "-m", "alpha,beta", "Run it")

    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert set(payload) == JSON_KEYS and set(payload["usage"]) == USAGE_KEYS
    assert (payload["provider"], payload["model"], payload["text"]) == ("openrouter", "test/beta", "It said via-json.")
    assert payload["steps"] == 2 and payload["session_id"].startswith("sess_")
    [call] = payload["tool_calls"]
    assert (call["id"], call["name"], call["arguments"], call["is_error"]) == (
        "call_1",
        "run_shell_command",
        {"command": "echo via-json"},
        False,
    )
    assert "via-json" in call["result"]
    assert [f["model"] for f in payload["fallbacks"]] == ["alpha"] and "Bad gateway" in payload["fallbacks"][0]["error"]
    assert (payload["usage"]["input_tokens"], payload["usage"]["output_tokens"]) == (24, 14)
    assert done.stderr == ""


def test_tool_calls_are_shown_on_stderr_and_denied_without_a_tty(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "touch made-by-tool")]), text_reply("I was not allowed."))

    done = t_koma("ask", "Make a file")

    assert done.returncode == 0
    assert done.stdout == "I was not allowed.\n"
    assert "[tool] run_shell_command: touch made-by-tool" in done.stderr
    assert "--yes" in done.stderr
    assert not Path("made-by-tool").exists()


def test_yes_runs_tools_and_stdin_can_carry_the_prompt(fake_openrouter: FakeUpstream) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([shell("c1", "echo key=[$OPENROUTER_API_KEY]; touch made-by-tool")]))
    fake.enqueue(text_reply("Done."))

    done = t_koma("ask", "--yes", "-", stdin="Prompt from stdin\n")

    assert done.returncode == 0 and Path("made-by-tool").exists()
    assert "key=[]" in done.stderr
    first_user = [m for m in fake.chat_requests[0].body["messages"] if m["role"] == "user"]  # type: ignore[index]
    assert "Prompt from stdin" in str(first_user)


def test_the_approval_prompt_on_a_terminal(fake_openrouter: FakeUpstream) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([shell("c1", "touch via-tty")]), text_reply("Made it."))
    child = pexpect.spawn(sys.executable, ["-m", "t_koma", "ask", "Make a file"], encoding="utf-8", timeout=20)
    try:
        child.expect(r"Run run_shell_command: touch via-tty\? \[y\]es / \[n\]o / \[a\]lways: ")
        child.sendline("y")
        child.expect("Made it.")
        child.expect(pexpect.EOF)
    finally:
        child.close()

    assert child.exitstatus == 0
    assert Path("via-tty").exists()


SPOOF = "touch X #\x1b[2K\x1b[1G│ $ ls -la"
WARNING = "⚠ this command contains control characters (shown as ␛"


def approval_transcript(command: str, answer: str = "n") -> str:
    """`ask` on a terminal asked to approve `command`; the terminal's transcript up to the exit."""
    child = pexpect.spawn(sys.executable, ["-m", "t_koma", "ask", "Go"], encoding="utf-8", timeout=20)
    try:
        child.expect(r"\[y\]es / \[n\]o / \[a\]lways: ")
        shown = str(child.before) + str(child.after)
        child.sendline(answer)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    return shown


def test_the_approval_prompt_shows_a_line_erasing_command_whole_and_warns(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", SPOOF)]), text_reply("Not run."))

    shown = approval_transcript(SPOOF)

    assert "Run run_shell_command: touch X #␛[2K␛[1G│ $ ls -la?" in shown and WARNING in shown
    assert "\x1b" not in shown
    assert "[tool] run_shell_command: touch X #␛[2K␛[1G│ $ ls -la" in shown
    assert not Path("X").exists()


def test_the_approval_prompt_shows_long_and_multi_line_commands_whole(fake_openrouter: FakeUpstream) -> None:
    long = "echo " + "x" * 491 + " END"
    lines = "ls -la" + "\n" * 31 + "rm -rf ~/important"
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", long)]), text_reply("Not run."))
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", lines)]), text_reply("Not run."))

    assert f"Run run_shell_command: {long}?" in approval_transcript(long)
    shown = approval_transcript(lines)
    assert "Run run_shell_command (32 lines, all of them run):" in shown
    assert "  | ls -la\r\n" in shown and "  | rm -rf ~/important\r\nRun it?" in shown and WARNING not in shown


HOSTILE = "copy\x1b]52;c;ZXZpbA==\x07 retitle\x1b]0;pwned\x07 clear\x1b[2J\x1b[H done"
HOSTILE_SHOWN = "copy␛]52;c;ZXZpbA==␇ retitle␛]0;pwned␇ clear␛[2J␛[H done"


def test_hostile_text_and_tool_output_are_visible_and_inert_on_a_terminal(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "printf '" + HOSTILE + "'")]), text_reply(HOSTILE))
    child = pexpect.spawn(sys.executable, ["-m", "t_koma", "ask", "--yes", "Go"], encoding="utf-8", timeout=20)
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close()

    shown = str(child.before)
    assert shown.count(HOSTILE_SHOWN) == 3  # the command, its output and the answer
    assert "\x1b" not in shown and "\x07" not in shown


def test_json_keeps_control_characters_exact(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", SPOOF)]), text_reply(HOSTILE))

    done = t_koma("ask", "--json", "Go")

    assert "\\u001b]52;c;ZXZpbA==\\u0007" in done.stdout and "␛" not in done.stdout
    payload = json.loads(done.stdout)
    assert payload["text"] == HOSTILE and payload["tool_calls"][0]["arguments"] == {"command": SPOOF}


def test_no_stream_and_no_tools(fake_openrouter: FakeUpstream) -> None:
    done = t_koma("ask", "--no-stream", "--no-tools", "--system", "Be brief.", "Hi")

    body = fake_openrouter.app.last_body
    assert done.returncode == 0 and done.stdout == "Hello from the fake upstream.\n"
    assert body.get("stream") in (None, False) and "tools" not in body
    assert body["messages"][0]["content"] == "Be brief."


def test_session_last_continues_the_latest_session(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(text_reply("Noted: blue."), text_reply("Blue."))
    first = json.loads(t_koma("ask", "--json", "My colour is blue").stdout)

    second = json.loads(t_koma("ask", "--json", "--session", "last", "What is my colour?").stdout)

    assert second["session_id"] == first["session_id"]
    sent = [m["role"] for m in fake_openrouter.app.last_body["messages"]]
    assert sent == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(401, 3, "authentication_error"), (402, 3, "insufficient_credits"), (404, 4, "model_not_found")],
)
def test_upstream_errors_exit_with_their_code(fake_openrouter: FakeUpstream, status: int, code: int, kind: str) -> None:
    fake_openrouter.app.enqueue(error_reply(status, "Nope"))

    done = t_koma("ask", "--json", "Hi")

    assert done.returncode == code
    error = json.loads(done.stdout)["error"]
    assert (set(error), error["type"], error["status"]) == ({"message", "type", "status"}, kind, status)
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("t-koma: ")


def test_an_upstream_error_quoting_escape_codes_is_shown_inert(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(error_reply(401, "bad key\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J"))

    done = t_koma("ask", "--json", "Hi")

    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "␛]52;c;cm0gLXJmIH4=␇␛[2J" in done.stderr
    assert "\x1b]52" in json.loads(done.stdout)["error"]["message"]  # --json stays exact


def test_every_model_failing_exits_5_listing_them(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(error_reply(502, "Bad gateway"), midstream_error_reply("half", code=503))

    done = t_koma("ask", "--json", "Hi")

    assert done.returncode == 5
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "all_models_exhausted" and error["status"] is None
    assert "alpha" in error["message"] and "beta" in error["message"]


@pytest.mark.parametrize(
    "args",
    [("-m", "no-such-alias", "Hi"), ("--session", "sess_missing", "Hi"), ("   ",), ("--max-steps", "0", "Hi")],
)
def test_usage_and_config_errors_exit_2(args: tuple[str, ...]) -> None:
    done = t_koma("ask", *args)

    assert done.returncode == 2
    assert done.stdout == ""


def test_kill_9_keeps_the_user_message_and_the_next_run_marks_the_turn(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(StallReply(seconds=60, partial_text="thinking"))
    child = subprocess.Popen(
        [sys.executable, "-m", "t_koma", "ask", "A question that never gets answered"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: fake_openrouter.app.chat_requests and database().exists())
        wait_until(lambda: query(database(), "SELECT count(*) FROM messages") == [(1,)])
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()

    history = json.loads(t_koma("history", "last", "--json").stdout)
    assert [m["content"] for m in history["messages"]] == [
        [{"type": "text", "text": "A question that never gets answered"}]
    ]
    assert query(database(), "PRAGMA integrity_check") == [("ok",)]

    fake_openrouter.app.enqueue(text_reply("Back again."))
    assert t_koma("ask", "--session", "last", "Still there?").returncode == 0

    messages = json.loads(t_koma("history", "last", "--json").stdout)["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", None),
        ("assistant", "interrupted"),
        ("user", None),
        ("assistant", None),
    ]
    assert query(database(), "SELECT status FROM turns ORDER BY started") == [("interrupted",), ("done",)]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_cancels_the_turn_stores_it_and_exits(
    fake_openrouter: FakeUpstream, signal_number: int, code: int
) -> None:
    fake_openrouter.app.enqueue(StallReply(seconds=60, partial_text="the beginning"))
    child = subprocess.Popen(
        [sys.executable, "-m", "t_koma", "ask", "Tell me everything"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs (CI runners, `cmd &`) with SIGINT ignored, and children inherit that;
        # a terminal's Ctrl+C reaches a foreground process with the default disposition, so give it that.
        preexec_fn=_default_sigint,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.read(len("the beginning")) == "the beginning"
        child.send_signal(signal_number)
        _, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()

    assert child.returncode == code
    assert "cancelled" in err and "Traceback" not in err
    messages = json.loads(t_koma("history", "last", "--json").stdout)["messages"]
    assert messages[-1]["status"] == "cancelled"
    assert messages[-1]["content"][0]["text"].startswith("the beginning")
    assert query(database(), "SELECT status FROM turns") == [("cancelled",)]


def test_no_key_reaches_the_database(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "env")]), text_reply("ok"))

    assert t_koma("ask", "--yes", "Show env").returncode == 0

    files = list(database().parent.glob("koma.sqlite3*"))
    assert database() in files
    assert all(TEST_KEY.encode() not in path.read_bytes() for path in files)


def test_model_ids_are_checked_against_the_catalog(fake_openrouter: FakeUpstream) -> None:
    typo = t_koma("ask", "-m", "openai/gpt-4o-mnii", "Hi")
    variant = t_koma("ask", "-m", "openai/gpt-4o-mini:nitro", "Hi")

    assert typo.returncode == 4 and "openai/gpt-4o-mini" in typo.stderr
    assert variant.returncode == 0
    assert [(r.body or {}).get("model") for r in fake_openrouter.app.chat_requests] == ["openai/gpt-4o-mini:nitro"]


def test_provider_alone_picks_that_providers_model(fake_openrouter: FakeUpstream, fake_anthropic: Any) -> None:
    fake_anthropic.app.enqueue(text_reply("Native Claude."))

    done = t_koma("ask", "--provider", "Anthropic", "--json", "Hi")

    payload = json.loads(done.stdout)
    assert (payload["provider"], payload["model"], payload["text"]) == (
        "anthropic",
        "claude-sonnet-4-5",
        "Native Claude.",
    )
    assert fake_openrouter.app.chat_requests == []


def test_a_closed_stdout_does_not_break_the_turn(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(text_reply("many words " * 200))
    child = subprocess.Popen(
        [sys.executable, "-m", "t_koma", "ask", "Talk a lot"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.close()  # like `| head -0`: the reader is gone before the first word
    _, err = child.communicate(timeout=30)

    assert child.returncode == 0 and "Traceback" not in err and "Error" not in err
    messages = json.loads(t_koma("history", "last", "--json").stdout)["messages"]
    assert messages[-1]["content"][0]["text"].startswith("many words")


def test_reaching_max_steps_says_so_on_stderr(fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "echo one")]))

    done = t_koma("ask", "--yes", "--max-steps", "1", "Go")

    assert done.returncode == 0
    assert "step limit" in done.stderr and "1 tool call(s) not run" in done.stderr


# --- reasoning ----------------------------------------------------------------------------------------------

GEMINI = '\n[models.gemini]\nprovider = "openrouter"\nmodel = "google/gemini-3-pro-preview"\n'
PLAN = Thought("I should run it first.", signature="sig-plan")
CHECK = Thought("The output says via-reasoning.", signature="sig-check")


def reasoning_loop(fake: FakeUpstream) -> None:
    """Two steps of a tool loop on Gemini 3, each reasoning first (the fake refuses step 2 without step 1's)."""
    write_config(approval="ask", extra=GEMINI)
    fake.app.enqueue(
        tool_call_reply(
            [shell("c1", "echo via-reasoning")], reasoning=[PLAN], usage=Usage(10, 20, reasoning_tokens=15)
        ),
        text_reply("It said via-reasoning.", reasoning=[CHECK], usage=Usage(30, 8, reasoning_tokens=5)),
    )


@pytest.mark.parametrize(
    ("level", "sent"),
    [("high", {"effort": "high"}), ("8000", {"max_tokens": 8000}), ("off", {"effort": "none"})],
)
def test_reasoning_level_reaches_the_upstream(fake_openrouter: FakeUpstream, level: str, sent: dict[str, Any]) -> None:
    write_config(approval="ask", extra=GEMINI)

    done = t_koma("ask", "-m", "gemini", "--reasoning", level, "Hi")

    assert done.returncode == 0, done.stderr
    assert fake_openrouter.app.last_body["reasoning"] == sent


def test_a_bad_reasoning_level_is_a_usage_error(fake_openrouter: FakeUpstream) -> None:
    done = t_koma("ask", "--reasoning", "extreme", "Hi")

    assert (done.returncode, done.stdout) == (2, "")
    [error] = [line for line in done.stderr.splitlines() if "Error" in line]
    assert "'--reasoning'" in error and "none, minimal, low, medium, high, xhigh, off, on" in error
    assert fake_openrouter.app.chat_requests == []


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_json_has_the_turns_reasoning_and_reasoning_tokens(fake_openrouter: FakeUpstream, stream: bool) -> None:
    reasoning_loop(fake_openrouter)

    done = t_koma("ask", "--json", "--yes", "-m", "gemini", *([] if stream else ["--no-stream"]), "Run it")

    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert set(payload) == JSON_KEYS
    assert payload["reasoning"] == f"{PLAN.text}\n\n{CHECK.text}"
    assert (payload["usage"]["reasoning_tokens"], payload["usage"]["output_tokens"]) == (20, 28)
    assert payload["text"] == "It said via-reasoning." and done.stderr == ""


def test_json_reasoning_is_null_without_reasoning(fake_openrouter: FakeUpstream) -> None:
    payload = json.loads(t_koma("ask", "--json", "Hi").stdout)

    assert payload["reasoning"] is None and payload["usage"]["reasoning_tokens"] is None


def test_show_reasoning_streams_it_to_stderr_only(fake_openrouter: FakeUpstream) -> None:
    reasoning_loop(fake_openrouter)

    shown = t_koma("ask", "--yes", "-m", "gemini", "--show-reasoning", "Run it")
    reasoning_loop(fake_openrouter)
    hidden = t_koma("ask", "--yes", "-m", "gemini", "Run it")

    assert shown.returncode == hidden.returncode == 0
    assert shown.stdout == hidden.stdout == "It said via-reasoning.\n"
    assert shown.stderr.startswith(PLAN.text + "\n[tool] run_shell_command: echo via-reasoning\n")
    assert CHECK.text + "\n" in shown.stderr and "\x1b" not in shown.stderr  # a pipe gets no dimming
    assert PLAN.text not in hidden.stderr and CHECK.text not in hidden.stderr


def test_show_reasoning_on_a_terminal_is_dimmed_and_neutralised(fake_openrouter: FakeUpstream) -> None:
    write_config(approval="ask", extra=GEMINI)
    hostile = Thought("\x1b]0;retitled\x07Pondering\x1b[2J deeply\r.", signature="sig-1")
    fake_openrouter.app.enqueue(text_reply("Answer\x1b[31m here.", reasoning=[hostile]))
    child = pexpect.spawn(
        sys.executable, ["-m", "t_koma", "ask", "-m", "gemini", "--show-reasoning", "Hi"], encoding="utf-8", timeout=20
    )
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close()

    output = child.before
    assert child.exitstatus == 0
    assert DIM in output
    visible = output.replace(DIM, "").replace(RESET, "")
    assert "\x1b" not in visible and "\x07" not in visible
    # The model's escapes and its \r are shown, not interpreted (also when a delta splits a sequence);
    # the reasoning's line is closed before the answer starts (the pty shows \n as \r\n).
    assert "␛]0;retitled␇Pondering␛[2J deeply␍.\r\nAnswer␛[31m here.\r\n" in visible


def test_reasoning_that_uses_every_token_is_a_clear_error(fake_openrouter: FakeUpstream) -> None:
    write_config(approval="ask", extra=GEMINI)
    exhausted = text_reply(
        "", stop="max_tokens", reasoning=[Thought("So much to consider...")], usage=Usage(9, 64, reasoning_tokens=64)
    )
    fake_openrouter.app.enqueue(exhausted)
    as_text = t_koma("ask", "-m", "gemini", "Think hard")
    fake_openrouter.app.enqueue(exhausted)
    as_json = t_koma("ask", "-m", "gemini", "--json", "Think hard")

    assert as_text.returncode == as_json.returncode == ReasoningExhaustedError.exit_code
    assert as_text.stdout == ""
    [line] = as_text.stderr.splitlines()
    assert line.startswith("t-koma: ") and "reasoning used all 64 output tokens" in line and "--reasoning low" in line
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "reasoning_exhausted" and "all 64 output tokens" in error["message"]
