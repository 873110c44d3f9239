"""A real gateway for the tests: the app under `GatewayServer` (uvicorn, httptools, websockets-sansio) on a free
loopback port in the test's own event loop, the real engine and SQLite store, and the fake upstreams.

Everything the gateway sends — WebSocket frames, HTTP bodies and headers — and every log record is recorded in
`gateway.seen`; at teardown the recording is scanned for the test keys and the gateway token: none may appear."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from t_koma.config.loader import load_config
from t_koma.config.model import Config
from t_koma.engine.engine import Engine
from t_koma.gateway.app import close_app, create_app, gateway_state
from t_koma.gateway.server import GatewayServer, uvicorn_config
from t_koma.gateway.state import GatewayState
from tests.fakes.anthropic import TEST_KEY as ANTHROPIC_TEST_KEY
from tests.fakes.openrouter import TEST_KEY as OPENROUTER_TEST_KEY
from tests.fakes.openrouter import FakeUpstream

TEST_KEYS = (OPENROUTER_TEST_KEY, ANTHROPIC_TEST_KEY)

BASE_CONFIG = """
default_model = "fast"

[models.fast]
provider = "openrouter"
model = "openai/gpt-4o-mini"

[models.backup]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"

[tools.shell]
approval = "ask"

[logging]
level = "info"
"""


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds (fails the test after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class _Recorder(logging.Handler):
    def __init__(self, seen: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.seen.append(text)


class RecordingApp:
    """Wraps the gateway app and records every byte it sends: HTTP bodies (streamed or not), headers, WebSocket
    frames and denial responses."""

    def __init__(self, app: Any, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording_send(message: Any) -> None:
            for key in ("body", "text", "bytes"):
                value = message.get(key)
                if value:
                    self.seen.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
            for _, value in message.get("headers", ()):
                self.seen.append(value.decode("latin-1"))
            await send(message)

        await self.app(scope, receive, recording_send)


class WsClient:
    """A `websockets` client that decodes frames and records them."""

    def __init__(self, connection: ClientConnection, seen: list[str]) -> None:
        self.connection = connection
        self.seen = seen

    async def send(self, **frame: Any) -> None:
        await self.connection.send(orjson.dumps(frame).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.connection.send(data)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        text = raw if isinstance(raw, str) else raw.decode()
        self.seen.append(text)
        frame: dict[str, Any] = orjson.loads(text)
        return frame

    async def expect(self, frame_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame, which must be of `frame_type`."""
        frame = await self.recv(timeout)
        assert frame["type"] == frame_type, frame
        return frame

    async def until(self, *frame_types: str, timeout: float = 10.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Frames up to (not including) the first of `frame_types`, and that frame."""
        before: list[dict[str, Any]] = []
        while True:
            frame = await self.recv(timeout)
            if frame["type"] in frame_types:
                return before, frame
            before.append(frame)

    async def close(self) -> None:
        await self.connection.close()


@dataclass
class RunningGateway:
    config: Config
    engine: Engine
    state: GatewayState
    url: str
    token: str
    announced: list[str]
    seen: list[str] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def connect(self, path: str = "/ws", *, hello: bool = True, **options: Any) -> WsClient:
        options.setdefault("additional_headers", self.auth_headers)
        connection = await connect(self.url.replace("http://", "ws://") + path, **options)
        client = WsClient(connection, self.seen)
        if hello and path.split("?")[0] == "/ws":
            await client.expect("hello")
        return client

    @asynccontextmanager
    async def http(self) -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession(self.url) as session:
            yield session


@asynccontextmanager
async def run_gateway(config: Config) -> AsyncIterator[RunningGateway]:
    engine = await Engine.open(config)
    app = create_app(config, engine)
    state = gateway_state(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    announced: list[str] = []
    gateway = RunningGateway(config, engine, state, f"http://127.0.0.1:{port}", state.auth.secret, announced)
    recording = RecordingApp(app, gateway.seen)
    server = GatewayServer(uvicorn_config(recording, config, "127.0.0.1", port), state, announced.append)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    recorder = _Recorder(gateway.seen)
    for name in ("t_koma", "uvicorn"):
        logging.getLogger(name).addHandler(recorder)
    try:
        await until(lambda: server.started or task.done())
        assert server.started, "the gateway did not start"
        yield gateway
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        for name in ("t_koma", "uvicorn"):
            logging.getLogger(name).removeHandler(recorder)
        close_app(app)
        await engine.close()
        sock.close()
    gateway.seen.extend(state.logs.backlog())
    leaked = [text for text in gateway.seen for secret in (*TEST_KEYS, gateway.token) if secret in text]
    assert not leaked, f"a secret leaked: {leaked[:3]}"


def write_config(text: str) -> Path:
    path = Path(os.environ["T_KOMA_CONFIG_DIR"]) / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
async def gateway(fake_openrouter: FakeUpstream) -> AsyncIterator[RunningGateway]:
    """The gateway in front of the fake OpenRouter, with BASE_CONFIG."""
    write_config(BASE_CONFIG)
    async with run_gateway(load_config()) as running:
        yield running


@pytest.fixture
def fake(fake_openrouter: FakeUpstream) -> FakeUpstream:
    return fake_openrouter
