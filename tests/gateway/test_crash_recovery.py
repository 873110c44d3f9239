"""`kill -9` of a real `t-koma gateway` process in the middle of a turn — while a reply streams from a stalled
upstream, and while a tool command runs — then a restart on the same data directory: the session's history is
intact up to the last committed step, the interrupted turn is marked as such, the SQLite file passes
`PRAGMA integrity_check`, and a WebSocket client goes on in the same session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.engine.support import query
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import stall_reply, text_reply, tool_call_reply
from tests.gateway.conftest import WsClient, until, write_config

CONFIG = """
default_model = "fast"

[models.fast]
provider = "openrouter"
model = "openai/gpt-4o-mini"

[tools.shell]
approval = "auto"
workspace = "{workspace}"
"""
INTERRUPTED_NOTE = "[turn interrupted: the previous process stopped before it finished]"
_LISTENING = re.compile(r"listening on (http://\S+)")


class GatewayProcess:
    """`t-koma gateway --port 0` as a child process; `url` comes from its start-up line on stdout."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.url = ""
        self._lines: queue.Queue[str] = queue.Queue()
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "t_koma", "gateway", "--host", "127.0.0.1", "--port", "0"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    async def started(self, timeout: float = 30.0) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.url:
            assert self.process.poll() is None, f"the gateway exited: {self.log.read_text()[-2000:]}"
            try:
                line = await asyncio.to_thread(self._lines.get, True, max(0.05, deadline - loop.time()))
            except queue.Empty:
                raise AssertionError("the gateway did not announce itself in time") from None
            match = _LISTENING.search(line)
            if match:
                self.url = match.group(1)
        return self.url

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL
        self._release()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._release()

    def _release(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Gateways:
    """Starts gateway processes on one data dir, connects real WebSocket clients, stops everything at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data_dir = Path(os.environ["T_KOMA_DATA_DIR"])
        self.processes: list[GatewayProcess] = []
        self.clients: list[WsClient] = []
        self.seen: list[str] = []

    @property
    def database(self) -> Path:
        return self.data_dir / "koma.sqlite3"

    async def start(self) -> GatewayProcess:
        gateway = GatewayProcess(self.tmp / f"gateway-{len(self.processes)}.log")
        self.processes.append(gateway)
        await gateway.started()
        return gateway

    async def connect(self, gateway: GatewayProcess) -> WsClient:
        token = (self.data_dir / "gateway.token").read_text().strip()
        connection = await connect(
            gateway.url.replace("http://", "ws://") + "/ws", additional_headers={"Authorization": f"Bearer {token}"}
        )
        client = WsClient(connection, self.seen)
        self.clients.append(client)
        await client.expect("hello")
        return client

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        for gateway in self.processes:
            gateway.stop()
        logs = "".join(gateway.log.read_text(errors="replace") for gateway in self.processes)
        assert TEST_KEY not in logs + "".join(self.seen)


@pytest.fixture
async def gateways(tmp_path: Path, fake_openrouter: FakeUpstream) -> AsyncIterator[Gateways]:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    write_config(CONFIG.format(workspace=workspace))
    running = Gateways(tmp_path)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def reap_tool_processes(tmp_path: Path) -> Iterator[Path]:
    """The pid file a tool command writes; the process it names (orphaned by the kill) is ended afterwards."""
    pid_file = tmp_path / "workspace" / "tool.pid"
    yield pid_file
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)


async def chat(client: WsClient, content: str, session_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "chat", "content": content}
    if session_id is not None:
        frame["session_id"] = session_id
    await client.send(**frame)
    _, end = await client.until("response", "error")
    assert end["type"] == "response", end
    return end


async def history(client: WsClient, session_id: str) -> list[dict[str, Any]]:
    await client.send(type="get_history", session_id=session_id)
    messages: list[dict[str, Any]] = (await client.expect("history"))["messages"]
    return messages


def turn_statuses(database: Path) -> list[str]:
    return [status for (status,) in query(database, "SELECT status FROM turns ORDER BY started")]


async def restart_and_check(gateways: Gateways, session_id: str) -> tuple[WsClient, list[dict[str, Any]]]:
    """The file is sound with nobody holding it; a new gateway marks the turn interrupted; history is shown."""
    assert query(gateways.database, "PRAGMA integrity_check") == [("ok",)]
    assert turn_statuses(gateways.database)[-1] == "running"  # the dead process never finished it
    gateway = await gateways.start()
    client = await gateways.connect(gateway)
    await client.send(type="switch_session", session_id=session_id)
    await client.expect("session_switched")
    messages = await history(client, session_id)
    assert turn_statuses(gateways.database)[-1] == "interrupted"
    return client, messages


async def test_kill_9_while_a_reply_streams_then_restart_and_go_on(
    gateways: Gateways, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(text_reply("First answer, committed."), stall_reply(120, partial_text="Half of the second"))
    gateway = await gateways.start()
    client = await gateways.connect(gateway)
    first = await chat(client, "First question")
    session_id = first["session_id"]
    await client.send(type="chat", content="Second question", session_id=session_id)
    text = ""
    while text != "Half of the second":  # the reply is streaming, and stalls here
        text += (await client.expect("text_delta"))["text"]
    # Within about a second of streaming, the text so far is kept, even while the upstream stays silent.
    await until(lambda: bool(query(gateways.database, "SELECT text FROM partial_steps")))

    gateway.kill9()

    client, messages = await restart_and_check(gateways, session_id)
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "First question", None),
        ("assistant", "First answer, committed.", None),
        ("user", "Second question", None),
        ("assistant", f"Half of the second\n\n{INTERRUPTED_NOTE}", "interrupted"),
    ]
    assert query(gateways.database, "SELECT count(*) FROM partial_steps") == [(0,)]
    fake.enqueue(text_reply("Back again."))
    third = await chat(client, "Third question", session_id)
    assert (third["session_id"], third["content"]) == (session_id, "Back again.")
    sent = json.dumps(fake.last_body["messages"])
    assert sent.count("Half of the second") == 1  # what the user saw stays in the conversation, once
    assert all(sent.count(q) == 1 for q in ("First question", "Second question", "Third question"))
    assert turn_statuses(gateways.database) == ["done", "interrupted", "done"]
    assert query(gateways.database, "PRAGMA integrity_check") == [("ok",)]


async def test_kill_9_while_a_tool_runs_then_restart_and_go_on(
    gateways: Gateways, fake_openrouter: FakeUpstream, reap_tool_processes: Path
) -> None:
    pid_file = reap_tool_processes
    command = f"echo $$ > {pid_file}; exec sleep 120"
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([("call_1", "run_shell_command", json.dumps({"command": command}))], text="On it."))
    gateway = await gateways.start()
    client = await gateways.connect(gateway)
    await client.send(type="chat", content="Wait for two minutes")
    session_id = (await client.expect("session_created"))["session_id"]
    _, call = await client.until("tool_call")  # after the text deltas of "On it."
    assert call["call_id"] == "call_1"
    await until(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit())  # the command runs

    gateway.kill9()

    client, messages = await restart_and_check(gateways, session_id)
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", None),
        ("assistant", None),
        ("assistant", "interrupted"),
    ]
    committed = messages[1]
    assert committed["content"] == "On it."
    assert [b["type"] for b in committed["blocks"]] == ["text", "tool_use"]
    assert committed["blocks"][1]["id"] == "call_1"
    assert messages[2]["content"] == INTERRUPTED_NOTE
    fake.enqueue(text_reply("It was interrupted; shall I retry?"))
    answer = await chat(client, "What happened?", session_id)
    assert answer["content"] == "It was interrupted; shall I retry?"
    sent = fake.last_body["messages"]
    calls_at = next(i for i, m in enumerate(sent) if m["role"] == "assistant" and m.get("tool_calls"))
    assert sent[calls_at + 1]["role"] == "tool" and sent[calls_at + 1]["tool_call_id"] == "call_1"
    assert turn_statuses(gateways.database) == ["interrupted", "done"]
    assert query(gateways.database, "PRAGMA integrity_check") == [("ok",)]
