"""Claude extended thinking through the native Anthropic client, against the fake Messages API that is as strict as
the real one: the `thinking` request field and what it forbids, thinking and redacted_thinking blocks parsed
(streamed, split at every byte, and not), sent back first and unmodified in a tool loop, left out where the API
would refuse them, and `thinking_tokens` usage."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from t_koma.errors import BadRequestError
from t_koma.messages import (
    ConversationRequest,
    Message,
    ProviderResponse,
    ReasoningBlock,
    ReasoningConfig,
    ReasoningDelta,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolCallEvent,
    ToolResultBlock,
    ToolUseBlock,
)
from t_koma.providers.anthropic import AnthropicProvider
from t_koma.providers.anthropic_stream import StreamAssembler, events_for_response
from t_koma.providers.anthropic_wire import build_body
from t_koma.providers.sse import SSEDecoder
from tests.fakes.anthropic import TEST_KEY, FakeUpstream, _Renderer
from tests.fakes.replies import TextReply, Thought, Usage, text_reply, tool_call_reply
from tests.providers.anthropic_support import MODEL, SHELL_TOOL, ask, collect, final, make_spec, sent_body

THINKING = ReasoningConfig(max_tokens=2048)
REDACTED = ReasoningBlock("anthropic", "encrypted", data="r", format="anthropic-claude-v1", model=MODEL)
OPAQUE = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj/+Y1z6Q=="


@pytest.fixture
async def thinker(fake_anthropic: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    """Claude with `reasoning = { max_tokens = 2048 }` configured."""
    client = AnthropicProvider(make_spec(fake_anthropic, reasoning=THINKING))
    yield client
    await client.aclose()


async def call(provider: AnthropicProvider, request: ConversationRequest, *, streamed: bool) -> ProviderResponse:
    return final(await collect(provider, request)) if streamed else await provider.complete(request)


def conversation(*messages: Message, **fields: Any) -> ConversationRequest:
    return ConversationRequest(messages=messages, tools=(SHELL_TOOL,), **fields)


def results_for(response: ProviderResponse) -> Message:
    return Message("user", tuple(ToolResultBlock(call.id, f"output of {call.id}") for call in response.tool_calls))


def shell(call_id: str, command: str = "ls") -> tuple[str, str, str]:
    return (call_id, "run_shell_command", f'{{"command": "{command}"}}')


def claude_thought(text: str, model: str = MODEL) -> ReasoningBlock:
    return ReasoningBlock("anthropic", "text", text, signature="sig", format="anthropic-claude-v1", model=model)


def loop_history(first: ReasoningBlock | None) -> list[Message]:
    """A conversation inside a tool loop whose assistant turn starts with `first` (or holds no reasoning)."""
    call = ToolUseBlock("toolu_other", "run_shell_command", {"command": "ls"})
    assistant = (first, call) if first is not None else (call,)
    return [Message.user("list"), Message("assistant", assistant), Message("user", (ToolResultBlock(call.id, "a"),))]


async def post_raw(upstream: FakeUpstream, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{upstream.url}/v1/messages", json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


# --- the request ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "override", "spec_max", "budget", "max_tokens"),
    [
        (ReasoningConfig(effort="high"), None, None, 16384, 16384 + 4096),
        (ReasoningConfig(effort="minimal"), None, 8000, 1024, 8000),
        (ReasoningConfig(max_tokens=8000), None, 32000, 8000, 32000),
        (ReasoningConfig(max_tokens=8000), None, 8000, 8000, 8000 + 4096),
        (ReasoningConfig(max_tokens=300), None, None, 1024, 4096),
        (ReasoningConfig(enabled=True), None, None, 8192, 8192 + 4096),
        (None, ReasoningConfig(effort="low"), None, 4096, 4096 + 4096),
        (ReasoningConfig(effort="high"), ReasoningConfig(max_tokens=5000), None, 5000, 9096),
    ],
)
async def test_effort_or_budget_becomes_thinking_and_max_tokens_is_raised_above_it(
    fake_anthropic: FakeUpstream,
    configured: ReasoningConfig | None,
    override: ReasoningConfig | None,
    spec_max: int | None,
    budget: int,
    max_tokens: int,
) -> None:
    provider = AnthropicProvider(make_spec(fake_anthropic, reasoning=configured, max_tokens=spec_max))
    try:
        await provider.complete(ask(reasoning=override))
    finally:
        await provider.aclose()

    body = sent_body(fake_anthropic)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == max_tokens


@pytest.mark.parametrize(
    ("configured", "override"),
    [
        (None, None),
        (ReasoningConfig(effort="none"), None),
        (ReasoningConfig(enabled=False, max_tokens=4000), None),
        (ReasoningConfig(effort="high"), ReasoningConfig(effort="none")),
        (ReasoningConfig(max_tokens=4000), ReasoningConfig(enabled=False)),
    ],
)
async def test_no_thinking_unless_reasoning_is_on(
    fake_anthropic: FakeUpstream, configured: ReasoningConfig | None, override: ReasoningConfig | None
) -> None:
    provider = AnthropicProvider(make_spec(fake_anthropic, reasoning=configured))
    try:
        await provider.complete(ask(reasoning=override, extra={"temperature": 0.3}))
    finally:
        await provider.aclose()

    body = sent_body(fake_anthropic)
    assert "thinking" not in body
    assert (body["max_tokens"], body["temperature"]) == (4096, 0.3)


async def test_forced_tool_choice_and_sampling_are_dropped_with_one_warning(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    sampling = {"temperature": 0.2, "top_k": 5, "top_p": 0.5}
    with caplog.at_level(logging.WARNING, logger="t_koma.providers.anthropic_wire"):
        await thinker.complete(conversation(Message.user("go"), tool_choice="required", extra=sampling))
        await thinker.complete(conversation(Message.user("go"), tool_choice="run_shell_command"))
        await thinker.complete(conversation(Message.user("go"), tool_choice="none"))

    first, second, third = (sent_body(fake_anthropic, n) for n in range(3))
    assert first["tool_choice"] == second["tool_choice"] == {"type": "auto"}
    assert third["tool_choice"] == {"type": "none"}
    assert not {"temperature", "top_k", "top_p"} & set(first)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "temperature, top_k, top_p, forced tool_choice" in warnings[0]
    assert "forced tool_choice" in warnings[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "`max_tokens` must be greater"),
        ({"tool_choice": {"type": "any"}}, "tool_choice forces tool use"),
        ({"tool_choice": {"type": "tool", "name": "run_shell_command"}}, "tool_choice forces tool use"),
        ({"temperature": 0.5}, "`temperature` may only be set to 1"),
        ({"top_k": 5}, "`top_k` must be unset"),
    ],
)
async def test_the_fake_refuses_what_the_api_refuses_with_thinking(
    fake_anthropic: FakeUpstream, change: dict[str, Any], message: str
) -> None:
    fine = build_body(MODEL, conversation(Message.user("go")), stream=False, reasoning=THINKING)
    assert (await post_raw(fake_anthropic, fine))[0] == 200

    status, error = await post_raw(fake_anthropic, fine | change)

    assert status == 400 and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


# --- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "json"])
async def test_thinking_and_redacted_thinking_come_first_in_content_as_sent(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream, streamed: bool
) -> None:
    thoughts = [Thought("Let me think.\nStep one."), Thought(encrypted=OPAQUE), Thought("Then act.")]
    fake_anthropic.app.enqueue(tool_call_reply([shell("toolu_1")], text="Checking.", reasoning=thoughts))

    response = await call(thinker, ask(), streamed=streamed)

    produced = fake_anthropic.app.thinking_by_tool["toolu_1"]
    assert [type(block) for block in response.content] == [ReasoningBlock] * 3 + [TextBlock, ToolUseBlock]
    first, redacted, last = response.reasoning
    assert (first.origin, first.kind, first.text, first.signature) == (
        "anthropic",
        "text",
        "Let me think.\nStep one.",
        produced[0]["signature"],
    )
    assert (redacted.kind, redacted.data, redacted.text, redacted.signature) == ("encrypted", OPAQUE, "", None)
    assert last.text == "Then act." and last.signature == produced[2]["signature"]
    assert {block.format for block in response.reasoning} == {"anthropic-claude-v1"}
    assert response.reasoning_text == "Let me think.\nStep one.\n\nThen act."


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "json"])
async def test_blocks_belong_to_the_requested_model_not_the_dated_one_the_api_echoes(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream, streamed: bool
) -> None:
    fake_anthropic.app.enqueue(text_reply("ok", model="claude-sonnet-4-5-20250929", reasoning=[Thought("hm")]))

    response = await call(thinker, ask(), streamed=streamed)

    assert response.model == "claude-sonnet-4-5-20250929"
    assert [block.model for block in response.reasoning] == [MODEL]


async def test_reasoning_streams_before_the_answer_in_pieces(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    reply = tool_call_reply([shell("toolu_1")], text="Answer", chunk_size=3, reasoning=[Thought("abcdefgh")])
    fake_anthropic.app.enqueue(reply)

    events = await collect(thinker, ask())

    kinds = [type(event) for event in events if isinstance(event, ReasoningDelta | TextDelta | ToolCallEvent)]
    assert kinds == [ReasoningDelta] * 3 + [TextDelta] * 2 + [ToolCallEvent]
    assert "".join(event.text for event in events if isinstance(event, ReasoningDelta)) == "abcdefgh"


@pytest.mark.parametrize("exclude", [True, False])
async def test_exclude_keeps_thinking_out_of_the_events_but_in_the_response(
    fake_anthropic: FakeUpstream, exclude: bool
) -> None:
    provider = AnthropicProvider(make_spec(fake_anthropic, reasoning=replace(THINKING, exclude=exclude)))
    fake_anthropic.app.enqueue(text_reply("Hi", reasoning=[Thought("private")]))
    try:
        events = await collect(provider, ask())
    finally:
        await provider.aclose()

    deltas = [event.text for event in events if isinstance(event, ReasoningDelta)]
    assert deltas == ([] if exclude else ["priv", "ate"])
    assert final(events).reasoning_text == "private"


@pytest.mark.parametrize("exclude", [True, False])
def test_a_json_answer_to_a_streaming_request_yields_reasoning_first(exclude: bool) -> None:
    response = ProviderResponse("m", MODEL, (claude_thought("why"), TextBlock("so")), None, "end_turn")

    events = events_for_response(response, exclude=exclude)

    expected: list[StreamEvent] = [] if exclude else [ReasoningDelta("why")]
    assert events[:-1] == [*expected, TextDelta("so")]


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "json"])
@pytest.mark.parametrize("thinking_tokens", [None, 0, 321])
async def test_thinking_tokens_are_reported_and_none_when_absent(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream, streamed: bool, thinking_tokens: int | None
) -> None:
    usage = Usage(input_tokens=10, output_tokens=400, reasoning_tokens=thinking_tokens)
    fake_anthropic.app.enqueue(text_reply("Hi", usage=usage, reasoning=[Thought("hm")]))

    response = await call(thinker, ask(), streamed=streamed)

    assert response.usage is not None
    assert (response.usage.output_tokens, response.usage.reasoning_tokens) == (400, thinking_tokens)


# --- streams split anywhere ---------------------------------------------------------------------------

SPLIT_REPLY = tool_call_reply(
    [shell("toolu_s", "echo ✓")],
    text="Doing it ✓.",
    chunk_size=3,
    usage=Usage(reasoning_tokens=42),
    reasoning=[Thought("Think: wörld ✓ twice"), Thought(encrypted=OPAQUE), Thought("and again")],
)


def render_stream(reply: TextReply) -> bytes:
    return b"".join(_Renderer(reply, "msg_split", MODEL, None)._events())  # type: ignore[arg-type]


def parse(pieces: Sequence[bytes]) -> list[StreamEvent]:
    """What `AnthropicProvider.stream` does with the body: decode SSE, assemble until `message_stop`."""
    decoder, assembler = SSEDecoder(), StreamAssembler(MODEL)
    events: list[StreamEvent] = []
    for piece in pieces:
        for sse in decoder.feed(piece):
            events.extend(assembler.feed(sse))
    assert assembler.done
    return events


def test_a_stream_split_at_every_byte_gives_the_same_blocks() -> None:
    stream = render_stream(SPLIT_REPLY)
    whole = parse([stream])
    response = final(whole)
    assert len(response.reasoning) == 3 and response.reasoning[1].data == OPAQUE
    assert response.usage is not None and response.usage.reasoning_tokens == 42

    for cut in range(1, len(stream)):
        assert final(parse([stream[:cut], stream[cut:]])) == response, cut
    assert parse([stream[at : at + 1] for at in range(len(stream))]) == whole


# --- sending it back ------------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "json"])
async def test_a_multi_step_tool_loop_with_thinking_succeeds_every_step(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream, streamed: bool
) -> None:
    fake_anthropic.app.enqueue(
        tool_call_reply([shell("toolu_1")], reasoning=[Thought("First, list.")]),
        tool_call_reply([shell("toolu_2", "cat a"), shell("toolu_3", "cat b")], reasoning=[Thought("Now read.")]),
        text_reply("Both files are empty.", reasoning=[Thought("Summarise.")]),
    )
    messages = [Message.user("What is in this directory?")]

    for _ in range(3):
        response = await call(thinker, conversation(*messages), streamed=streamed)
        messages += [response.as_message(), results_for(response)]

    assert response.text == "Both files are empty."
    produced = fake_anthropic.app.thinking_by_tool
    second, third = sent_body(fake_anthropic, 1), sent_body(fake_anthropic, 2)
    assert second["messages"][1]["content"][0] == produced["toolu_1"][0]
    assert third["messages"][1]["content"][0] == produced["toolu_1"][0]
    assert third["messages"][3]["content"][0] == produced["toolu_2"][0] == produced["toolu_3"][0]
    assert all("thinking" in sent_body(fake_anthropic, n) for n in range(3))


async def test_without_its_thinking_block_the_loop_gets_the_real_400(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(tool_call_reply([shell("toolu_1")], reasoning=[Thought("First, list.")]))
    first = await thinker.complete(conversation(Message.user("go")))
    request = conversation(Message.user("go"), first.as_message(), results_for(first))
    body = build_body(MODEL, request, stream=False, reasoning=THINKING)
    assert (await post_raw(fake_anthropic, body))[0] == 200, "sent as built, the step is accepted"

    del body["messages"][1]["content"][0]
    status, error = await post_raw(fake_anthropic, body)

    assert status == 400
    assert error["error"]["message"].startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When "
        "`thinking` is enabled, a final `assistant` message must start with a thinking block"
    )


async def test_a_tampered_thinking_block_is_refused(thinker: AnthropicProvider, fake_anthropic: FakeUpstream) -> None:
    fake_anthropic.app.enqueue(tool_call_reply([shell("toolu_1")], reasoning=[Thought("First, list.")]))
    first = await thinker.complete(conversation(Message.user("go")))
    tampered = Message("assistant", (replace(first.reasoning[0], text="First, delete."), *first.tool_calls))

    with pytest.raises(BadRequestError, match="Invalid `signature` in `thinking` block"):
        await thinker.complete(conversation(Message.user("go"), tampered, results_for(first)))


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "json"])
async def test_redacted_thinking_goes_back_byte_for_byte(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream, streamed: bool
) -> None:
    thoughts = [Thought(encrypted=OPAQUE), Thought("visible"), Thought(encrypted=OPAQUE[::-1])]
    fake_anthropic.app.enqueue(tool_call_reply([shell("toolu_r")], reasoning=thoughts), text_reply("done"))
    first = await call(thinker, conversation(Message.user("go")), streamed=streamed)

    request = conversation(Message.user("go"), first.as_message(), results_for(first))
    second = await call(thinker, request, streamed=streamed)

    assert second.text == "done"
    sent = fake_anthropic.app.message_requests[1].body
    assert sent is not None
    assert sent["messages"][1]["content"][:3] == fake_anthropic.app.thinking_by_tool["toolu_r"]
    assert sent["messages"][1]["content"][0] == {"type": "redacted_thinking", "data": OPAQUE}


@pytest.mark.parametrize(
    "first",
    [
        None,
        claude_thought("opus signed this", model="claude-opus-4-1"),
        ReasoningBlock("openrouter", "encrypted", data="gemini", format="google-gemini-v1", model="google/gemini-3"),
    ],
    ids=["no-reasoning", "another-claude", "openrouter"],
)
async def test_a_loop_another_model_started_goes_without_thinking(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream, first: ReasoningBlock | None
) -> None:
    await thinker.complete(conversation(*loop_history(first)))

    body = sent_body(fake_anthropic)
    assert "thinking" not in body and body["max_tokens"] == 4096
    assert body["messages"][1]["content"][0]["type"] == "tool_use"


async def test_thinking_resumes_at_the_next_user_message(
    thinker: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    history = [*loop_history(None), Message("assistant", (TextBlock("Done."),)), Message.user("Next task")]

    await thinker.complete(conversation(*history))

    assert sent_body(fake_anthropic)["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_with_thinking_off_no_thinking_goes_back(fake_anthropic: FakeUpstream) -> None:
    plain = AnthropicProvider(make_spec(fake_anthropic))
    history = loop_history(claude_thought("signed by this model"))
    try:
        await plain.complete(conversation(*history))
    finally:
        await plain.aclose()

    body = sent_body(fake_anthropic)
    assert "thinking" not in body
    assert [block["type"] for block in body["messages"][1]["content"]] == ["tool_use"]


async def test_the_fake_refuses_thinking_in_the_final_assistant_turn_when_thinking_is_off(
    fake_anthropic: FakeUpstream,
) -> None:
    body = build_body(MODEL, conversation(*loop_history(claude_thought("x"))), stream=False, reasoning=THINKING)
    del body["thinking"]

    status, error = await post_raw(fake_anthropic, body)

    assert status == 400
    assert "When thinking is disabled, an `assistant` message in the final position" in error["error"]["message"]


def test_merged_assistant_turns_keep_all_thinking_first_and_never_cached() -> None:
    a = ToolUseBlock("toolu_a", "run_shell_command", {"command": "ls"})
    b = ToolUseBlock("toolu_b", "run_shell_command", {"command": "pwd"})
    history = (
        Message.user("go"),
        Message("assistant", (claude_thought("one"), TextBlock("Running ls."), a)),
        Message("assistant", (claude_thought("two"), REDACTED, b)),
        Message("user", (ToolResultBlock("toolu_a", "x"), ToolResultBlock("toolu_b", "y"))),
    )

    body = build_body(MODEL, conversation(*history), stream=False, reasoning=THINKING)

    turn = body["messages"][1]["content"]
    assert [block["type"] for block in turn] == [
        "thinking",
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    assert [block.get("thinking") for block in turn[:2]] == ["one", "two"]
    blocks = [block for message in body["messages"] for block in message["content"]]
    assert not any("cache_control" in block for block in blocks if "thinking" in block["type"])


def test_a_turn_with_only_reasoning_is_left_out() -> None:
    history = (Message.user("go"), Message("assistant", (claude_thought("cut off"),)), Message.user("again"))

    body = build_body(MODEL, conversation(*history), stream=False, reasoning=THINKING)

    assert [message["role"] for message in body["messages"]] == ["user"]
