"""The native Anthropic client against a fake Messages API on loopback: what it sends (headers, system blocks,
cache breakpoints, merged turns, tool_result blocks, tool_choice) and what it makes of every reply (streamed
text, tool calls assembled from partial JSON, usage, in-stream errors, cut and stalled streams, HTTP errors)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from t_koma.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    InvalidResponseError,
    ModelNotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
    UpstreamError,
)
from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ReasoningDelta,
    StreamEvent,
    SystemBlock,
    TextBlock,
    TextDelta,
    ToolCallEvent,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
    UsageEvent,
)
from t_koma.providers.anthropic import AnthropicProvider, api_root
from t_koma.providers.base import ProviderSpec, Timeouts
from tests.fakes.anthropic import TEST_KEY, FakeUpstream
from tests.fakes.replies import (
    Usage,
    cut_stream_reply,
    error_reply,
    garbage_reply,
    midstream_error_reply,
    raw_reply,
    stall_reply,
    text_reply,
    tool_call_reply,
)
from tests.providers.anthropic_support import MODEL, SHELL_TOOL, ask, collect, final, make_spec, sent_body

READ_TOOL = ToolDefinition("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}})


@pytest.fixture
async def provider(fake_anthropic: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    client = AnthropicProvider(make_spec(fake_anthropic))
    yield client
    await client.aclose()


async def collect_until_error(
    provider: AnthropicProvider, request: ConversationRequest
) -> tuple[list[StreamEvent], ProviderError]:
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(request):
            events.append(event)
    return events, caught.value


# --- what we send ------------------------------------------------------------------------------------


async def test_sends_api_key_version_and_json_headers(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    await provider.complete(ask())

    request = fake_anthropic.app.message_requests[0]
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == TEST_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers


async def test_body_has_model_required_max_tokens_and_stream_flag(fake_anthropic: FakeUpstream) -> None:
    default = AnthropicProvider(make_spec(fake_anthropic))
    configured = AnthropicProvider(make_spec(fake_anthropic, max_tokens=1234))
    try:
        await default.complete(ask())
        await collect(configured, ask())
        await default.complete(ask(max_tokens=77))
    finally:
        await default.aclose()
        await configured.aclose()

    first, second, third = (sent_body(fake_anthropic, n) for n in range(3))
    assert first["model"] == MODEL
    assert (first["max_tokens"], first["stream"]) == (4096, False)
    assert (second["max_tokens"], second["stream"]) == (1234, True)
    assert third["max_tokens"] == 77
    assert first["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}
    ]
    assert "system" not in first and "tools" not in first and "tool_choice" not in first


async def test_system_prompt_goes_as_blocks_with_a_breakpoint_on_the_last_cacheable_one(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    system = (SystemBlock("You are t-koma."), SystemBlock("Tools guide."), SystemBlock("Today is Monday.", cache=False))
    await provider.complete(ask(system=system))

    assert sent_body(fake_anthropic)["system"] == [
        {"type": "text", "text": "You are t-koma."},
        {"type": "text", "text": "Tools guide.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Today is Monday."},
    ]


async def test_tools_use_input_schema_and_the_last_definition_carries_the_breakpoint(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    await provider.complete(ask(tools=(READ_TOOL, SHELL_TOOL)))

    body = sent_body(fake_anthropic)
    assert body["tools"] == [
        {"name": "read_file", "description": "Read a file", "input_schema": dict(READ_TOOL.parameters)},
        {
            "name": "run_shell_command",
            "description": "Run a shell command",
            "input_schema": dict(SHELL_TOOL.parameters),
            "cache_control": {"type": "ephemeral"},
        },
    ]
    assert "tool_choice" not in body, "no tool_choice unless one was asked for"


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("run_shell_command", {"type": "tool", "name": "run_shell_command"}),
    ],
)
async def test_tool_choice_is_mapped_to_anthropic_types(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream, choice: str, wire: dict[str, str]
) -> None:
    await provider.complete(ask(tools=(SHELL_TOOL,), tool_choice=choice))

    assert sent_body(fake_anthropic)["tool_choice"] == wire


async def test_history_merges_same_role_turns_and_sends_tool_results_as_user_blocks(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    call_a = ToolUseBlock("toolu_a", "run_shell_command", {"command": "ls"})
    call_b = ToolUseBlock("toolu_b", "run_shell_command", {"command": "pwd"})
    history = [
        Message.user("List files"),
        Message("assistant", (TextBlock("Running two commands."), call_a)),
        Message("assistant", (call_b,)),
        Message("user", (ToolResultBlock("toolu_a", "a.txt\nb.txt"),)),
        Message("user", (ToolResultBlock("toolu_b", "permission denied", is_error=True),)),
    ]
    await provider.send_conversation(None, history, [SHELL_TOOL], "Thanks, and now?", None, "auto")

    assert sent_body(fake_anthropic)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "List files"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Running two commands."},
                {"type": "tool_use", "id": "toolu_a", "name": "run_shell_command", "input": {"command": "ls"}},
                {"type": "tool_use", "id": "toolu_b", "name": "run_shell_command", "input": {"command": "pwd"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "a.txt\nb.txt"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "permission denied", "is_error": True},
                {"type": "text", "text": "Thanks, and now?", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]


async def test_tool_results_come_before_text_and_empty_pieces_are_left_out(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    history = [
        Message.user("go"),
        Message("assistant", (TextBlock(""), ToolUseBlock("toolu_1", "run_shell_command", {}))),
        Message("user", (TextBlock("note first"), ToolResultBlock("toolu_1", ""))),
    ]
    await provider.send_conversation(None, history, [], None, None, None)

    messages = sent_body(fake_anthropic)["messages"]
    assert messages[1]["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "run_shell_command", "input": {}}]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1"},
        {"type": "text", "text": "note first", "cache_control": {"type": "ephemeral"}},
    ]


async def test_at_most_four_cache_breakpoints_and_only_the_last_user_turn_has_one(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    history = [Message.user("one"), Message("assistant", (TextBlock("two"),)), Message.user("three")]
    await provider.send_conversation([SystemBlock("sys")], history, [SHELL_TOOL, READ_TOOL], "four", None, None)

    body = sent_body(fake_anthropic)
    assert json.dumps(body).count("cache_control") == 3
    user_turns = [turn for turn in body["messages"] if turn["role"] == "user"]
    assert "cache_control" not in user_turns[0]["content"][-1]
    assert user_turns[-1]["content"] == [
        {"type": "text", "text": "three"},
        {"type": "text", "text": "four", "cache_control": {"type": "ephemeral"}},
    ]


async def test_openai_style_sampling_fields_are_mapped(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    await provider.complete(ask(extra={"temperature": 0.2, "top_p": 0.9, "stop": "END", "frequency_penalty": 1}))

    body = sent_body(fake_anthropic)
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (0.2, 0.9, ["END"])
    assert "frequency_penalty" not in body and "stop" not in body


async def test_a_base_url_ending_in_v1_is_not_doubled(fake_anthropic: FakeUpstream) -> None:
    client = AnthropicProvider(make_spec(fake_anthropic, base_url=fake_anthropic.base_url + "/v1/"))
    try:
        response = await client.complete(ask())
    finally:
        await client.aclose()

    assert response.text == "Hello from the fake upstream."
    assert api_root("https://api.anthropic.com/") == "https://api.anthropic.com"
    assert api_root("https://proxy.example/anthropic/v1") == "https://proxy.example/anthropic"


# --- what we make of replies -------------------------------------------------------------------------


async def test_streamed_text_arrives_as_deltas_and_pings_are_ignored(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    text = "Streaming from the fake Anthropic, four characters at a time."
    fake_anthropic.app.enqueue(text_reply(text, chunk_size=4, usage=Usage(input_tokens=21, output_tokens=13)))

    events = await collect(provider, ask())

    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert len(deltas) == len(text) // 4 + 1
    assert "".join(deltas) == text
    assert [type(event) for event in events[-2:]] == [UsageEvent, Finish]
    response = final(events)
    assert response.content == (TextBlock(text),)
    assert response.id.startswith("msg_fake_")
    assert (response.model, response.stop_reason, response.upstream_provider) == (MODEL, "end_turn", "Anthropic")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 13)


async def test_tool_use_is_assembled_from_many_partial_json_deltas(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    arguments = '{"command": "find . -name \\"*.py\\" | xargs wc -l", "timeout": 30}'
    fake_anthropic.app.enqueue(
        tool_call_reply(
            [("toolu_01", "run_shell_command", arguments), ("toolu_02", "read_file", '{"path": "README.md"}')],
            text="Let me look.",
            chunk_size=2,
        )
    )

    events = await collect(provider, ask(tools=(SHELL_TOOL, READ_TOOL)))

    calls = [event.call for event in events if isinstance(event, ToolCallEvent)]
    assert calls == [
        ToolUseBlock("toolu_01", "run_shell_command", {"command": 'find . -name "*.py" | xargs wc -l', "timeout": 30}),
        ToolUseBlock("toolu_02", "read_file", {"path": "README.md"}),
    ]
    response = final(events)
    assert response.content == (TextBlock("Let me look."), *calls)
    assert response.stop_reason == "tool_use"


async def test_tool_arguments_empty_means_no_arguments_and_invalid_ones_are_reported(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(
        tool_call_reply(
            [
                ("toolu_empty", "list", ""),
                ("toolu_bad", "run_shell_command", '{"command": "echo'),
                ("toolu_list", "run_shell_command", "[1, 2]"),
            ]
        )
    )

    calls = [event.call for event in await collect(provider, ask()) if isinstance(event, ToolCallEvent)]

    empty, bad, not_object = calls
    assert (empty.input, empty.arguments_error) == ({}, None)
    assert (bad.input, bad.raw_arguments) == ({}, '{"command": "echo')
    assert bad.arguments_error is not None and "invalid JSON" in bad.arguments_error
    assert (not_object.raw_arguments, not_object.arguments_error) == (
        "[1, 2]",
        "arguments must be a JSON object, got list",
    )


async def test_non_streaming_reply_with_text_and_tool_calls(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(tool_call_reply([("toolu_9", "run_shell_command", '{"command": "date"}')], text="Sure."))

    response = await provider.complete(ask(tools=(SHELL_TOOL,)))

    assert response.content == (TextBlock("Sure."), ToolUseBlock("toolu_9", "run_shell_command", {"command": "date"}))
    assert response.stop_reason == "tool_use"
    assert sent_body(fake_anthropic)["stream"] is False


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
async def test_usage_cache_counts_are_read_when_present(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream, streaming: bool
) -> None:
    usage = Usage(input_tokens=5, output_tokens=9, cache_read_tokens=1800, cache_creation_tokens=240)
    fake_anthropic.app.enqueue(text_reply("cached", usage=usage))

    response = final(await collect(provider, ask())) if streaming else await provider.complete(ask())

    assert response.usage is not None
    # Anthropic's input_tokens (5) leaves cached tokens out; t-koma counts every prompt token, as OpenAI does.
    assert response.usage.to_dict() == {
        "input_tokens": 5 + 1800 + 240,
        "output_tokens": 9,
        "cache_read_tokens": 1800,
        "cache_creation_tokens": 240,
        "reasoning_tokens": None,
        "cost": None,
    }


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
async def test_usage_cache_counts_stay_none_when_absent(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream, streaming: bool
) -> None:
    fake_anthropic.app.enqueue(text_reply("plain", usage=Usage(input_tokens=5, output_tokens=2)))

    response = final(await collect(provider, ask())) if streaming else await provider.complete(ask())

    assert response.usage is not None
    assert (response.usage.cache_read_tokens, response.usage.cache_creation_tokens) == (None, None)


async def test_no_usage_at_all_means_no_usage_event(provider: AnthropicProvider, fake_anthropic: FakeUpstream) -> None:
    fake_anthropic.app.enqueue(text_reply("quiet", usage=None))

    events = await collect(provider, ask())

    assert not any(isinstance(event, UsageEvent) for event in events)
    assert final(events).usage is None


async def test_unknown_events_are_skipped_and_thinking_streams_as_reasoning(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode()

    start = {"id": "msg_raw", "model": MODEL, "usage": {"input_tokens": 3, "output_tokens": 1}}
    fake_anthropic.app.enqueue(
        raw_reply(
            event("message_start", {"type": "message_start", "message": start}),
            b": a comment line\r\n\r\n",
            event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
            ),
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
            ),
            event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event("brand_new_event", {"type": "brand_new_event"}),
            event(
                "content_block_start",
                {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": "An"}},
            ),
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "swer"}},
            ),
            event(
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 4}},
            ),
            event("message_stop", {"type": "message_stop"}),
        )
    )

    events = await collect(provider, ask())

    assert [event.text for event in events if isinstance(event, TextDelta)] == ["An", "swer"]
    assert [event.text for event in events if isinstance(event, ReasoningDelta)] == ["hmm"]
    response = final(events)
    assert (response.id, response.text, response.stop_reason) == ("msg_raw", "Answer", "max_tokens")
    assert response.reasoning_text == "hmm" and response.reasoning[0].signature is None
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (3, 4)


async def test_a_json_answer_to_a_streaming_request_still_yields_events(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    body = {"id": "msg_j", "type": "message", "model": MODEL, "content": [{"type": "text", "text": "whole"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
    fake_anthropic.app.enqueue(raw_reply(json.dumps(body).encode(), content_type="application/json"))

    events = await collect(provider, ask())

    assert [type(event) for event in events] == [TextDelta, UsageEvent, Finish]
    assert final(events).text == "whole"


# --- failures ----------------------------------------------------------------------------------------


async def test_an_error_event_before_any_text(provider: AnthropicProvider, fake_anthropic: FakeUpstream) -> None:
    fake_anthropic.app.enqueue(midstream_error_reply("", code=529, message="Overloaded"))

    events, error = await collect_until_error(provider, ask())

    assert events == []
    assert isinstance(error, OverloadedError) and error.retryable
    assert error.status == 529
    assert "overloaded_error" in error.message and "Overloaded" in error.message
    assert error.partial_text == ""


async def test_an_error_event_mid_stream_keeps_the_partial_text(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(midstream_error_reply("The answer is", code=500, message="Internal server error"))

    events, error = await collect_until_error(provider, ask())

    assert "".join(event.text for event in events if isinstance(event, TextDelta)) == "The answer is"
    assert isinstance(error, UpstreamError) and error.retryable
    assert (error.status, error.partial_text) == (500, "The answer is")


async def test_an_error_body_with_status_200_on_a_json_call(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(midstream_error_reply("ignored", code=529, message="Overloaded"))

    with pytest.raises(OverloadedError, match="Overloaded"):
        await provider.complete(ask())


async def test_a_cut_stream_is_a_retryable_error_with_the_partial_text(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(cut_stream_reply("Half of an ans"))

    events, error = await collect_until_error(provider, ask())

    assert not any(isinstance(event, Finish) for event in events)
    assert isinstance(error, UpstreamError) and error.retryable
    assert "message_stop" in error.message
    assert error.partial_text == "Half of an ans"


@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, PermissionDeniedError, False),
        (404, ModelNotFoundError, False),
        (413, BadRequestError, False),
        (429, RateLimitError, True),
        (500, UpstreamError, True),
        (529, OverloadedError, True),
    ],
)
@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
async def test_http_error_statuses_map_to_typed_errors(
    provider: AnthropicProvider,
    fake_anthropic: FakeUpstream,
    status: int,
    error_class: type[ProviderError],
    retryable: bool,
    streaming: bool,
) -> None:
    fake_anthropic.app.enqueue(error_reply(status, f"upstream says {status}"))

    with pytest.raises(ProviderError) as caught:
        if streaming:
            await collect(provider, ask())
        else:
            await provider.complete(ask())

    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.retryable, error.provider) == (status, retryable, "anthropic")
    assert f"upstream says {status}" in error.message
    assert error.to_dict()["error"]["status"] == status


async def test_rate_limit_carries_retry_after_from_the_header(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(
        error_reply(429, "Number of request tokens has exceeded your rate limit", headers={"retry-after": "7"})
    )

    with pytest.raises(RateLimitError) as caught:
        await provider.complete(ask())

    assert caught.value.retry_after == 7.0
    assert "rate_limit_error" in caught.value.message


async def test_a_non_json_error_body_still_gives_a_typed_error(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream
) -> None:
    fake_anthropic.app.enqueue(
        raw_reply(b"<html>413 Request Entity Too Large</html>", status=413, content_type="text/html")
    )

    with pytest.raises(BadRequestError, match="413 Request Entity Too Large"):
        await provider.complete(ask())


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
async def test_garbage_is_an_invalid_response(
    provider: AnthropicProvider, fake_anthropic: FakeUpstream, streaming: bool
) -> None:
    fake_anthropic.app.enqueue(garbage_reply("<<definitely not json>>"))

    with pytest.raises(InvalidResponseError, match="not"):
        if streaming:
            await collect(provider, ask())
        else:
            await provider.complete(ask())


async def test_a_stalled_stream_times_out_and_keeps_what_arrived(fake_anthropic: FakeUpstream) -> None:
    client = AnthropicProvider(make_spec(fake_anthropic, timeouts=Timeouts(connect=5.0, read=0.2)))
    fake_anthropic.app.enqueue(stall_reply(30, partial_text="So far"))
    try:
        events, error = await collect_until_error(client, ask())
    finally:
        await client.aclose()

    assert [event.text for event in events if isinstance(event, TextDelta)] == ["So f", "ar"]
    assert isinstance(error, RequestTimeoutError) and error.retryable
    assert error.partial_text == "So far"


async def test_a_stalled_json_call_times_out(fake_anthropic: FakeUpstream) -> None:
    client = AnthropicProvider(make_spec(fake_anthropic, timeouts=Timeouts(connect=5.0, read=0.2)))
    fake_anthropic.app.enqueue(stall_reply(30))
    try:
        with pytest.raises(RequestTimeoutError):
            await client.complete(ask())
    finally:
        await client.aclose()


async def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = ProviderSpec(kind="anthropic", model=MODEL, base_url=f"http://127.0.0.1:{port}", api_key=TEST_KEY)
    client = AnthropicProvider(spec)
    try:
        with pytest.raises(ConnectionFailedError) as caught:
            await client.complete(ask())
    finally:
        await client.aclose()
    assert caught.value.retryable and TEST_KEY not in str(caught.value)


async def test_the_key_never_appears_in_errors(fake_anthropic: FakeUpstream) -> None:
    echoed = f"invalid x-api-key: {TEST_KEY}"
    fake_anthropic.app.enqueue(error_reply(401, echoed), midstream_error_reply("", code=400, message=echoed))
    client = AnthropicProvider(make_spec(fake_anthropic))
    try:
        with pytest.raises(AuthenticationError) as http_error:
            await client.complete(ask())
        _, stream_error = await collect_until_error(client, ask())
    finally:
        await client.aclose()

    for error in (http_error.value, stream_error):
        assert "invalid x-api-key: ***" in error.message
        for text in (str(error), error.message, error.raw or "", json.dumps(error.to_dict()), repr(error)):
            assert TEST_KEY not in text


async def test_a_wrong_key_is_an_authentication_error(fake_anthropic: FakeUpstream) -> None:
    client = AnthropicProvider(make_spec(fake_anthropic, api_key="sk-ant-wrong-key-0000"))
    try:
        with pytest.raises(AuthenticationError) as caught:
            await client.complete(ask())
    finally:
        await client.aclose()
    assert "sk-ant-wrong-key-0000" not in str(caught.value)


# --- models ------------------------------------------------------------------------------------------


async def test_list_models_follows_every_page(provider: AnthropicProvider, fake_anthropic: FakeUpstream) -> None:
    fake_anthropic.app.models = [
        {
            "type": "model",
            "id": f"claude-test-{n}",
            "display_name": f"Claude Test {n}",
            "created_at": "2025-01-01T00:00:00Z",
        }
        for n in range(5)
    ]
    fake_anthropic.app.models[0]["max_input_tokens"] = 200_000
    fake_anthropic.app.page_size = 2

    models = await provider.list_models()

    assert [model.id for model in models] == [f"claude-test-{n}" for n in range(5)]
    assert models[1].name == "Claude Test 1"
    assert (models[0].context_length, models[1].context_length) == (200_000, None)
    assert all(model.supports_tools for model in models)
    pages = [request for request in fake_anthropic.app.requests if request.path == "/v1/models"]
    assert [request.query.get("after_id") for request in pages] == [None, "claude-test-1", "claude-test-3"]
    assert pages[0].headers["x-api-key"] == TEST_KEY


async def test_list_models_errors_are_typed(provider: AnthropicProvider, fake_anthropic: FakeUpstream) -> None:
    fake_anthropic.app.api_key = "sk-ant-someone-else"

    with pytest.raises(AuthenticationError):
        await provider.list_models()
