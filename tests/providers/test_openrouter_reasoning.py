"""Reasoning through the OpenRouter client against the strict fake OpenRouter on loopback: the `reasoning` request
object, reasoning streamed and not, and a Gemini 3 tool loop that only survives its second step because every
assistant message carries its `reasoning_details` back unchanged (the fake refuses it otherwise, as OpenRouter
does)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest

from t_koma.errors import BadRequestError
from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ProviderResponse,
    ReasoningBlock,
    ReasoningConfig,
    ReasoningDelta,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolCallEvent,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
)
from t_koma.providers.base import ProviderSpec
from t_koma.providers.openrouter import OpenRouterProvider
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.openrouter_wire import completion_body
from tests.fakes.replies import Thought, Usage, raw_reply, text_reply, tool_call_reply

MakeProvider = Callable[..., OpenRouterProvider]
GEMINI = "google/gemini-3-pro-preview"
SHELL = ToolDefinition(
    "run_shell_command", "Run a shell command", {"type": "object", "properties": {"command": {"type": "string"}}}
)


@pytest.fixture
async def make_provider(fake_openrouter: FakeUpstream) -> AsyncIterator[MakeProvider]:
    made: list[OpenRouterProvider] = []

    def make(model: str = GEMINI, **fields: Any) -> OpenRouterProvider:
        spec = ProviderSpec(
            kind="openrouter", model=model, base_url=fake_openrouter.base_url, api_key=TEST_KEY, **fields
        )
        made.append(OpenRouterProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def call(
    provider: OpenRouterProvider, request: ConversationRequest, stream: bool
) -> tuple[ProviderResponse, list[StreamEvent]]:
    if not stream:
        return await provider.complete(request), []
    events = [event async for event in provider.stream(request)]
    assert isinstance(events[-1], Finish)
    return events[-1].response, events


def step(number: int) -> Any:
    """A Gemini-3-like tool step: a signed thought, an encrypted thought signature, then the call."""
    return tool_call_reply(
        [(f"call_{number}", "run_shell_command", f'{{"command": "ls /step{number}"}}')],
        reasoning=[
            Thought(f"Step {number}: I should list the files.", signature=f"c2lnLXN0ZXAt{number}=="),
            Thought(encrypted=f"CiQB+/enc\u00e9{number}=="),
        ],
        chunk_size=3,
        usage=Usage(reasoning_tokens=40 + number),
    )


def results_for(response: ProviderResponse) -> Message:
    return Message("user", tuple(ToolResultBlock(call.id, "a.txt") for call in response.tool_calls))


async def tool_loop(
    provider: OpenRouterProvider, stream: bool, *, keep: Callable[[Message], Message] = lambda message: message
) -> list[ProviderResponse]:
    """Runs the model's tool loop to its end; `keep` is what the history keeps of each assistant message."""
    history = [Message.user("list the files, step by step")]
    responses: list[ProviderResponse] = []
    while True:
        response, _ = await call(provider, ConversationRequest(messages=tuple(history), tools=(SHELL,)), stream)
        responses.append(response)
        if not response.tool_calls:
            return responses
        history += [keep(response.as_message()), results_for(response)]


def without_reasoning(message: Message) -> Message:
    return Message(message.role, tuple(block for block in message.content if not isinstance(block, ReasoningBlock)))


# --- the Gemini 3 tool loop ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_a_gemini_3_tool_loop_survives_because_reasoning_goes_back_unchanged(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    app = fake_openrouter.app
    app.enqueue(step(1), step(2), text_reply("Both listed.", reasoning=[Thought("Done.", signature="ZmluYWw=")]))

    responses = await tool_loop(make_provider(), stream)

    assert [response.text for response in responses] == ["", "", "Both listed."]
    first = responses[0]
    assert [type(block) for block in first.content] == [ReasoningBlock, ReasoningBlock, ToolUseBlock]
    assert (
        first.reasoning[0].text == "Step 1: I should list the files."
        and first.reasoning[1].data == "CiQB+/enc\u00e91=="
    )
    assert first.usage is not None and first.usage.reasoning_tokens == 41
    last_messages = app.chat_requests[-1].body["messages"]  # type: ignore[index]
    sent_back = [message["reasoning_details"] for message in last_messages if message["role"] == "assistant"]
    assert sent_back == [app.produced_reasoning["call_1"], app.produced_reasoning["call_2"]]
    assert len(app.chat_requests) == 3


