"""`t-koma chat` in a real pseudo-terminal (pexpect) against the fake gateway: the boxed menu, `2`, Enter on
the first model, a streamed answer with the status bar, Ctrl+C cancelling a turn, and `/quit`."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.client.fake_gateway import TOKEN, FakeGateway
from tests.fakes.server import serve


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    fake = FakeGateway()
    with serve(fake) as server:
        config_dir = Path(os.environ["T_KOMA_CONFIG_DIR"])
        data_dir = Path(os.environ["T_KOMA_DATA_DIR"])
        (config_dir / "config.toml").write_text(f"[gateway]\nport = {server.port}\n")
        (data_dir / "gateway.token").write_text(TOKEN)
        yield fake


def spawn(*args: str) -> pexpect.spawn:
    env = {**os.environ, "TERM": "xterm-256color"}
    return pexpect.spawn(
        sys.executable,
        ["-m", "t_koma", "chat", "--no-autostart", *args],
        env=env,
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=15,
    )


def test_menu_model_chat_status_cancel_and_quit_in_a_real_terminal(gateway: FakeGateway) -> None:
    child = spawn()
    try:
        child.expect("Select Model Provider")
        child.expect("2. OpenRouter")
        child.expect("Enter/Esc")
        child.send("2")
        child.expect("OpenRouter models")
        child.expect("Enter a custom model ID")
        child.send("\r")
        child.expect("/help for commands")
        child.expect(r"\$0\.0000")  # the status bar under the prompt
        child.send("hello\r")
        child.expect(r"Hello \S*world")
        child.expect("tokens 1,200 in / 34 out")
        child.expect(r"turn ↑1\.2k ↓34")
        child.expect(r"\$0\.0012")
        child.send("tool\r")
        child.expect(r"⚙ run_shell_command")
        child.expect(r"\$(\x1b\[[0-9;]*m|\s)*seq")  # `$ seq 1 20`, syntax-highlighted
        child.expect(r"Run run_shell_command\?")
        child.send("y")
        child.expect("approved")
        child.expect(r"14 more lines \(/output 1 shows all\)")
        child.expect(r"\$0\.0024")
        child.send("slow\r")
        child.expect("Working on it")
        child.sendintr()
        child.expect("cancelled")
        child.expect(r"\$0\.0036")
        child.send("/quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert gateway.of_type("select_provider")[0]["model"] == "vendor0/model-0"
    assert len(gateway.of_type("cancel")) == 1
    assert gateway.of_type("tool_approval")[0]["decision"] == "approve"


def test_thinking_block_reasoning_level_and_hostile_reasoning_in_a_real_terminal(gateway: FakeGateway) -> None:
    child = spawn("--model", "vendor0/model-0")
    child.logfile_read = io.StringIO()
    try:
        child.expect("/help for commands")
        child.send("/reasoning high\r")
        child.expect("reasoning: high for the next messages")
        child.expect("reasoning high")  # the status bar
        child.send("think\r")
        child.expect("✻ thinking")
        child.expect(r"│ thought 3(\x1b\[[0-9;]*m|\s)*│ … 5 more lines — /thinking to expand")
        child.expect(r"Hello \S*world")
        child.expect("tokens 1,200 in / 34 out · 1,500 reasoning")
        child.expect("1.5k reasoning")
        child.send("/thinking\r")
        child.expect("thought 8")
        child.send("think-hostile\r")
        child.expect("evil␛")
        child.expect("tokens")
        child.send("/quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    transcript = child.logfile_read.getvalue()
    assert "thought 4" not in transcript.split("/thinking to expand")[0]  # folded while it streamed
    for sequence in ("\x1b[2J", "\x1b]0;", "\x1b]52", "\x9b"):
        assert sequence not in transcript
    assert [frame.get("reasoning") for frame in gateway.of_type("chat")] == ["high", "high"]


def test_a_spoofing_command_is_shown_whole_and_flagged_in_a_real_terminal(gateway: FakeGateway) -> None:
    child = spawn("--model", "vendor0/model-0")
    child.logfile_read = io.StringIO()
    try:
        child.expect("/help for commands")
        child.send("tool-spoof\r")
        child.expect(r"Run run_shell_command\?")
        child.send("n")
        child.expect("denied")
        child.expect("tokens")
        child.send("/quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", child.logfile_read.getvalue())  # rich's colours
    assert "$ touch X #␛[2K␛[1G│ $ ls -la" in shown
    assert "⚠ this command contains control characters (shown as ␛" in shown
    assert "\x1b[1G" not in shown and gateway.of_type("tool_approval")[0]["decision"] == "deny"


def test_no_gateway_and_no_autostart_is_one_line_and_exit_5(tmp_path: Path) -> None:
    config_dir = Path(os.environ["T_KOMA_CONFIG_DIR"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (config_dir / "config.toml").write_text(f"[gateway]\nport = {port}\n")
    done = subprocess.run(
        [sys.executable, "-m", "t_koma", "chat", "--no-autostart"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 5
    assert done.stderr.strip() == (
        f"t-koma: no gateway answers at http://127.0.0.1:{port}; start one with `t-koma gateway` "
        "(or drop --no-autostart)"
    )


def test_a_refused_model_option_exits_4_with_the_gateway_message(gateway: FakeGateway) -> None:
    child = spawn("--model", "x/y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4
    assert "t-koma: unknown model 'x/y'" in (child.before or "")
