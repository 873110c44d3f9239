"""The WebSocket connection against a real server playing the gateway: token, id matching, turns, reconnects."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from t_koma.client.connection import GatewayConnection
from t_koma.client.frames import (
    ErrorFrame,
    Frame,
    GatewayError,
    GatewayUnavailableError,
    Response,
    TextDelta,
    TurnEvent,
    Usage,
)
from t_koma.client.verify import ForeignListenerError
from tests.client.fake_gateway import TOKEN, FakeGateway
from tests.client.foreign_listener import Answer, foreign_listener, like_t_koma, wrong_proof
from tests.client.ptk import until
from tests.fakes.server import ServerThread, serve

FAST = (0.02, 0.05, 0.1)


@pytest.fixture
def gateway() -> Iterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    with serve(fake) as server:
        yield fake, f"ws://127.0.0.1:{server.port}/ws"


def connection(url: str, token: str | None = TOKEN, timeout: float = 5) -> GatewayConnection:
    return GatewayConnection(url, lambda: token, reconnect_delays=FAST, request_timeout=timeout)


async def collect(conn: GatewayConnection, content: str) -> list[TurnEvent]:
    return [event async for event in conn.turn(content)]


async def test_hello_tells_the_selection_and_which_providers_have_keys(gateway: tuple[FakeGateway, str]) -> None:
    conn = connection(gateway[1])
    await conn.connect()
    try:
        assert conn.state == "connected"
        assert conn.hello is not None
        assert conn.hello.model == "anthropic/claude-sonnet-4.5"
        assert [(p.name, p.configured, p.key_env) for p in conn.hello.providers] == [
            ("anthropic", False, "ANTHROPIC_API_KEY"),
            ("openrouter", True, "OPENROUTER_API_KEY"),
        ]
    finally:
        await conn.close()
    assert conn.state == "disconnected"


async def test_a_gateway_that_cannot_prove_our_token_gets_nothing(gateway: tuple[FakeGateway, str]) -> None:
    fake, url = gateway
    with pytest.raises(ForeignListenerError, match="gave a wrong proof"):
        await connection(url, token="wrong-token-0123456789").connect()
    assert fake.connections == 0  # no WebSocket handshake, so no token


@pytest.mark.parametrize(("answer", "problem"), [(like_t_koma, "gave no proof"), (wrong_proof, "gave a wrong proof")])
async def test_a_foreign_listener_on_the_port_never_sees_the_token_or_the_prompt(answer: Answer, problem: str) -> None:
    with foreign_listener(answer) as listener:
        conn = connection(f"ws://127.0.0.1:{listener.port}/ws")
        with pytest.raises(GatewayError) as refused:
            await conn.connect()
        with pytest.raises(GatewayError):
            await collect(conn, "my secret prompt")
        await conn.close()
    assert listener.received, "the listener was asked for its proof"
    assert not listener.saw(TOKEN) and not listener.saw("my secret prompt")
    assert isinstance(refused.value, ForeignListenerError)
    message = refused.value.message
    assert f"port {listener.port} on 127.0.0.1 is not your t-koma gateway" in message and problem in message
    assert "[gateway] port" in message and "401" not in message and "\n" not in message
    assert f"pid {os.getpid()} " in message  # this test process holds the port, found through /proc


async def test_a_reconnect_to_a_foreign_listener_sends_nothing_and_says_so_once() -> None:
    fake = FakeGateway()
    first = ServerThread(fake)
    port = first.port
    first.start()
    notices: list[Frame] = []
    conn = connection(f"ws://127.0.0.1:{port}/ws", timeout=0.5)
    conn.on_notice = notices.append
    await conn.connect()
    try:
        first.stop()
        await until(lambda: conn.state == "reconnecting")
        with foreign_listener(port=port) as listener:
            await until(lambda: len(listener.received) >= 3)
            assert not listener.saw(TOKEN)
        assert len(notices) == 1 and isinstance(notices[0], ErrorFrame)
        assert notices[0].type == "foreign_listener" and f"port {port}" in notices[0].message
    finally:
        await conn.close()


async def test_no_gateway_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GatewayUnavailableError, match="cannot connect to the gateway"):
        await connection(f"ws://127.0.0.1:{port}/ws").connect()


async def test_replies_are_matched_by_the_echoed_id(gateway: tuple[FakeGateway, str]) -> None:
    fake, url = gateway
    conn = connection(url)
    await conn.connect()
    try:
        top = await conn.list_models("openrouter")
        everything = await conn.list_models("openrouter", everything=True)
        pong = await conn.ping()
        assert len(top.models) == 20 and len(everything.models) == 30 and pong is not None
        ids = [frame["id"] for frame in fake.received]
        assert len(set(ids)) == 3
    finally:
        await conn.close()


async def test_an_error_reply_raises_with_the_gateway_type_and_suggestions(gateway: tuple[FakeGateway, str]) -> None:
    conn = connection(gateway[1])
    await conn.connect()
    try:
        with pytest.raises(GatewayError) as raised:
            await conn.select_provider("openrouter", "nope/nope")
        assert raised.value.type == "invalid_model"
        assert raised.value.suggestions == ("vendor1/model-1",)
        assert conn.selection is None
        selected = await conn.select_provider("openrouter", "vendor3/model-3")
        assert (selected.provider, selected.model) == conn.selection == ("openrouter", "vendor3/model-3")
    finally:
        await conn.close()


async def test_a_turn_streams_deltas_and_ends_with_the_response(gateway: tuple[FakeGateway, str]) -> None:
    fake, url = gateway
    conn = connection(url)
    await conn.connect()
    try:
        events = await collect(conn, "hello")
        assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello ", "**wor", "ld**", "!"]
        response = events[-1]
        assert isinstance(response, Response)
        assert response.content == "Hello **world**!"
        assert response.usage == Usage(1200, 34, 1000, 0, cost=0.0012)
        assert conn.session_id == response.session_id is not None
        await collect(conn, "again")
        assert fake.of_type("chat")[1]["session_id"] == conn.session_id
    finally:
        await conn.close()


async def test_a_failed_turn_ends_with_an_error_event(gateway: tuple[FakeGateway, str]) -> None:
    conn = connection(gateway[1])
    await conn.connect()
    try:
        events = await collect(conn, "fail")
        assert events == [ErrorFrame("Rate limited", "rate_limited")]
    finally:
        await conn.close()


async def test_cancel_stops_a_running_turn(gateway: tuple[FakeGateway, str]) -> None:
    fake, url = gateway
    conn = connection(url)
    await conn.connect()
    try:
        events: list[TurnEvent] = []
        async for event in conn.turn("slow"):
            events.append(event)
            if isinstance(event, TextDelta):
                await conn.cancel()
        assert isinstance(events[-1], Response) and events[-1].cancelled
        assert events[-1].content == "Working on it"
        assert len(fake.of_type("cancel")) == 1
    finally:
        await conn.close()


async def test_a_dropped_connection_ends_the_turn_then_reconnects_to_the_same_session_and_model(
    gateway: tuple[FakeGateway, str],
) -> None:
    fake, url = gateway
    states: list[str] = []
    conn = connection(url)
    conn.on_state = states.append
    await conn.connect()
    try:
        await conn.select_provider("openrouter", "vendor2/model-2")
        await collect(conn, "hello")
        session = conn.session_id
        events = await collect(conn, "drop")
        assert isinstance(events[-1], ErrorFrame) and events[-1].type == "gateway_unavailable"
        await until(lambda: len(fake.of_type("select_provider")) == 2)
        assert fake.of_type("switch_session")[-1]["session_id"] == session
        assert fake.of_type("select_provider")[-1]["model"] == "vendor2/model-2"
        assert states[-2:] == ["reconnecting", "connected"] and conn.reconnects == 1
        events = await collect(conn, "after")
        assert isinstance(events[-1], Response) and events[-1].session_id == session
    finally:
        await conn.close()


async def test_reconnects_after_a_gateway_restart_on_the_same_port() -> None:
    fake = FakeGateway()
    first = ServerThread(fake)
    port = first.port
    first.start()
    conn = connection(f"ws://127.0.0.1:{port}/ws", timeout=0.5)
    await conn.connect()
    try:
        await collect(conn, "hello")
        session = conn.session_id
        first.stop()
        await until(lambda: conn.state == "reconnecting")
        with pytest.raises(GatewayUnavailableError):
            await conn.ping()  # not connected: requests wait, then give up
        second = _server_on(fake, port)
        try:
            await until(lambda: conn.state == "connected", timeout=10)
            await until(lambda: bool(fake.of_type("switch_session")))
            assert fake.of_type("switch_session")[-1]["session_id"] == session
            assert await conn.ping() is not None
        finally:
            await conn.close()
            second.stop()
    finally:
        await conn.close()


def _server_on(app: FakeGateway, port: int) -> ServerThread:
    server = ServerThread(app)
    server.sock.close()
    server.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.sock.bind(("127.0.0.1", port))
    server.port = port
    server.start()
    return server