@pytest.mark.parametrize("stream", [True, False])
async def test_the_strict_fake_refuses_a_loop_whose_reasoning_was_dropped(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    fake_openrouter.app.enqueue(step(1), text_reply("never played"))
    with pytest.raises(BadRequestError) as caught:
        await tool_loop(make_provider(), stream, keep=without_reasoning)
    error = caught.value
    assert error.status == 400 and error.upstream_provider == "Google AI Studio"
    assert error.raw is not None and "missing a thought_signature" in error.raw
    assert "reasoning_details" not in str(fake_openrouter.app.chat_requests[-1].body)


@pytest.mark.parametrize("stream", [True, False])
async def test_the_strict_fake_refuses_altered_reasoning(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    def tampered(message: Message) -> Message:
        return Message("assistant", tuple(_tamper(block) for block in message.content))

    fake_openrouter.app.enqueue(step(1), text_reply("never played"))
    with pytest.raises(BadRequestError):
        await tool_loop(make_provider(), stream, keep=tampered)


def _tamper(block: Any) -> Any:
    return replace(block, data=block.data + "x") if isinstance(block, ReasoningBlock) and block.data else block


async def test_other_models_are_not_strict_about_reasoning(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    fake_openrouter.app.enqueue(step(1), text_reply("fine"))
    responses = await tool_loop(make_provider("google/gemini-2.5-flash"), False, keep=without_reasoning)
    assert responses[-1].text == "fine"


# --- streamed reasoning --------------------------------------------------------------------------------------


async def test_reasoning_streams_first_and_is_never_shown_twice(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    thoughts = [Thought("Weighing the options carefully.", signature="c2ln"), Thought("Second thought.")]
    fake_openrouter.app.enqueue(
        tool_call_reply([("call_1", "noop", "{}")], text="Calling.", reasoning=thoughts, chunk_size=4)
    )
    response, events = await call(make_provider(), ConversationRequest(messages=(Message.user("hi"),)), True)
    kinds = [type(event) for event in events]
    assert kinds.index(TextDelta) > max(i for i, kind in enumerate(kinds) if kind is ReasoningDelta)
    assert kinds.index(ToolCallEvent) > kinds.index(TextDelta)
    readable = "".join(event.text for event in events if isinstance(event, ReasoningDelta))
    assert readable == "Weighing the options carefully.Second thought."
    assert [block.text for block in response.reasoning] == ["Weighing the options carefully.", "Second thought."]
    assert response.reasoning_text == "Weighing the options carefully.\n\nSecond thought."
    assert isinstance(response.content[2], TextBlock) and isinstance(response.content[3], ToolUseBlock)


async def test_a_server_that_ignores_stream_true_still_shows_reasoning_first(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    reply = text_reply("whole", reasoning=[Thought("Thinking whole.", signature="c2ln")])
    body = completion_body(reply, "gen-json", GEMINI)
    fake_openrouter.app.enqueue(raw_reply(orjson.dumps(body), content_type="application/json"))
    _, events = await call(make_provider(), ConversationRequest(messages=(Message.user("hi"),)), True)
    assert events[:2] == [ReasoningDelta("Thinking whole."), TextDelta("whole")]


@pytest.mark.parametrize("stream", [True, False])
async def test_streamed_and_whole_replies_give_the_same_blocks(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    fake_openrouter.app.enqueue(step(7))
    response, _ = await call(make_provider(), ConversationRequest(messages=(Message.user("hi"),)), stream)
    produced = fake_openrouter.app.produced_reasoning["call_7"]
    assert [block.index for block in response.reasoning] == [item["index"] for item in produced]
    assert all(block.model == GEMINI and block.origin == "openrouter" for block in response.reasoning)


@pytest.mark.parametrize("stream", [True, False])
async def test_reasoning_tokens_are_none_when_not_reported(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    fake_openrouter.app.enqueue(text_reply("a", usage=Usage()), text_reply("b", usage=Usage(reasoning_tokens=0)))
    provider = make_provider()
    request = ConversationRequest(messages=(Message.user("hi"),))
    quiet, _ = await call(provider, request, stream)
    zero, _ = await call(provider, request, stream)
    assert quiet.usage is not None and quiet.usage.reasoning_tokens is None
    assert zero.usage is not None and zero.usage.reasoning_tokens == 0


# --- what goes on the wire -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_configured_reasoning_and_the_one_off_override_reach_the_body(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    provider = make_provider(reasoning=ReasoningConfig(effort="high", exclude=False))
    await call(provider, ConversationRequest(messages=(Message.user("hi"),)), stream)
    assert fake_openrouter.app.last_body["reasoning"] == {"effort": "high", "exclude": False}
    override = ConversationRequest(messages=(Message.user("hi"),), reasoning=ReasoningConfig(max_tokens=8000))
    await call(provider, override, stream)
    assert fake_openrouter.app.last_body["reasoning"] == {"max_tokens": 8000, "exclude": False}
    await call(make_provider(), ConversationRequest(messages=(Message.user("hi"),)), stream)
    assert "reasoning" not in fake_openrouter.app.last_body


async def test_foreign_reasoning_is_left_out_of_the_request(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    claude = ReasoningBlock("anthropic", "text", "native", signature="sig-anthropic", model="claude-sonnet-4-5")
    gpt = ReasoningBlock(
        "openrouter", "encrypted", data="gAAAA-gpt5", format="openai-responses-v1", model="openai/gpt-5"
    )
    own = ReasoningBlock(
        "openrouter", "text", "mine", signature="sig-g", format="google-gemini-v1", index=0, model=GEMINI
    )
    call_block = ToolUseBlock("call_x", "run_shell_command", {"command": "ls"})
    history = (
        Message.user("go"),
        Message("assistant", (claude, gpt, call_block)),
        results_for(ProviderResponse("r", GEMINI, (call_block,), None, None)),
        Message("assistant", (own, TextBlock("Listed."))),
        Message.user("again"),
    )
    response, _ = await call(make_provider("google/gemini-2.5-flash"), ConversationRequest(messages=history), False)
    assert response.text
    first, second = (m for m in fake_openrouter.app.last_body["messages"] if m["role"] == "assistant")
    assert "reasoning_details" not in first
    assert second["reasoning_details"] == [
        {"type": "reasoning.text", "text": "mine", "signature": "sig-g", "format": "google-gemini-v1", "index": 0}
    ]


async def test_like_gemini_the_fake_checks_only_the_current_turns_calls(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    # An earlier turn's calls (another model's, say) carry no details: Gemini 3 does not validate them.
    earlier = ToolUseBlock("call_old", "run_shell_command", {"command": "ls"})
    history = (
        Message.user("first"),
        Message("assistant", (earlier,)),
        Message("user", (ToolResultBlock("call_old", "a.txt"),)),
        Message("assistant", (TextBlock("Listed."),)),
        Message.user("second"),
    )
    response, _ = await call(make_provider(), ConversationRequest(messages=history), False)
    assert response.text
    mid_loop = (*history, Message("assistant", (earlier,)), Message("user", (ToolResultBlock("call_old", "b"),)))
    with pytest.raises(BadRequestError):  # the same call inside the current turn has no signature to check
        await call(make_provider(), ConversationRequest(messages=mid_loop), False)
