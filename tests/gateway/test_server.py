"""`t-koma gateway` as a real process: one start-up line, the token file, a warning for non-loopback binds, and a
graceful SIGTERM that lets a turn in flight finish before the process exits."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import text_reply, tool_call_reply
from tests.gateway.conftest import BASE_CONFIG, TEST_KEYS, WsClient, write_config

_LINE = re.compile(
    r"^t-koma gateway \S+ listening on (http://\S+) \(WebSocket ws://\S+/ws, OpenAI API \S+/v1, token in (.+)\)$"
)


@asynccontextmanager
async def gateway_process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t_koma", "gateway", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().rstrip("\n")
        match = _LINE.match(line)
        assert match, line
        yield process, match.group(1), match.group(2)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_gateway_process_starts_announces_and_stops_on_sigterm(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG)
    async with gateway_process() as (process, url, token_path):
        assert Path(token_path) == Path(os.environ["T_KOMA_DATA_DIR"]) / "gateway.token"
        assert stat.S_IMODE(Path(token_path).stat().st_mode) == 0o600
        async with aiohttp.ClientSession() as http, http.get(url + "/health") as response:
            assert (await response.json())["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode()
        assert stdout == b""  # the start-up line was the only one
        assert "warning" not in stderr.decode().lower()


async def test_sigterm_lets_a_turn_in_flight_finish(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG)
    fake_openrouter.app.enqueue(
        tool_call_reply([("call_1", "run_shell_command", '{"command": "echo drained"}')]), text_reply("All done.")
    )
    async with gateway_process() as (process, url, token_path):
        token = Path(token_path).read_text().strip()
        ws_url = url.replace("http://", "ws://") + "/ws"
        seen: list[str] = []
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as connection:
            client = WsClient(connection, seen)
            await client.expect("hello")
            await client.send(type="chat", id="inflight", content="run it")
            await client.expect("session_created")
            await client.expect("tool_call")
            await client.expect("tool_approval_request")  # the turn is now in flight, waiting for us
            process.send_signal(signal.SIGTERM)
            # Until the signal is handled a new chat here meets the busy session; then the gateway refuses it.
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                await client.send(type="chat", id="late", content="one more")
                refused = (await client.expect("error"))["error"]["type"]
                if refused == "shutting_down" or asyncio.get_running_loop().time() > deadline:
                    break
                assert refused == "busy"
                await asyncio.sleep(0.02)
            assert refused == "shutting_down"
            await client.send(type="tool_approval", call_id="call_1", decision="approve")
            result = await client.expect("tool_result")
            assert "drained" in result["content"]
            _, response = await client.until("response")
            assert response["content"] == "All done."
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode()
        logged = stderr.decode()
        assert "turn done" in logged
        assert not any(key in logged or key in "".join(seen) for key in TEST_KEYS)
        assert token not in logged


async def test_binding_a_non_loopback_address_warns(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG)
    async with gateway_process("--host", "0.0.0.0") as (process, url, _):
        assert url.startswith("http://0.0.0.0:")
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert "warning: binding 0.0.0.0 exposes the gateway" in stderr.decode()
        assert process.returncode == 0


async def test_gateway_help_lists_host_and_port() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "t_koma", "gateway", "--help", stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"--host" in stdout and b"--port" in stdout
