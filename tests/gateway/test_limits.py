"""Security limits of a running gateway: credentials in a `base_url` never leave it, `/v1` refuses `n` other
than 1 and oversized bodies, and a WebSocket client that stops reading is dropped before its queue grows past
its byte budget."""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from t_koma.config.loader import load_config
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import text_reply
from tests.gateway.conftest import BASE_CONFIG, RunningGateway, run_gateway, write_config

URL_PASSWORD = "hunter2-url-password"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _post(gateway: RunningGateway, body: Any, **headers: str) -> tuple[int, str]:
    async with gateway.http() as http:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with http.post(
            "/v1/chat/completions", data=data, headers={**gateway.auth_headers, **headers}
        ) as response:
            return response.status, await response.text()


@contextmanager
def _log_file(gateway: RunningGateway) -> Iterator[io.StringIO]:
    """A log handler filtered as `serve` filters the one writing gateway.log."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(gateway.state.logs.scrubber)
    logger = logging.getLogger("t_koma")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


async def test_base_url_credentials_never_reach_errors_frames_or_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", f"http://admin:{URL_PASSWORD}@127.0.0.1:{_closed_port()}/api/v1")
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    write_config(BASE_CONFIG)
    async with run_gateway(load_config(warn=lambda _: None)) as gateway:
        status, text = await _post(gateway, {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 502, text
        assert "connection failed (http://127.0.0.1:" in text, text
        client = await gateway.connect()
        await client.send(type="chat", id="c1", content="hi")
        _, failed = await client.until("error")
        await client.close()
        assert "connection failed (http://127.0.0.1:" in failed["error"]["message"], failed
        with _log_file(gateway) as log_file:
            logging.getLogger("t_koma.test").warning("retrying http://admin:%s@example.test/v1", URL_PASSWORD)
        log_lines = [*gateway.state.logs.backlog(), log_file.getvalue()]
        assert any("connection failed" in line for line in log_lines)
        assert all("http://***@example.test/v1" in line for line in log_lines[-2:]), log_lines[-2:]
        shown = [text for text in (*gateway.seen, *log_lines) if "t_koma.test" not in text and "retrying" not in text]
        leaked = [text for text in (*shown, *log_lines) if URL_PASSWORD in text or "admin:" in text]
        assert not leaked, leaked[:3]


@pytest.mark.parametrize("n", [3, 0, "2", True])
async def test_n_other_than_one_is_refused_with_400(gateway: RunningGateway, fake: FakeUpstream, n: Any) -> None:
    status, text = await _post(gateway, {"model": "fast", "n": n, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400, text
    error = orjson.loads(text)["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "n")
    assert "'n' must be 1" in error["message"]
    assert fake.app.chat_requests == []


async def test_n_of_one_is_served(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(text_reply("one"))
    status, text = await _post(gateway, {"model": "fast", "n": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, text
    assert len(orjson.loads(text)["choices"]) == 1
