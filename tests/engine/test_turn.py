"""`Engine.run_turn` against the fake OpenRouter on loopback: the tool loop really runs commands and feeds
their output back, every step is stored in the real SQLite file, approvals and limits apply."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from t_koma.engine.approval import DENIED_BY_POLICY, DENIED_BY_USER, NOBODY_TO_ASK
from t_koma.engine.engine import Engine
from t_koma.engine.events import (
    ApprovalDecision,
    ApprovalNeeded,
    StepUsage,
    TextDeltaEvent,
    ToolCallRequest,
    ToolCallStarted,
    ToolResultEvent,
    TurnDone,
    TurnRequest,
)
from t_koma.engine.turn import CANCELLED_MARKER
from t_koma.errors import SessionNotFoundError
from t_koma.messages import TextBlock, ToolResultBlock, ToolUseBlock
from tests.engine.support import Events, open_engine, query, wait_for
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import StallReply, text_reply, tool_call_reply


def shell(call_id: str, command: str) -> tuple[str, str, str]:
    return (call_id, "run_shell_command", json.dumps({"command": command}))


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


@pytest.fixture
async def engine(fake_openrouter: FakeUpstream) -> AsyncIterator[Engine]:
    opened = await open_engine()
    yield opened
    await opened.close()


async def test_a_tool_round_trip_runs_the_command_and_feeds_its_output_back(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([shell("call_1", "echo round-trip-$((6*7))")], text="Checking."))
    fake.enqueue(text_reply("It printed round-trip-42."))
    events = Events()

    result = await engine.run_turn(TurnRequest("What does it print?"), events)

    assert len(fake.chat_requests) == 2
    [tool_message] = tool_messages(fake.chat_requests[1].body or {})
    assert tool_message["tool_call_id"] == "call_1"
    assert "round-trip-42" in tool_message["content"]
    first_user_texts = [m for m in fake.chat_requests[0].body["messages"] if m["role"] == "user"]  # type: ignore[index]
    assert len(first_user_texts) == 1  # the user message is sent once
    assert result.text == "It printed round-trip-42."
    assert result.steps == 2
    [record] = result.tool_calls
    assert (record.id, record.name, record.is_error) == ("call_1", "run_shell_command", False)
    assert record.result is not None and "round-trip-42" in record.result
    assert (result.usage.input_tokens, result.usage.output_tokens) == (24, 14)
    assert events.text == "Checking.It printed round-trip-42."
    kinds = [type(e).__name__ for e in events.events if not isinstance(e, TextDeltaEvent)]
    assert kinds == ["StepUsage", "ToolCallStarted", "ToolResultEvent", "StepUsage", "TurnDone"]


async def test_every_step_is_stored_with_its_usage(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "echo stored")]), text_reply("Done."))

    result = await engine.run_turn(TurnRequest("Store this."))

    stored = await engine.store.load_messages(result.session_id)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[0].content == (TextBlock("Store this."),)
    assert isinstance(stored[1].content[0], ToolUseBlock)
    assert isinstance(stored[2].content[0], ToolResultBlock) and "stored" in stored[2].content[0].content
    assert stored[3].content == (TextBlock("Done."),) and stored[3].model == "test/alpha"
    assert result.message_id == stored[3].id
    database = engine.config.database_path
    usage_rows = query(database, "SELECT message_id, provider, input_tokens FROM usage_log ORDER BY id")
    assert usage_rows == [(stored[1].id, "openrouter", 12), (stored[3].id, "openrouter", 12)]
    assert query(database, "SELECT status, stop_reason FROM turns") == [("done", result.stop_reason)]
    session = await engine.store.get_session(result.session_id)
    assert session is not None and session.title == "Store this."


async def test_parallel_tool_calls_each_get_their_own_result_in_order(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([shell("c1", "echo first"), shell("c2", "echo second >&2; exit 3")]))
    fake.enqueue(text_reply("Both ran."))

    result = await engine.run_turn(TurnRequest("Run both."))

    messages = tool_messages(fake.chat_requests[1].body or {})
    assert [m["tool_call_id"] for m in messages] == ["c1", "c2"]
    assert "first" in messages[0]["content"]
    assert "second" in messages[1]["content"] and "3" in messages[1]["content"]
    assert [(c.id, c.is_error) for c in result.tool_calls] == [("c1", False), ("c2", True)]


async def test_the_child_environment_has_no_provider_keys(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([shell("c1", "echo key=[$OPENROUTER_API_KEY]; env")]), text_reply("ok"))

    result = await engine.run_turn(TurnRequest("Show the key."))

    output = result.tool_calls[0].result or ""
    assert "key=[]" in output
    assert TEST_KEY not in output
    assert TEST_KEY not in str(fake.chat_requests[1].body)


async def test_invalid_json_arguments_come_back_as_an_error_result(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([("c1", "run_shell_command", '{"command": "echo hi"')]), text_reply("Sorry."))

    result = await engine.run_turn(TurnRequest("Try."))

    [record] = result.tool_calls
    assert record.is_error is True
    assert record.result is not None and "not a valid JSON object" in record.result
    assert record.arguments == '{"command": "echo hi"'
    [message] = tool_messages(fake.chat_requests[1].body or {})
    assert "not a valid JSON object" in message["content"]


async def test_an_unknown_tool_gets_an_error_result(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([("c1", "launch_rocket", "{}")]), text_reply("Oh."))

    result = await engine.run_turn(TurnRequest("Launch."))

    assert result.tool_calls[0].is_error is True
    assert "no tool named 'launch_rocket'" in (result.tool_calls[0].result or "")
    assert "run_shell_command" in (result.tool_calls[0].result or "")


async def test_max_steps_ends_the_turn_with_the_pending_calls_unexecuted(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([shell("c1", "touch one")]), tool_call_reply([shell("c2", "touch two")]))

    result = await engine.run_turn(TurnRequest("Keep going.", max_steps=2))

    assert (result.stop_reason, result.steps) == ("max_steps", 2)
    assert [(c.id, c.result is not None, c.is_error) for c in result.tool_calls] == [
        ("c1", True, False),
        ("c2", False, None),
    ]
    assert Path("one").exists() and not Path("two").exists()
    assert len(fake.chat_requests) == 2
    stored = await engine.store.load_messages(result.session_id)
    last = stored[-1].content[0]
    assert isinstance(last, ToolResultBlock) and last.tool_use_id == "c2" and "step limit" in last.content


async def test_no_tools_sends_no_tool_definitions(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    result = await engine.run_turn(TurnRequest("Just talk.", tools_enabled=False))

    body = fake_openrouter.app.last_body
    assert "tools" not in body
    assert "run_shell_command" not in str(body["messages"][0]["content"])
    assert result.text == "Hello from the fake upstream."


async def test_without_streaming_the_text_arrives_as_one_delta(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    events = Events()

    result = await engine.run_turn(TurnRequest("Hi", stream=False), events)

    assert fake_openrouter.app.last_body.get("stream") in (None, False)
    assert [e.text for e in events.of(TextDeltaEvent)] == [result.text]


async def test_a_session_continues_with_its_history(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake = fake_openrouter.app
    fake.enqueue(text_reply("Nice to meet you, Koma."), text_reply("Your name is Koma."))
    first = await engine.run_turn(TurnRequest("My name is Koma."))

    second = await engine.run_turn(TurnRequest("What is my name?", session_id=first.session_id))

    assert second.session_id == first.session_id
    roles_and_text = [(m["role"], str(m["content"])) for m in fake.last_body["messages"][1:]]
    assert [role for role, _ in roles_and_text] == ["user", "assistant", "user"]
    assert "My name is Koma." in roles_and_text[0][1] and "What is my name?" in roles_and_text[2][1]


async def test_an_unknown_session_is_an_error_and_stores_nothing(engine: Engine) -> None:
    with pytest.raises(SessionNotFoundError):
        await engine.run_turn(TurnRequest("Hello?", session_id="sess_missing"))

    assert await engine.store.list_sessions() == []


# --- approval --------------------------------------------------------------------------------------------


class Approver:
    def __init__(self, *decisions: ApprovalDecision) -> None:
        self.decisions = list(decisions)
        self.asked: list[ToolCallRequest] = []

    async def __call__(self, call: ToolCallRequest) -> ApprovalDecision:
        self.asked.append(call)
        return self.decisions.pop(0)


@pytest.fixture
async def asking_engine(fake_openrouter: FakeUpstream) -> AsyncIterator[Engine]:
    opened = await open_engine(approval="ask")
    yield opened
    await opened.close()


async def test_a_denied_call_is_not_run_and_the_model_is_told(
    asking_engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "touch denied")]), text_reply("Understood."))
    approver, events = Approver("deny"), Events()

    result = await asking_engine.run_turn(TurnRequest("Make a file.", approval=approver), events)

    assert not Path("denied").exists()
    assert [call.arguments for call in approver.asked] == ['{"command": "touch denied"}']
    assert (result.tool_calls[0].result, result.tool_calls[0].is_error) == (DENIED_BY_USER, True)
    assert len(events.of(ApprovalNeeded)) == 1
    assert tool_messages(fake_openrouter.app.last_body)[0]["content"].endswith(DENIED_BY_USER)


async def test_always_approves_the_tool_for_the_rest_of_the_session(
    asking_engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(tool_call_reply([shell("c1", "touch a1")]), tool_call_reply([shell("c2", "touch a2")]))
    fake.enqueue(text_reply("Two files."), tool_call_reply([shell("c3", "touch a3")]), text_reply("Three."))
    approver = Approver("always")

    first = await asking_engine.run_turn(TurnRequest("Make files.", approval=approver))
    await asking_engine.run_turn(TurnRequest("One more.", session_id=first.session_id, approval=approver))

    assert len(approver.asked) == 1
    assert all(Path(name).exists() for name in ("a1", "a2", "a3"))


async def test_without_anyone_to_ask_calls_are_denied_with_how_to_allow_them(
    asking_engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "touch nobody")]), text_reply("I could not."))

    result = await asking_engine.run_turn(TurnRequest("Make a file."))

    assert not Path("nobody").exists()
    assert result.tool_calls[0].result == NOBODY_TO_ASK
    assert "--yes" in NOBODY_TO_ASK and 'approval = "auto"' in NOBODY_TO_ASK


async def test_auto_approve_runs_calls_without_asking(asking_engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "touch approved")]), text_reply("Made."))
    approver = Approver()

    await asking_engine.run_turn(TurnRequest("Make a file.", approval=approver, auto_approve=True))

    assert Path("approved").exists() and approver.asked == []


async def test_the_deny_policy_wins_even_over_auto_approve(fake_openrouter: FakeUpstream) -> None:
    engine = await open_engine(approval="deny")
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "touch never")]), text_reply("Blocked."))
    try:
        result = await engine.run_turn(TurnRequest("Make a file.", auto_approve=True))
    finally:
        await engine.close()

    assert not Path("never").exists()
    assert result.tool_calls[0].result == DENIED_BY_POLICY


# --- cancellation ----------------------------------------------------------------------------------------


async def test_a_cancelled_turn_keeps_its_partial_text_marked_cancelled(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(StallReply(seconds=30, partial_text="partial words"))
    events = Events()
    task = asyncio.create_task(engine.run_turn(TurnRequest("Tell me a long story."), events))
    await wait_for(lambda: events.text == "partial words")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [session] = await engine.store.list_sessions()
    stored = await engine.store.load_messages(session.session.id)
    assert [(m.role, m.status) for m in stored] == [("user", None), ("assistant", "cancelled")]
    assert stored[1].content == (TextBlock(f"partial words\n\n{CANCELLED_MARKER}"),)
    assert query(engine.config.database_path, "SELECT status FROM turns") == [("cancelled",)]
    assert not events.of(TurnDone)


async def test_cancelling_during_a_tool_call_closes_its_call_in_history(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([shell("c1", "sleep 30"), shell("c2", "echo never")]))
    events = Events()
    task = asyncio.create_task(engine.run_turn(TurnRequest("Wait."), events))
    await wait_for(lambda: bool(events.of(ToolCallStarted)))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [session] = await engine.store.list_sessions()
    stored = await engine.store.load_messages(session.session.id)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    results = stored[2].content
    assert [r.tool_use_id for r in results if isinstance(r, ToolResultBlock)] == ["c1", "c2"]
    assert stored[3].status == "cancelled"
    assert not events.of(ToolResultEvent) or all(e.call_id != "c2" for e in events.of(ToolResultEvent))
    assert events.of(StepUsage)
