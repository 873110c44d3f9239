"""Secure by default: the token file, the token on every route but `/health`, the Origin allow-list, and
`/logs` (lines for authenticated clients, never keys or message bodies unless asked for)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import InvalidStatus

from t_koma import __version__
from t_koma.client.connection import GatewayConnection
from t_koma.client.verify import ForeignListenerError
from t_koma.config.loader import load_config
from t_koma.errors import ConfigError
from t_koma.gateway.auth import load_or_create_token
from t_koma.handshake import health_proof
from tests.fakes.openrouter import FakeUpstream
from tests.gateway.conftest import BASE_CONFIG, RunningGateway, WsClient, run_gateway, write_config


async def test_health_needs_no_token(gateway: RunningGateway) -> None:
    async with gateway.http() as http, http.get("/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "version": __version__}


async def test_health_proves_the_gateway_knows_the_token_without_revealing_it(gateway: RunningGateway) -> None:
    async with gateway.http() as http, http.get("/health", params={"challenge": "nonce-42"}) as response:
        assert response.status == 200
        body = await response.json()
    assert body == {"status": "ok", "version": __version__, "proof": health_proof(gateway.token, "nonce-42")}
    gateway.seen.append(orjson.dumps(body).decode())  # the token itself is never in it


@pytest.mark.parametrize("challenge", ["", "x" * 257])
async def test_health_refuses_an_empty_or_oversized_challenge(gateway: RunningGateway, challenge: str) -> None:
    async with gateway.http() as http, http.get("/health", params={"challenge": challenge}) as response:
        assert response.status == 400
        body = await response.json()
    assert "challenge must be 1 to 256 characters" in body["error"]["message"]


async def test_the_client_accepts_the_real_gateway_and_connects_with_its_token(gateway: RunningGateway) -> None:
    conn = GatewayConnection(gateway.ws_url, lambda: gateway.token)
    await conn.connect()
    try:
        assert conn.state == "connected" and conn.hello is not None
        assert await conn.ping() is not None
    finally:
        await conn.close()


async def test_the_client_refuses_the_real_gateway_of_another_token(gateway: RunningGateway) -> None:
    conn = GatewayConnection(gateway.ws_url, lambda: "the-token-of-another-data-dir-0123")
    with pytest.raises(ForeignListenerError, match="gave a wrong proof"):
        await conn.connect()
    await conn.close()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0000000000", "Basic abc"])
async def test_v1_refuses_a_missing_or_wrong_token(gateway: RunningGateway, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with gateway.http() as http:
        async with http.get("/v1/models", headers=headers) as response:
            assert response.status == 401
            body = await response.json()
        async with http.post("/v1/chat/completions", headers=headers, json={"model": "fast"}) as response:
            assert response.status == 401
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "invalid_token"
    gateway.seen.append(orjson.dumps(body).decode())


@pytest.mark.parametrize("path", ["/ws", "/logs"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token-000000"}])
async def test_websocket_upgrades_without_the_token_are_refused_with_401(
    gateway: RunningGateway, path: str, headers: dict[str, str]
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await gateway.connect(path, additional_headers=headers)
    assert refused.value.response.status_code == 401
    body = orjson.loads(refused.value.response.body or b"{}")
    assert body["error"]["type"] == "authentication_error"


async def test_browsers_can_pass_the_token_as_query_parameter_or_subprotocol(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")  # uvicorn logs the path, query string included
    by_query = await gateway.connect(f"/ws?token={gateway.token}", additional_headers={})
    assert by_query.connection.subprotocol is None
    by_subprotocol = await gateway.connect(
        "/ws", additional_headers={}, subprotocols=["t-koma", f"t-koma.token.{gateway.token}"]
    )
    assert by_subprotocol.connection.subprotocol == "t-koma"
    for client in (by_query, by_subprotocol):
        await client.send(type="ping")
        assert await client.recv() == {"type": "pong"}
    assert any("/ws?token=***" in line for line in gateway.seen)  # and the harness finds the token nowhere


@pytest.mark.parametrize("path", ["/ws", "/logs"])
async def test_a_foreign_origin_is_refused_with_403(gateway: RunningGateway, path: str) -> None:
    headers = {**gateway.auth_headers, "Origin": "https://evil.example"}
    with pytest.raises(InvalidStatus) as refused:
        await gateway.connect(path, additional_headers=headers)
    assert refused.value.response.status_code == 403
    async with gateway.http() as http, http.get("/v1/models", headers=headers) as response:
        assert response.status == 403


async def test_an_allowed_origin_is_accepted(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG + '\n[gateway]\nallowed_origins = ["http://localhost:5173"]\n')
    async with run_gateway(load_config()) as gateway:
        headers = {**gateway.auth_headers, "Origin": "http://localhost:5173"}
        client = await gateway.connect(additional_headers=headers)
        await client.send(type="ping")
        assert await client.recv() == {"type": "pong"}
        with pytest.raises(InvalidStatus) as refused:
            await gateway.connect(additional_headers={**gateway.auth_headers, "Origin": "http://localhost:8080"})
        assert refused.value.response.status_code == 403


def test_the_token_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "new" / "gateway.token"
    token = load_or_create_token(path)
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_token(path) == token


def test_a_token_file_readable_by_others_is_replaced_by_a_new_token(tmp_path: Path) -> None:
    path = tmp_path / "gateway.token"
    path.write_text("an-existing-token-value-123\n")
    os.chmod(path, 0o644)

    token = load_or_create_token(path)

    assert token != "an-existing-token-value-123"  # others could have read it: it is no secret any more
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token


def test_a_private_token_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "gateway.token"
    path.write_text("an-existing-token-value-123\n")
    os.chmod(path, 0o600)

    assert load_or_create_token(path) == "an-existing-token-value-123"


async def _log_lines_until(client: WsClient, needle: str) -> list[dict[str, object]]:
    lines = []
    while True:
        line = await client.recv()
        lines.append(line)
        if needle in str(line.get("message", "")):
            return lines


async def test_logs_stream_json_lines_without_keys_or_bodies(gateway: RunningGateway) -> None:
    logs = await gateway.connect("/logs")
    chat = await gateway.connect()
    await chat.send(type="chat", content="my secret plan is pancakes")
    await chat.until("response")
    lines = await _log_lines_until(logs, "turn done")
    assert all(line["type"] == "log" and {"ts", "level", "logger", "message"} <= set(line) for line in lines)
    assert any("turn start" in str(line["message"]) for line in lines)
    text = orjson.dumps(lines).decode()
    assert "pancakes" not in text
    assert gateway.token not in text
    assert "sk-or-test" not in text


async def test_logs_include_bodies_only_when_configured(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG.replace('level = "info"', 'level = "info"\nlog_bodies = true'))
    async with run_gateway(load_config()) as gateway:
        logs = await gateway.connect("/logs")
        chat = await gateway.connect()
        await chat.send(type="chat", content="my secret plan is pancakes")
        await chat.until("response")
        lines = await _log_lines_until(logs, "turn done")
        assert "pancakes" in orjson.dumps(lines).decode()


async def test_log_lines_scrub_keys_even_if_code_logged_one(gateway: RunningGateway) -> None:
    hub = gateway.state.logs
    record = logging.LogRecord("t_koma.x", logging.INFO, __file__, 1, "key=%s token=%s", None, None)
    record.args = (os.environ["OPENROUTER_API_KEY"], gateway.token)
    line = hub.format_line(record)
    assert os.environ["OPENROUTER_API_KEY"] not in line and gateway.token not in line
    assert "key=*** token=***" in line


@pytest.mark.parametrize("content", [b"short\n", b"", b"\xff\xfe not ascii token value\n"])
def test_a_broken_token_file_is_a_one_line_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "gateway.token"
    path.write_bytes(content)
    path.chmod(0o600)

    with pytest.raises(ConfigError) as caught:
        load_or_create_token(path)

    assert str(path) in caught.value.message and "delete it" in caught.value.message
