"""Chat turns over `/ws`: streamed text with usage, tool calls with approval, fallback, concurrency on one and
many connections, cancel, reconnecting to a session, and a client too slow to read."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from t_koma.config.loader import load_config
from t_koma.gateway import ws
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import Thought, Usage, error_reply, stall_reply, text_reply, tool_call_reply
from tests.gateway.conftest import BASE_CONFIG, RunningGateway, WsClient, run_gateway, until, write_config

ECHO_CALL = ("call_1", "run_shell_command", '{"command": "echo hi-from-tool"}')


async def _text_until(client: WsClient, expected: str) -> None:
    text = ""
    while text != expected:
        frame = await client.expect("text_delta")
        text += frame["text"]


async def test_a_chat_streams_deltas_then_a_response_with_usage(gateway: RunningGateway, fake: FakeUpstream) -> None:
    usage = Usage(input_tokens=10, output_tokens=4, cache_read_tokens=3, cache_creation_tokens=2, cost=0.0012)
    fake.app.enqueue(text_reply("Hello, world!", usage=usage, chunk_size=3))
    client = await gateway.connect()
    await client.send(type="chat", id="t1", content="Say hello")
    created = await client.expect("session_created")
    session_id = created["session_id"]
    assert created["id"] == "t1"
    assert created["title"] == "Say hello"
    deltas, response = await client.until("response")
    assert [d["type"] for d in deltas] == ["text_delta"] * 5
    assert "".join(d["text"] for d in deltas) == "Hello, world!"
    assert all(d["id"] == "t1" and d["session_id"] == session_id for d in deltas)
    assert response == {
        "type": "response",
        "id": "t1",
        "session_id": session_id,
        "message_id": response["message_id"],
        "content": "Hello, world!",
        "provider": "openrouter",
        "model": response["model"],
        "stop_reason": response["stop_reason"],
        "done": True,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_read_tokens": 3,
            "cache_creation_tokens": 2,
            "reasoning_tokens": None,
            "cost": 0.0012,
        },
    }
    assert response["message_id"]
    assert "gpt-4o-mini" in response["model"]
    assert fake.app.last_body["model"] == "openai/gpt-4o-mini"
    assert fake.app.last_body["messages"][-1] == {"role": "user", "content": "Say hello"}


async def test_reasoning_streams_as_reasoning_delta_frames_before_the_text(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    usage = Usage(input_tokens=10, output_tokens=40, reasoning_tokens=30, cost=0.002)
    thought = Thought("step one, then step two", signature="sig")
    fake.app.enqueue(text_reply("The answer.", usage=usage, reasoning=[thought], chunk_size=5))
    client = await gateway.connect()
    await client.send(type="chat", id="r1", content="think first")
    session_id = (await client.expect("session_created"))["session_id"]
    frames, response = await client.until("response")
    kinds = [frame["type"] for frame in frames]
    assert kinds == sorted(kinds, key=["reasoning_delta", "text_delta"].index)  # every thought before any text
    thinking = [frame for frame in frames if frame["type"] == "reasoning_delta"]
    assert "".join(frame["text"] for frame in thinking) == "step one, then step two"
    assert all(frame["id"] == "r1" and frame["session_id"] == session_id for frame in thinking)
    assert "".join(frame["text"] for frame in frames if frame["type"] == "text_delta") == "The answer."
    assert response["content"] == "The answer."
    assert (response["usage"]["output_tokens"], response["usage"]["reasoning_tokens"]) == (40, 30)
    await client.send(type="get_history", id="h")
    assistant = (await client.expect("history"))["messages"][-1]
    assert assistant["content"] == "The answer."
    reasoning = [block for block in assistant["blocks"] if block["type"] == "reasoning"]
    assert [(block["text"], block["signature"]) for block in reasoning] == [("step one, then step two", "sig")]


async def test_reasoning_between_tool_steps_streams_in_order(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(
        tool_call_reply([ECHO_CALL], reasoning=[Thought("I should run echo.", signature="s1")]),
        text_reply("It printed hi.", reasoning=[Thought("The tool answered.", signature="s2")]),
    )
    client = await gateway.connect()
    await client.send(type="chat", content="run echo")
    await client.expect("session_created")
    before_call, _ = await client.until("tool_approval_request")
    await client.send(type="tool_approval", call_id="call_1", decision="approve")
    after_call, _ = await client.until("response")
    assert [_joined(before_call, kind) for kind in ("reasoning_delta", "text_delta")] == ["I should run echo.", ""]
    assert [f["type"] for f in before_call if f["type"] != "reasoning_delta"] == ["tool_call"]
    assert after_call[0]["type"] == "tool_result"
    assert _joined(after_call, "reasoning_delta") == "The tool answered."
    assert [f["type"] for f in after_call if f["type"] not in ("reasoning_delta", "text_delta")] == ["tool_result"]
    first_text = next(i for i, f in enumerate(after_call) if f["type"] == "text_delta")
    assert all(f["type"] != "reasoning_delta" for f in after_call[first_text:])


def _joined(frames: list[dict[str, Any]], kind: str) -> str:
    return "".join(frame["text"] for frame in frames if frame["type"] == kind)


@pytest.mark.parametrize(("level", "expected"), [("high", {"effort": "high"}), (8000, {"max_tokens": 8000})])
async def test_a_chat_reasoning_level_reaches_the_upstream_request(
    gateway: RunningGateway, fake: FakeUpstream, level: str | int, expected: dict[str, Any]
) -> None:
    client = await gateway.connect()
    await client.send(type="chat", content="think hard", reasoning=level)
    await client.until("response")
    assert fake.app.last_body["reasoning"] == expected
    await client.send(type="chat", content="and now as configured")
    await client.until("response")
    assert "reasoning" not in fake.app.last_body  # the level was for that turn only


async def test_the_selected_model_answers_the_next_chat(gateway: RunningGateway, fake: FakeUpstream) -> None:
    client = await gateway.connect()
    await client.send(type="select_provider", provider="openrouter", model="moonshotai/kimi-k2.5")
    await client.expect("provider_selected")
    await client.send(type="chat", content="hi")
    await client.until("response")
    assert fake.app.last_body["model"] == "moonshotai/kimi-k2.5"


async def test_a_tool_call_waits_for_approval_then_runs(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(tool_call_reply([ECHO_CALL]), text_reply("The tool said hi."))
    client = await gateway.connect()
    await client.send(type="chat", id=9, content="run echo")
    session_id = (await client.expect("session_created"))["session_id"]
    call = await client.expect("tool_call")
    assert (call["call_id"], call["name"], call["id"], call["session_id"]) == (
        "call_1",
        "run_shell_command",
        9,
        session_id,
    )
    assert '"echo hi-from-tool"' in call["arguments"]
    request = await client.expect("tool_approval_request")
    assert (request["call_id"], request["name"], request["arguments"]) == (
        "call_1",
        "run_shell_command",
        call["arguments"],
    )
    assert len(fake.app.chat_requests) == 1  # nothing runs before the answer
    await client.send(type="tool_approval", call_id="call_1", decision="approve")
    result = await client.expect("tool_result")
    assert result["call_id"] == "call_1"
    assert result["is_error"] is False
    assert "hi-from-tool" in result["content"]
    _, response = await client.until("response")
    assert response["content"] == "The tool said hi."
    tool_message = fake.app.last_body["messages"][-1]
    assert tool_message["role"] == "tool" and "hi-from-tool" in tool_message["content"]


async def test_a_denied_tool_call_returns_an_error_result(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(tool_call_reply([ECHO_CALL]), text_reply("OK, I will not."))
    client = await gateway.connect()
    await client.send(type="chat", content="run echo")
    await client.expect("session_created")
    await client.expect("tool_call")
    await client.expect("tool_approval_request")
    await client.send(type="tool_approval", call_id="call_1", decision="deny")
    result = await client.expect("tool_result")
    assert result["is_error"] is True
    assert "denied" in result["content"]
    await client.until("response")
    await client.send(type="tool_approval", call_id="call_1", decision="approve", id="late")
    late = await client.expect("error")
    assert (late["id"], late["error"]["type"]) == ("late", "not_found")


async def test_a_failing_model_falls_back_to_the_next_and_says_so(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG.replace('default_model = "fast"', 'default_model = ["fast", "backup"]'))
    fake_openrouter.app.enqueue(error_reply(503, "Overloaded"), text_reply("Backup here."))
    async with run_gateway(load_config()) as gateway:
        client = await gateway.connect()
        await client.send(type="chat", content="hi")
        await client.expect("session_created")
        fallback = await client.expect("fallback")
        assert (fallback["from_model"], fallback["to_model"]) == ("fast", "backup")
        assert "Overloaded" in fallback["error"]
        deltas, response = await client.until("response")
        assert "".join(d["text"] for d in deltas) == response["content"] == "Backup here."
        assert "kimi" in response["model"]
    assert [r.body["model"] for r in fake_openrouter.app.chat_requests if r.body] == [
        "openai/gpt-4o-mini",
        "moonshotai/kimi-k2.5",
    ]


async def test_one_connection_runs_turns_in_two_sessions_at_once(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(tool_call_reply([ECHO_CALL]), text_reply("B is done."), text_reply("A is done."))
    client = await gateway.connect()
    await client.send(type="create_session", title="A")
    session_a = (await client.expect("session_created"))["session_id"]
    await client.send(type="create_session", title="B")
    session_b = (await client.expect("session_created"))["session_id"]
    await client.send(type="chat", id="a", session_id=session_a, content="turn A")
    await client.expect("tool_call")
    await client.expect("tool_approval_request")  # A now waits for the user
    await client.send(type="chat", id="b", session_id=session_b, content="turn B")
    _, response_b = await client.until("response")
    assert (response_b["id"], response_b["session_id"], response_b["content"]) == ("b", session_b, "B is done.")
    await client.send(type="tool_approval", call_id="call_1", decision="approve")
    _, response_a = await client.until("response")
    assert (response_a["id"], response_a["session_id"], response_a["content"]) == ("a", session_a, "A is done.")


async def test_many_connections_chat_concurrently(gateway: RunningGateway) -> None:
    clients = [await gateway.connect() for _ in range(8)]
    for number, client in enumerate(clients):
        await client.send(type="chat", id=number, content=f"hello {number}")
    responses = await asyncio.gather(*(client.until("response") for client in clients))
    sessions = {response["session_id"] for _, response in responses}
    assert len(sessions) == 8
    assert [response["id"] for _, response in responses] == list(range(8))
    assert all(response["content"] == "Hello from the fake upstream." for _, response in responses)


async def test_cancel_stops_the_turn_and_keeps_the_partial_text(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(stall_reply(30, partial_text="Partial answer"))
    client = await gateway.connect()
    await client.send(type="chat", id="long", content="take your time")
    session_id = (await client.expect("session_created"))["session_id"]
    await _text_until(client, "Partial answer")
    await client.send(type="chat", id="again", content="and another", session_id=session_id)
    busy = await client.expect("error")
    assert (busy["id"], busy["error"]["type"]) == ("again", "busy")
    await client.send(type="cancel", id="stop")
    response = await client.expect("response")
    assert response["id"] == "long"
    assert response["stop_reason"] == "cancelled"
    assert response["content"] == "Partial answer"
    await client.send(type="get_history")
    last = (await client.expect("history"))["messages"][-1]
    assert (last["role"], last["status"]) == ("assistant", "cancelled")
    assert last["content"].startswith("Partial answer")
    await client.send(type="cancel", id="nothing")
    assert (await client.expect("error"))["error"]["type"] == "not_found"


async def test_reconnecting_continues_the_named_session(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(text_reply("Noted: blue."), text_reply("You said blue."))
    first = await gateway.connect()
    await first.send(type="chat", content="My colour is blue")
    session_id = (await first.expect("session_created"))["session_id"]
    await first.until("response")
    await first.close()
    second = await gateway.connect()
    await second.send(type="switch_session", session_id=session_id, id="sw")
    assert await second.recv() == {
        "type": "session_switched",
        "id": "sw",
        "session_id": session_id,
        "title": "My colour is blue",
    }
    await second.send(type="chat", content="What is my colour?")
    _, response = await second.until("response")
    assert response["session_id"] == session_id
    sent = [(m["role"], m["content"]) for m in fake.app.last_body["messages"] if m["role"] != "system"]
    assert sent == [
        ("user", "My colour is blue"),
        ("assistant", "Noted: blue."),
        ("user", "What is my colour?"),
    ]


async def test_a_chat_in_a_session_deleted_by_another_connection_is_session_not_found(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    client = await gateway.connect()
    await client.send(type="chat", content="first")
    session_id = (await client.expect("session_created"))["session_id"]
    await client.until("response")
    other = await gateway.connect()
    await other.send(type="delete_session", session_id=session_id)
    await other.expect("session_deleted")

    for named in (session_id, None):  # naming the current session, or not naming one
        await client.send(type="chat", id="again", content="second", **({"session_id": named} if named else {}))
        error = await client.expect("error")
        assert (error["id"], error["error"]["type"]) == ("again", "session_not_found")
    assert await gateway.engine.store.list_sessions() == []


async def test_a_turn_outlives_its_connection_and_a_new_one_can_take_it_over(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    fake.app.enqueue(stall_reply(30, partial_text="Still going"))
    first = await gateway.connect()
    await first.send(type="chat", content="long job")
    session_id = (await first.expect("session_created"))["session_id"]
    await _text_until(first, "Still going")
    await first.close()
    assert gateway.state.turns.busy(session_id)
    second = await gateway.connect()
    await second.send(type="switch_session", session_id=session_id)
    await second.expect("session_switched")
    await second.send(type="cancel")
    response = await second.expect("response")
    assert (response["session_id"], response["stop_reason"]) == (session_id, "cancelled")
    await until(lambda: not gateway.state.turns.busy(session_id))


async def test_pending_approvals_are_denied_when_the_client_goes_away(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    fake.app.enqueue(tool_call_reply([ECHO_CALL]), text_reply("Understood."))
    client = await gateway.connect()
    await client.send(type="chat", content="run echo")
    session_id = (await client.expect("session_created"))["session_id"]
    await client.expect("tool_call")
    await client.expect("tool_approval_request")
    await client.close()
    await until(lambda: not gateway.state.turns.busy(session_id))
    messages = await gateway.engine.store.load_messages(session_id)
    results = [block for m in messages for block in m.content if block.type == "tool_result"]
    assert len(results) == 1 and results[0].is_error and "denied" in results[0].content
    assert messages[-1].role == "assistant"


async def test_a_client_that_stops_reading_stalls_nobody_else(
    gateway: RunningGateway, fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws, "SEND_QUEUE_FRAMES", 4)
    monkeypatch.setattr(ws, "SLOW_CLIENT_SECONDS", 0.5)
    big = "x" * 6_000_000  # more than the kernel buffers between the gateway and a reader that reads nothing
    fake.app.enqueue(text_reply(big, chunk_size=4000, keepalive=False))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    slow = await gateway.connect(sock=sock, max_queue=1)
    await slow.send(type="chat", content="flood me")  # and never read again
    await until(lambda: len(gateway.state.turns) == 1)
    other = await gateway.connect()
    await other.send(type="ping", id=1)
    assert await other.recv() == {"type": "pong", "id": 1}
    await other.send(type="chat", content="quick one")
    _, response = await other.until("response")
    assert response["content"] == "Hello from the fake upstream."
    # The slow client is dropped; its turn still completes and is stored in full.
    await until(lambda: len(gateway.state.turns) == 0, timeout=30)
    assert any("stopped reading" in line for line in gateway.seen)
    slow.connection.transport.abort()
    sessions = await gateway.engine.store.list_sessions()
    flood = next(s for s in sessions if s.session.title == "flood me")
    stored = await gateway.engine.store.load_messages(flood.session.id)
    assert stored[-1].role == "assistant" and len(stored[-1].content[0].text) == len(big)  # type: ignore[union-attr]
