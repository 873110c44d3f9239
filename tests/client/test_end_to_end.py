"""`t-koma chat` end to end: a real pseudo-terminal (pexpect) driving the client, a real `t-koma gateway`
process, and the loopback fake OpenRouter in a thread of this test process.

Nothing in between is faked: the client autostarts the gateway (or finds one this test started), picks
OpenRouter from the boxed menu and the first model of the picker, and chats; the gateway streams the fake's
scripted answer, runs the shell tool after the user approves it, and sends its output back upstream. Both
processes get OPENROUTER_BASE_URL / OPENROUTER_API_KEY from the environment `fake_openrouter` sets. Every
gateway this module starts is stopped by its pid before the test ends."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from t_koma.client.autostart import probe
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import Thought, Usage, text_reply, tool_call_reply

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")

CONFIG = """\
[gateway]
port = {port}

[tools.shell]
approval = "ask"
"""

ANSWER = "The **answer** is forty-two."
ANSWER_USAGE = Usage(input_tokens=1234, output_tokens=56, cost=0.0042)
TOOL_USAGE = Usage(input_tokens=100, output_tokens=10, cost=0.001)
FINAL_USAGE = Usage(input_tokens=200, output_tokens=20, cost=0.002)

# Output is coloured (status bar segments, highlighted rows and commands): any run of escape sequences.
ESC = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def data_dir() -> Path:
    return Path(os.environ["T_KOMA_DATA_DIR"])


@pytest.fixture
def port() -> int:
    """A free port, written to `[gateway] port` in this test's config.toml."""
    chosen = free_port()
    (Path(os.environ["T_KOMA_CONFIG_DIR"]) / "config.toml").write_text(CONFIG.format(port=chosen))
    return chosen


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped by its new parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def gateway_pids(data: Path) -> list[int]:
    """Processes running `t_koma gateway` with this test's data dir (so never another test's or a user's)."""
    marker = f"T_KOMA_DATA_DIR={data}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"t_koma" in argv and b"gateway" in argv and marker in environ:
            found.append(int(entry.name))
    return found


def stop_process_group(pid: int) -> None:
    """SIGTERM the gateway's process group (it leads its own session), SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not alive(pid):
            return


@pytest.fixture
def autostarted(port: int) -> Iterator[Path]:
    """For a test whose client starts the gateway: afterwards every such gateway of this test is stopped."""
    try:
        yield data_dir()
    finally:
        for pid in gateway_pids(data_dir()):
            stop_process_group(pid)
        assert not gateway_pids(data_dir()), "a gateway was left running"


@pytest.fixture
def gateway(port: int, fake_openrouter: FakeUpstream) -> Iterator[str]:
    """A `t-koma gateway` process started by the test, answering `/health` at the returned URL."""
    url = f"http://127.0.0.1:{port}"
    token_file = data_dir() / "gateway.token"
    log_path = data_dir() / "test-gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "t_koma", "gateway"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: probe(url, token_file).version is not None or process.poll() is not None, 15, "/health")
        assert process.poll() is None, log_path.read_text()
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
            raise
    assert code == 0, log_path.read_text()
    assert TEST_KEY not in log_path.read_text()


def spawn_chat(*args: str) -> pexpect.spawn:
    """`t-koma chat ARGS` in a 40x140 pseudo-terminal; everything it prints is kept in `child.logfile_read`."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "t_koma", "chat", *args],
        env={**os.environ, "TERM": "xterm-256color"},
        dimensions=(40, 140),
        encoding="utf-8",
        timeout=15,
    )
    child.logfile_read = io.StringIO()
    return child


def quit_chat(child: pexpect.spawn) -> str:
    """`/quit`, then the whole transcript; the chat must exit with status 0 and print no secret."""
    child.send("/quit\r")
    child.expect(pexpect.EOF)
    child.close()
    transcript: str = child.logfile_read.getvalue()
    assert child.exitstatus == 0, transcript[-2000:]
    token = (data_dir() / "gateway.token").read_text().strip()
    assert TEST_KEY not in transcript
    assert token not in transcript
    return transcript


def text_of(message: dict[str, Any]) -> str:
    """The text of an OpenAI-format message whose content is a string or a list of text parts."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")


def choose_openrouter_and_first_model(child: pexpect.spawn) -> None:
    """The spec's boxed provider menu, `2`, then Enter on the first model of the picker."""
    child.expect("╔═+╗")
    child.expect("║ +Select Model Provider +║")
    child.expect("╠═+╣")
    # Greyed (no ANTHROPIC_API_KEY here), naming the variable to set.
    child.expect(rf"║{ESC} +1\. Anthropic \(Claude\) \(set ANTHROPIC_API_KEY\) +{ESC}║")
    child.expect(r"║ +2\. OpenRouter +║")
    child.expect("╚═+╝")
    child.expect("Enter/Esc")
    child.send("2")
    child.expect("OpenRouter models")
    child.expect(rf"1\. Anthropic: Claude Sonnet 4\.5 +{ESC} +1M ctx")  # highlighted: the first row
    child.expect("Enter a custom model ID")
    child.send("\r")
    child.expect("OpenRouter · anthropic/claude-sonnet-4.5")
    child.expect("/help for commands")


