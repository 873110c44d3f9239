"""Reasoning models through whole agent turns, against the strict fakes: the fake OpenRouter answers Gemini 3's
400 when a tool call comes back without its `reasoning_details`, the fake Anthropic answers the thinking 400 when
a tool loop's assistant message does not start with its signed thinking block. Reasoning streams as events, is
stored with its message, is counted, goes back to the models that can verify it, and never fails a request
to a model that cannot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from t_koma.engine.engine import Engine
from t_koma.engine.events import ReasoningDeltaEvent, TextDeltaEvent, ToolCallStarted, TurnRequest
from t_koma.errors import ReasoningExhaustedError
from t_koma.messages import ReasoningBlock, ReasoningConfig
from tests.engine.support import Events, no_sleep, open_engine
from tests.fakes.anthropic import FakeUpstream as AnthropicUpstream
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import Thought, Usage, error_reply, text_reply, tool_call_reply

REASONING_MODELS = """
[models.gemini]
provider = "openrouter"
model = "google/gemini-3-pro-preview"
reasoning = { effort = "high" }

[models.thinker]
provider = "anthropic"
model = "claude-sonnet-4-5"
reasoning = { max_tokens = 2048 }
"""


def shell(call_id: str, command: str) -> tuple[str, str, str]:
    return (call_id, "run_shell_command", json.dumps({"command": command}))


def assistant_messages(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [m for m in (body or {})["messages"] if m["role"] == "assistant"]


@pytest.fixture
async def engine(fake_openrouter: FakeUpstream, fake_anthropic: AnthropicUpstream) -> AsyncIterator[Engine]:
    opened = await open_engine(extra=REASONING_MODELS, sleep=no_sleep)
    yield opened
    await opened.close()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_a_gemini_tool_loop_sends_its_reasoning_back_and_keeps_it(
    engine: Engine, fake_openrouter: FakeUpstream, stream: bool
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(
        tool_call_reply(
            [shell("call_1", "echo listed")],
            reasoning=[Thought("I should list the files first.", signature="sig-gemini-1")],
            usage=Usage(input_tokens=10, output_tokens=20, reasoning_tokens=15),
        ),
        text_reply(
            "It printed listed.",
            reasoning=[Thought("The output says listed.", signature="sig-gemini-2")],
            usage=Usage(input_tokens=30, output_tokens=8, reasoning_tokens=5),
        ),
    )
    events = Events()

    result = await engine.run_turn(TurnRequest("What is here?", chain=("gemini",), stream=stream), events)

    assert result.text == "It printed listed."
    assert result.reasoning == "I should list the files first.\n\nThe output says listed."
    assert result.usage.reasoning_tokens == 20
    first, second = (request.body or {} for request in fake.chat_requests)
    assert first["reasoning"] == {"effort": "high"}
    [loop_message] = assistant_messages(second)
    assert [detail.get("signature") for detail in loop_message["reasoning_details"]] == ["sig-gemini-1"]
    thoughts = "".join(event.text for event in events.of(ReasoningDeltaEvent))
    assert thoughts == "I should list the files first.The output says listed."
    kinds = [type(event) for event in events.events]
    assert kinds.index(ReasoningDeltaEvent) < kinds.index(ToolCallStarted) < kinds.index(TextDeltaEvent)
    stored = await engine.store.load_messages(result.session_id)
    first_step = stored[1].content[0]
    assert isinstance(first_step, ReasoningBlock)
    assert (first_step.origin, first_step.signature) == ("openrouter", "sig-gemini-1")


async def test_later_turns_carry_earlier_reasoning_and_a_one_off_override(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    fake.enqueue(
        tool_call_reply([shell("call_1", "true")], reasoning=[Thought("Run it.", signature="sig-a")]),
        text_reply("Ran.", reasoning=[Thought("Done.", signature="sig-b")]),
        text_reply("Again."),
    )
    first = await engine.run_turn(TurnRequest("Run.", chain=("gemini",)))

    await engine.run_turn(
        TurnRequest("Once more.", chain=("gemini",), session_id=first.session_id, reasoning=ReasoningConfig("low"))
    )

    last = fake.chat_requests[-1].body or {}
    assert last["reasoning"] == {"effort": "low"}
    signatures = [[d.get("signature") for d in m.get("reasoning_details", [])] for m in assistant_messages(last)]
    assert signatures == [["sig-a"], ["sig-b"]]


async def test_claude_thinking_survives_a_switch_to_gemini_and_back(
    engine: Engine, fake_openrouter: FakeUpstream, fake_anthropic: AnthropicUpstream
) -> None:
    fake_anthropic.app.enqueue(
        tool_call_reply([shell("toolu_1", "echo one")], reasoning=[Thought("Claude plans.", signature="sig-claude-1")]),
        text_reply("Claude done.", reasoning=[Thought("Claude checks.", signature="sig-claude-2")]),
    )
    fake_openrouter.app.enqueue(
        tool_call_reply([shell("call_g", "echo two")], reasoning=[Thought("Gemini plans.", signature="sig-g-1")]),
        text_reply("Gemini done."),
    )
    fake_anthropic.app.enqueue(
        tool_call_reply([shell("toolu_2", "echo three")], reasoning=[Thought("Claude again.", signature="sig-c-3")]),
        text_reply("Claude back."),
    )

    first = await engine.run_turn(TurnRequest("One.", chain=("thinker",)))
    session = first.session_id
    second = await engine.run_turn(TurnRequest("Two.", chain=("gemini",), session_id=session))
    third = await engine.run_turn(TurnRequest("Three.", chain=("thinker",), session_id=session))

    assert (first.text, second.text, third.text) == ("Claude done.", "Gemini done.", "Claude back.")
    to_gemini = json.dumps(fake_openrouter.app.chat_requests[-1].body)
    assert "sig-claude" not in to_gemini  # Anthropic signatures never leave for another provider
    last_to_claude = fake_anthropic.app.message_requests[-1].body or {}
    assert last_to_claude["thinking"]["type"] == "enabled"
    sent = json.dumps(last_to_claude["messages"])
    assert "sig-c-3" in sent and "sig-g-1" not in sent


async def test_a_fallback_in_the_middle_of_a_tool_loop_turns_thinking_off_instead_of_failing(
    engine: Engine, fake_openrouter: FakeUpstream, fake_anthropic: AnthropicUpstream
) -> None:
    fake_openrouter.app.enqueue(
        tool_call_reply([shell("call_g", "echo mid")], reasoning=[Thought("Gemini starts.", signature="sig-g")]),
        error_reply(529, "Overloaded"),
    )
    fake_anthropic.app.enqueue(text_reply("Claude finished the loop."))

    result = await engine.run_turn(TurnRequest("Loop.", chain=("gemini", "thinker")))

    assert result.text == "Claude finished the loop."
    [request] = fake_anthropic.app.message_requests
    assert "thinking" not in (request.body or {})  # the loop's tool call carries no Claude thinking to resume from


async def test_reasoning_that_uses_the_whole_budget_is_an_error_not_an_empty_answer(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake_openrouter.app.enqueue(
        text_reply(
            "",
            stop="max_tokens",
            reasoning=[Thought("Thinking and thinking …")],
            usage=Usage(input_tokens=5, output_tokens=4096, reasoning_tokens=4096),
        )
    )

    with pytest.raises(ReasoningExhaustedError) as caught:
        await engine.run_turn(TurnRequest("Hard question.", chain=("gemini",)))

    assert caught.value.type == "reasoning_exhausted"
    assert "reasoning used all 4096 output tokens" in caught.value.message
    assert "raise max_tokens or lower reasoning effort" in caught.value.message


async def test_a_length_stop_with_an_answer_is_not_an_error(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    fake_openrouter.app.enqueue(
        text_reply("Partial but real.", stop="max_tokens", reasoning=[Thought("Brief.")]),
    )

    result = await engine.run_turn(TurnRequest("Q.", chain=("gemini",)))

    assert (result.text, result.stop_reason) == ("Partial but real.", "length")
