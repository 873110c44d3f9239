"""Property-based fuzzing of the WebSocket protocol against a real gateway (uvicorn on a loopback port, the real
engine, SQLite and the fake upstream): random frames shaped like the protocol's, random JSON, mutated valid
frames, binary frames, frames over and just under the size limit, floods, and clients that vanish mid-frame.
Whatever arrives, the connection answers the next `ping` (or, for an oversized frame, is closed with 1009),
nothing crashes or hangs, and afterwards `/health` and a chat still work. Bounded for CI
(`T_KOMA_FUZZ_SCALE=10` runs ten times the examples)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from itertools import count
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from t_koma.config.loader import load_config
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import DEFAULT_TEXT
from tests.gateway.conftest import BASE_CONFIG, RunningGateway, WsClient, run_gateway, write_config

SCALE = max(1, int(os.environ.get("T_KOMA_FUZZ_SCALE", "1")))
MAX_FRAME = 64 * 1024
TYPES = [
    "select_provider",
    "list_available_models",
    "list_providers",
    "chat",
    "tool_approval",
    "cancel",
    "create_session",
    "list_sessions",
    "switch_session",
    "delete_session",
    "get_history",
    "ping",
]
VALID_FRAMES: list[dict[str, Any]] = [
    {"type": "select_provider", "provider": "openrouter", "model": "openai/gpt-4o-mini", "id": 1},
    {"type": "list_available_models", "provider": "openrouter"},
    {"type": "list_providers", "id": "p"},
    {"type": "chat", "content": "hello", "id": "c"},
    {"type": "chat", "content": "think", "id": "r", "reasoning": "low"},
    {"type": "tool_approval", "call_id": "call_1", "decision": "approve"},
    {"type": "cancel", "session_id": "sess_x"},
    {"type": "create_session", "title": "notes"},
    {"type": "list_sessions"},
    {"type": "switch_session", "session_id": "sess_x"},
    {"type": "delete_session", "session_id": "sess_x"},
    {"type": "get_history", "session_id": "sess_x"},
    {"type": "ping", "id": 3},
]
_probes = count()


def fuzz(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
field_values = json_values | st.sampled_from(
    ["openrouter", "anthropic", "OpenRouter", "approve", "always", "", "high", "off", "8000"]
)
shaped_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | st.text(max_size=20) | json_values},
    optional={
        name: field_values
        for name in ("id", "content", "session_id", "provider", "model", "call_id", "decision", "title", "reasoning")
    },
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> str | bytes:
    """A valid frame with a field changed, removed or added, or its serialised text cut or corrupted."""
    frame = dict(draw(st.sampled_from(VALID_FRAMES)))
    op = draw(st.sampled_from(["change", "remove", "add", "truncate", "corrupt", "binary"]))
    if op == "change":
        frame[draw(st.sampled_from(sorted(frame)))] = draw(json_values)
    elif op == "remove":
        frame.pop(draw(st.sampled_from(sorted(frame))))
    elif op == "add":
        frame[draw(st.text(max_size=10))] = draw(json_values)
    text = orjson.dumps(frame).decode()
    if op == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if op == "corrupt":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(min_size=1, max_size=5)) + text[at:]
    if op == "binary":
        return text.encode()
    return text


@pytest.fixture
async def gateway(fake_openrouter: FakeUpstream) -> AsyncIterator[RunningGateway]:
    write_config(BASE_CONFIG + f"\n[gateway]\nmax_frame_bytes = {MAX_FRAME}\n")
    async with run_gateway(load_config()) as running:
        yield running
        await still_works(running)
    assert not any("Traceback" in line or "internal_error" in line for line in running.seen)


async def probe(client: WsClient, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Send a `ping` and read up to its `pong`: the connection is open and answering. Returns the frames
    that came before it (answers to the fuzzed frames, turn frames)."""
    probe_id = f"probe-{next(_probes)}-7f3a"
    await client.send(type="ping", id=probe_id)
    before = []
    while True:
        frame = await client.recv(timeout)
        if frame == {"type": "pong", "id": probe_id}:
            return before
        assert set(frame) >= {"type"}, frame
        before.append(frame)


async def still_works(gateway: RunningGateway) -> None:
    async with gateway.http() as http, http.get("/health") as response:
        assert response.status == 200 and (await response.json())["status"] == "ok"
    client = await gateway.connect()
    await client.send(type="chat", id="after", content="Are you still there?")
    _, end = await client.until("response", "error", timeout=20)
    assert end["type"] == "response" and end["content"] == DEFAULT_TEXT, end
    await client.close()


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[WsClient]:
    connected = await gateway.connect()
    yield connected
    await connected.close()


@fuzz(80)
@given(frame=shaped_frames)
async def test_frames_shaped_like_the_protocol_never_break_the_connection(
    client: WsClient, frame: dict[str, Any]
) -> None:
    await client.send_raw(orjson.dumps(frame).decode())
    answers = await probe(client)
    errors = [a for a in answers if a["type"] == "error"]
    assert all(set(e["error"]) >= {"message", "type"} for e in errors)


@fuzz(60)
@given(frame=mutated_frames())
async def test_mutated_frames_never_break_the_connection(client: WsClient, frame: str | bytes) -> None:
    await client.send_raw(frame)
    await probe(client)


@fuzz(40)
@given(raw=st.binary(max_size=2048) | st.text(max_size=2048))
async def test_random_text_and_binary_frames_get_an_error_and_the_connection_stays_open(
    client: WsClient, raw: str | bytes
) -> None:
    await client.send_raw(raw)
    answers = await probe(client)
    assert len(answers) == 1, answers  # one answer (almost always an error) per frame


async def test_a_frame_just_under_the_limit_is_answered(client: WsClient) -> None:
    payload = {"type": "not_a_type", "id": "big", "padding": "x" * (MAX_FRAME - 200)}
    await client.send_raw(orjson.dumps(payload))  # binary, too
    [answer] = await probe(client)
    assert (answer["type"], answer["id"], answer["error"]["type"]) == ("error", "big", "unknown_type")


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_a_huge_frame_closes_only_its_connection_with_1009(
    gateway: RunningGateway, client: WsClient, binary: bool
) -> None:
    bystander = await gateway.connect()
    huge = "x" * (4 * MAX_FRAME)
    await client.send_raw(huge.encode() if binary else huge)

    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await client.recv()

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await probe(bystander)
    await bystander.close()


async def test_a_flood_of_frames_is_answered_in_order(client: WsClient) -> None:
    frames = 3000
    for number in range(frames):
        await client.send_raw(f'{{"type": "ping", "id": {number}}}' if number % 3 else "{not json")
    answers = [await client.recv() for _ in range(frames)]
    pongs = [frame["id"] for frame in answers if frame["type"] == "pong"]
    assert pongs == [n for n in range(frames) if n % 3]
    assert sum(frame["type"] == "error" for frame in answers) == len(range(0, frames, 3))
    await probe(client)


async def test_many_clients_that_vanish_mid_conversation_leave_the_gateway_well(gateway: RunningGateway) -> None:
    async def hit_and_run(number: int) -> None:
        client = await gateway.connect()
        for _ in range(10):
            await client.send_raw('{"type": "list_sessions"}')
        await client.send_raw('{"type": "chat", "content": "bye"')  # cut JSON
        if number % 2:
            client.connection.transport.abort()  # no close handshake at all
        else:
            await client.close()

    await asyncio.gather(*(hit_and_run(number) for number in range(100)))
    survivor = await gateway.connect()
    await probe(survivor)
    await survivor.close()