def test_autostarted_gateway_menu_streamed_answer_status_bar_and_quit(
    autostarted: Path, port: int, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(text_reply(ANSWER, usage=ANSWER_USAGE, chunk_size=3))
    child = spawn_chat()
    try:
        child.expect("Starting the gateway")  # the spinner: nothing answered /health
        choose_openrouter_and_first_model(child)
        child.expect(r"\$0\.0000")  # the status bar before the first turn
        child.send("what is the answer?\r")
        child.expect(rf"The {ESC}answer{ESC} is forty-two\.")  # streamed, rendered as Markdown
        child.expect(r"tokens 1,234 in / 56 out · \$0\.0042 \(session \$0\.0042\)")
        child.expect(rf"turn ↑1\.2k ↓56{ESC} │ {ESC}session ↑1\.2k ↓56{ESC} │ {ESC}cache –{ESC} │ {ESC}\$0\.0042")
        quit_chat(child)
    finally:
        child.close(force=True)
    [request] = fake.chat_requests
    assert request.body is not None
    assert request.body["stream"] is True
    assert request.body["model"] == "anthropic/claude-sonnet-4.5"  # the first model of the picker
    assert text_of(request.body["messages"][-1]) == "what is the answer?"

    # The gateway outlives the chat, in its own session, logging to the data dir ...
    [pid] = gateway_pids(autostarted)
    assert os.getsid(pid) == pid
    log = (autostarted / "gateway.log").read_text()
    assert f"t-koma gateway 0.1.0 listening on http://127.0.0.1:{port}" in log
    assert TEST_KEY not in log
    # ... and the next chat reuses it and continues the stored session with its totals.
    again = spawn_chat("--no-autostart", "--session", "last", "--model", "openrouter/anthropic/claude-sonnet-4.5")
    try:
        again.expect("/help for commands")
        again.expect(rf"session ↑1\.2k ↓56{ESC} │ {ESC}cache –{ESC} │ {ESC}\$0\.0042")
        quit_chat(again)
    finally:
        again.close(force=True)
    assert gateway_pids(autostarted) == [pid]
    assert len(fake.chat_requests) == 1


def test_tool_call_round_trip_with_approval_through_a_running_gateway(
    gateway: str, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    command = "echo marker-$((6*7)) | tee proof.txt"
    fake.enqueue(
        tool_call_reply([("call_e2e", "run_shell_command", json.dumps({"command": command}))], usage=TOOL_USAGE),
        text_reply("The command printed marker-42.", usage=FINAL_USAGE),
    )
    child = spawn_chat("--no-autostart")
    try:
        choose_openrouter_and_first_model(child)
        child.send("run the marker command\r")
        child.expect("⚙ run_shell_command")
        child.expect(rf"\${ESC}\s*{ESC}echo")  # `$ echo marker-…`, syntax-highlighted
        child.expect(rf"Run run_shell_command\? {ESC}\[y\]es / \[n\]o / \[a\]lways for this session")
        child.send("y")
        child.expect("approved")
        child.expect("marker-42")  # the folded tool output
        child.expect("The command printed marker-42.")
        child.expect(r"tokens 300 in / 30 out · \$0\.0030 \(session \$0\.0030\)")
        child.expect(rf"turn ↑300 ↓30{ESC} │ {ESC}session ↑300 ↓30{ESC} │ {ESC}cache –{ESC} │ {ESC}\$0\.0030")
        quit_chat(child)
    finally:
        child.close(force=True)
    first, second = fake.chat_requests
    assert first.body is not None and second.body is not None
    assert [tool["function"]["name"] for tool in first.body["tools"]] == ["run_shell_command"]
    [call] = second.body["messages"][-2]["tool_calls"]
    assert call["id"] == "call_e2e"
    assert json.loads(call["function"]["arguments"]) == {"command": command}
    assert second.body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_e2e",
        "content": "exit code: 0\nstdout:\nmarker-42",
    }
    assert (Path.cwd() / "proof.txt").read_text() == "marker-42\n"  # ran in the gateway's workspace


def test_reasoning_streams_into_a_folded_thinking_block_through_a_running_gateway(
    gateway: str, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    thought = Thought("\n".join(f"Step {i}: think \x1b]0;pwned\x07harder." for i in range(1, 7)), signature="sig-1")
    usage = Usage(input_tokens=300, output_tokens=1500, reasoning_tokens=1400, cost=0.003)
    fake.enqueue(text_reply("Forty-two.", usage=usage, reasoning=[thought], chunk_size=7))
    child = spawn_chat("--no-autostart", "--model", "openrouter/anthropic/claude-sonnet-4.5")
    try:
        child.expect("/help for commands")
        child.send("/reasoning high\r")
        child.expect("reasoning: high for the next messages")
        child.send("think it through\r")
        child.expect("✻ thinking")
        child.expect(rf"│ Step 3: think ␛\]0;pwned␇harder\.{ESC}\s*{ESC}\s*│ … 3 more lines — /thinking to expand")
        child.expect("Forty-two.")
        child.expect(r"tokens 300 in / 1,500 out · 1,400 reasoning · \$0\.0030")
        child.expect(rf"reasoning high{ESC} │ .*session ↑300 ↓1\.5k · 1\.4k reasoning")
        child.send("/thinking\r")
        child.expect(r"Step 6: think ␛\]0;pwned␇harder\.")
        transcript = quit_chat(child)
    finally:
        child.close(force=True)
    assert "\x1b]0;" not in transcript and "\x07" not in transcript  # shown as ␛]0;…␇, never acted on
    [request] = fake.chat_requests
    assert request.body is not None and request.body["reasoning"] == {"effort": "high"}
