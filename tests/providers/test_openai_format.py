"""The OpenAI chat-completions wire format: what we send, and how bodies, chunks and error bodies are read.

Pure functions and the stream assembler, fed real-shaped payloads (no process boundary to cross here); the
same behaviour over HTTP is covered in test_openrouter.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from t_koma.errors import (
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
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
    ProviderResponse,
    ProviderUsage,
    ReasoningBlock,
    ReasoningConfig,
    ReasoningDelta,
    SystemBlock,
    TextBlock,
    TextDelta,
    ToolCallEvent,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
    UsageEvent,
)
from t_koma.providers.openai_format import build_body, parse_completion, parse_http_error, parse_usage
from t_koma.providers.openai_stream import StreamAssembler
from t_koma.providers.reasoning import reasoning_detail
from t_koma.providers.sse import SSEDecoder
from tests.fakes.openrouter_wire import reasoning_details, stream_events
from tests.fakes.replies import Thought, Usage, tool_call_reply

KEY = "sk-or-test-SECRET-0001"
SHELL = ToolDefinition("run_shell_command", "Run a command", {"type": "object", "properties": {}})


def body_for(request: ConversationRequest, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("kind", "openrouter")
    return build_body(request, model="openai/gpt-4o-mini", stream=kwargs.pop("stream", False), **kwargs)


def tool_turn() -> tuple[Message, ...]:
    return (
        Message.user("list files"),
        Message(
            "assistant",
            (
                TextBlock("Let me look."),
                ToolUseBlock("call_1", "run_shell_command", {"command": "ls"}),
                ToolUseBlock("call_2", "run_shell_command", {}, raw_arguments="{bad", arguments_error="not JSON"),
            ),
        ),
        Message("user", (ToolResultBlock("call_1", "a.txt"), ToolResultBlock("call_2", "bad arguments", True))),
        Message.user("thanks"),
    )


# --- request body -------------------------------------------------------------------------------------------


def test_system_blocks_become_one_system_message() -> None:
    request = ConversationRequest(system=(SystemBlock("You are t-koma."), SystemBlock("Be brief.")))
    assert body_for(request)["messages"] == [{"role": "system", "content": "You are t-koma.\n\nBe brief."}]


def test_tool_calls_and_each_tool_result_as_its_own_tool_message() -> None:
    messages = body_for(ConversationRequest(messages=tool_turn()))["messages"]
    assert messages == [
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "run_shell_command", "arguments": '{"command":"ls"}'},
                },
                # invalid arguments go back as {} (upstreams reject the raw string), the result explains the error
                {"id": "call_2", "type": "function", "function": {"name": "run_shell_command", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: bad arguments"},
        {"role": "user", "content": "thanks"},
    ]


def test_assistant_message_with_only_tool_calls_has_null_content() -> None:
    call_only = Message("assistant", (ToolUseBlock("c", "run_shell_command", {"command": "pwd"}),))
    messages = body_for(ConversationRequest(messages=(Message.user("hi"), call_only)))["messages"]
    assert messages[1]["content"] is None
    assert orjson.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == {"command": "pwd"}


def test_tools_and_tool_choice_mapping() -> None:
    expected = {
        "auto": "auto",
        "none": "none",
        "required": "required",
        "run_shell_command": {"type": "function", "function": {"name": "run_shell_command"}},
    }
    for choice, wire in expected.items():
        body = body_for(ConversationRequest(messages=(Message.user("x"),), tools=(SHELL,), tool_choice=choice))
        assert body["tool_choice"] == wire
        assert body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "run_shell_command",
                    "description": "Run a command",
                    "parameters": SHELL.parameters,
                },
            }
        ]


def test_no_tools_means_no_tools_and_no_tool_choice_fields() -> None:
    body = body_for(ConversationRequest(messages=(Message.user("x"),), tool_choice="auto"))
    assert "tools" not in body and "tool_choice" not in body


def test_cache_breakpoints_on_system_prompt_and_last_user_message() -> None:
    request = ConversationRequest(
        system=(SystemBlock("stable prefix"), SystemBlock("volatile", cache=False)), messages=tool_turn()
    )
    messages = body_for(request, cache_breakpoints=True)["messages"]
    assert messages[0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "stable prefix", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "volatile"},
        ],
    }
    assert messages[-1] == {
        "role": "user",
        "content": [{"type": "text", "text": "thanks", "cache_control": {"type": "ephemeral"}}],
    }
    assert messages[1] == {"role": "user", "content": "list files"}
    assert sum("cache_control" in orjson.dumps(message).decode() for message in messages) == 2


def test_without_cache_breakpoints_no_cache_control_anywhere() -> None:
    body = body_for(ConversationRequest(system=(SystemBlock("s"),), messages=tool_turn()))
    assert b"cache_control" not in orjson.dumps(body)


def test_stream_flag_and_usage_request() -> None:
    request = ConversationRequest(messages=(Message.user("x"),))
    assert body_for(request, stream=True)["stream"] is True
    assert body_for(request, stream=True)["stream_options"] == {"include_usage": True}
    assert body_for(request)["stream"] is False and "stream_options" not in body_for(request)


def test_extra_fields_merge_but_never_override_what_the_request_decides() -> None:
    request = ConversationRequest(
        messages=(Message.user("x"),),
        extra={"temperature": 0.2, "top_p": 0.9, "model": "evil/model", "stream": True, "messages": []},
    )
    body = body_for(request)
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9
    assert body["model"] == "openai/gpt-4o-mini" and body["stream"] is False and len(body["messages"]) == 1


def test_max_tokens_precedence() -> None:
    plain = ConversationRequest(messages=(Message.user("x"),))
    assert "max_tokens" not in body_for(plain)
    assert body_for(plain, default_max_tokens=100)["max_tokens"] == 100
    assert body_for(ConversationRequest(max_tokens=5), default_max_tokens=100)["max_tokens"] == 5
    assert body_for(ConversationRequest(extra={"max_tokens": 7}), default_max_tokens=100)["max_tokens"] == 7


# --- non-streaming response ---------------------------------------------------------------------------------


def completion(message: dict[str, Any], **top: Any) -> dict[str, Any]:
    body = {
        "id": "gen-1",
        "model": "openai/gpt-4o-mini",
        "provider": "OpenAI",
        "choices": [{"index": 0, "finish_reason": "stop", "native_finish_reason": "stop", "message": message}],
    }
    body.update(top)
    return body


def parse(body: Any) -> Any:
    return parse_completion(body, provider="openrouter", requested_model="asked/model", secrets=(KEY,))


def test_text_response_with_full_usage() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "cost": 0.000847,
        "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 10, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }
    response = parse(completion({"role": "assistant", "content": "Hi"}, usage=usage))
    assert response.text == "Hi" and response.stop_reason == "stop"
    assert (response.id, response.model, response.upstream_provider) == ("gen-1", "openai/gpt-4o-mini", "OpenAI")
    assert response.usage == ProviderUsage(100, 20, 80, 10, 12, 0.000847)


def test_usage_fields_the_upstream_did_not_send_are_none_not_zero() -> None:
    assert parse_usage({"prompt_tokens": 3, "completion_tokens": 1}) == ProviderUsage(3, 1, None, None, None, None)
    assert parse(completion({"content": "x"})).usage is None
    assert parse_usage({"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}}) == (
        ProviderUsage(3, 1, cache_read_tokens=0)
    )


def test_anthropic_style_cache_fields_from_compatible_servers() -> None:
    usage = parse_usage(
        {"prompt_tokens": 3, "completion_tokens": 1, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 1}
    )
    assert usage is not None and (usage.cache_read_tokens, usage.cache_creation_tokens) == (2, 1)


def test_tool_calls_in_a_body_empty_and_unparseable_arguments_kept() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "run_shell_command", "arguments": '{"command": "ls"}'}},
        {"id": "c2", "type": "function", "function": {"name": "noop", "arguments": ""}},
        {"id": "c3", "type": "function", "function": {"name": "run_shell_command", "arguments": '{"command": "l'}},
        {"id": "c4", "type": "function", "function": {"name": "run_shell_command", "arguments": "[1, 2]"}},
        {"id": "", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
    ]
    response = parse(completion({"role": "assistant", "content": None, "tool_calls": calls}))
    first, empty, broken, array, no_id = response.tool_calls
    assert first == ToolUseBlock("c1", "run_shell_command", {"command": "ls"})
    assert empty == ToolUseBlock("c2", "noop", {})
    assert broken.input == {} and broken.raw_arguments == '{"command": "l' and broken.arguments_error
    assert array.arguments_error is not None and "object" in array.arguments_error
    assert no_id.id.startswith("call_") and no_id.id != ""  # an empty id would poison every later turn
    assert response.text == ""


def test_content_given_as_parts() -> None:
    parts = [{"type": "text", "text": "Hel"}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "lo"}]
    assert parse(completion({"role": "assistant", "content": parts})).text == "Hello"


def test_finish_reason_error_beside_partial_output_is_a_typed_error_keeping_the_text() -> None:
    body = completion({"role": "assistant", "content": "Partial ans"})
    body["choices"][0]["finish_reason"] = "error"
    body["choices"][0]["error"] = {"code": 502, "message": "Upstream died", "metadata": {"provider_name": "Groq"}}
    with pytest.raises(UpstreamError) as caught:
        parse(body)
    assert caught.value.partial_text == "Partial ans" and caught.value.upstream_provider == "Groq"


def test_error_object_in_a_200_body_is_an_error_not_an_empty_completion() -> None:
    with pytest.raises(RateLimitError):
        parse({"error": {"code": 429, "message": "slow down"}})


@pytest.mark.parametrize("body", [[], "text", {"id": "x"}, {"choices": []}, {"choices": ["x"]}])
def test_bodies_that_are_not_completions_are_invalid_responses(body: Any) -> None:
    with pytest.raises(InvalidResponseError):
        parse(body)


# --- error bodies -------------------------------------------------------------------------------------------


def http_error(status: int, error: Any, headers: dict[str, str] | None = None) -> ProviderError:
    raw = orjson.dumps({"error": error}) if not isinstance(error, bytes) else error
    return parse_http_error(status, raw, headers or {}, provider="openrouter", secrets=(KEY,))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, InsufficientCreditsError),
        (403, PermissionDeniedError),
        (404, ModelNotFoundError),
        (408, RequestTimeoutError),
        (413, BadRequestError),
        (429, RateLimitError),
        (500, UpstreamError),
        (502, UpstreamError),
        (503, OverloadedError),
        (504, RequestTimeoutError),
        (529, OverloadedError),
    ],
)
def test_each_status_maps_to_its_error_class(status: int, kind: type[ProviderError]) -> None:
    error = http_error(status, {"code": status, "message": "upstream says no"})
    assert type(error) is kind
    assert error.status == status and "upstream says no" in error.message
    assert error.to_dict()["error"]["type"] == kind.error_type


def test_402_keeps_the_affordable_token_count() -> None:
    message = (
        "This request requires more credits, or fewer max_tokens. "
        "You requested up to 4096 tokens, but can only afford 1234."
    )
    error = http_error(402, {"code": 402, "message": message})
    assert isinstance(error, InsufficientCreditsError) and error.affordable_tokens == 1234 and not error.retryable


def test_403_moderation_keeps_the_reasons() -> None:
    metadata = {
        "reasons": ["violence", "harassment"],
        "flagged_input": "...",
        "provider_name": "OpenAI",
        "model_slug": "x",
    }
    error = http_error(403, {"code": 403, "message": "Input was flagged", "metadata": metadata})
    assert isinstance(error, PermissionDeniedError)
    assert error.reasons == ("violence", "harassment") and "violence" in error.message


def test_502_keeps_the_upstream_provider_and_its_raw_message() -> None:
    metadata = {"provider_name": "Anthropic", "raw": {"type": "overloaded_error"}}
    error = http_error(502, {"code": 502, "message": "Provider returned error", "metadata": metadata})
    assert isinstance(error, UpstreamError) and error.retryable
    assert error.upstream_provider == "Anthropic" and error.raw == '{"type":"overloaded_error"}'
    assert "Anthropic" in error.message and "overloaded_error" in error.message


def test_retry_after_header_on_429_and_503() -> None:
    limited = http_error(429, {"code": 429, "message": "Rate limited"}, {"Retry-After": "7"})
    overloaded = http_error(503, {"code": 503, "message": "No provider"}, {"retry-after": "2.5"})
    assert isinstance(limited, RateLimitError) and limited.retry_after == 7.0
    assert isinstance(overloaded, OverloadedError) and overloaded.retry_after == 2.5


def test_free_model_429_reset_time_from_metadata_headers() -> None:
    import time

    reset_ms = int((time.time() + 30) * 1000)
    metadata = {
        "headers": {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_ms)}
    }
    error = http_error(429, {"code": 429, "message": "Rate limit exceeded: free-models-per-min", "metadata": metadata})
    assert isinstance(error, RateLimitError) and error.retry_after is not None and 0 < error.retry_after <= 30


def test_non_json_error_bodies_still_map_by_status() -> None:
    error = parse_http_error(502, b"<html>Bad gateway</html>", {}, provider="openrouter")
    assert isinstance(error, UpstreamError) and "Bad gateway" in error.message


def test_keys_never_appear_in_error_messages() -> None:
    error = http_error(401, {"code": 401, "message": f"Invalid key {KEY}", "metadata": {"raw": f"Bearer {KEY}"}})
    assert KEY not in error.message and KEY not in (error.raw or "") and KEY not in str(error.to_dict())


# --- streaming chunks ---------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> str:
    data: dict[str, Any] = {"id": "gen-9", "model": "z-ai/glm-5", "provider": "Z.AI", "object": "chat.completion.chunk"}
    data["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    data.update(top)
    return orjson.dumps(data).decode()


def assemble(*payloads: str) -> list[Any]:
    assembler = StreamAssembler(provider="openrouter", requested_model="asked/model", secrets=(KEY,))
    events: list[Any] = []
    for payload in payloads:
        events.extend(assembler.feed(payload))
        if assembler.done:
            return events
    return events + list(assembler.end())


def test_text_deltas_then_usage_then_finish() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}, "cost": 0.01}
    events = assemble(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"content": ""}, "stop"),
        # OpenRouter's final usage chunk repeats the choice and the finish_reason: accounting only.
        chunk({"role": "assistant", "content": ""}, "stop", usage=usage),
        "[DONE]",
    )
    assert events[:2] == [TextDelta("Hel"), TextDelta("lo")]
    assert events[2] == UsageEvent(ProviderUsage(5, 2, cache_read_tokens=4, cost=0.01))
    finish = events[3]
    assert isinstance(finish, Finish) and len(events) == 4
    assert finish.response.text == "Hello" and finish.response.stop_reason == "stop"
    assert finish.response.usage == ProviderUsage(5, 2, cache_read_tokens=4, cost=0.01)
    assert (finish.response.id, finish.response.model, finish.response.upstream_provider) == (
        "gen-9",
        "z-ai/glm-5",
        "Z.AI",
    )


def test_usage_chunk_with_empty_choices_also_counts() -> None:
    events = assemble(
        chunk({"content": "x"}, "stop"), chunk(None, usage={"prompt_tokens": 1, "completion_tokens": 1}), "[DONE]"
    )
    assert UsageEvent(ProviderUsage(1, 1)) in events


def test_tool_call_deltas_id_only_in_first_and_arguments_split() -> None:
    events = assemble(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "run_shell_command", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"comm'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'and": "ls"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "noop", "arguments": ""}}]}),
        chunk({}, "tool_calls"),
        chunk({"content": ""}, "tool_calls", usage={"prompt_tokens": 1, "completion_tokens": 1}),
        "[DONE]",
    )
    calls = [event.call for event in events if isinstance(event, ToolCallEvent)]
    assert calls == [ToolUseBlock("call_a", "run_shell_command", {"command": "ls"}), ToolUseBlock("call_b", "noop", {})]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.response.tool_calls == tuple(calls)


def test_a_reused_index_with_a_new_id_is_a_new_call_not_concatenated_arguments() -> None:
    events = assemble(
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "a", "arguments": '{"x": 1}'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "b", "arguments": '{"y":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 2}"}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    calls = [event.call for event in events if isinstance(event, ToolCallEvent)]
    assert calls == [ToolUseBlock("c1", "a", {"x": 1}), ToolUseBlock("c2", "b", {"y": 2})]


def test_unparseable_streamed_arguments_are_reported_not_dropped() -> None:
    events = assemble(
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "function": {"name": "run_shell_command", "arguments": '{"command": "ls'}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    (call,) = [event.call for event in events if isinstance(event, ToolCallEvent)]
    assert call.id == "c1" and call.input == {} and call.raw_arguments == '{"command": "ls' and call.arguments_error


@pytest.mark.parametrize("partial", ["", "Some partial "])
def test_midstream_error_chunk_raises_typed_error_with_partial_text(partial: str) -> None:
    error_chunk = chunk(
        {"content": ""},
        "error",
        error={"code": 502, "message": "Provider disconnected", "metadata": {"error_type": "provider_unavailable"}},
    )
    payloads = ([chunk({"content": partial})] if partial else []) + [error_chunk]
    with pytest.raises(UpstreamError) as caught:
        assemble(*payloads)
    assert caught.value.partial_text == partial and caught.value.upstream_provider == "Z.AI"
    assert "Provider disconnected" in caught.value.message


def test_midstream_error_code_given_as_a_type_name_maps_through_error_type() -> None:
    error_chunk = chunk(
        None, error={"code": "rate_limit", "message": "slow", "metadata": {"error_type": "rate_limit_exceeded"}}
    )
    with pytest.raises(RateLimitError):
        assemble(chunk({"content": "a"}), error_chunk)


def test_stream_ending_without_done_and_without_finish_is_a_retryable_error_keeping_the_text() -> None:
    with pytest.raises(UpstreamError) as caught:
        assemble(chunk({"content": "half an ans"}))
    assert caught.value.retryable and caught.value.partial_text == "half an ans"


def test_stream_ending_without_done_after_a_finish_reason_is_complete() -> None:
    events = assemble(chunk({"content": "done"}, "stop"))
    assert isinstance(events[-1], Finish) and events[-1].response.text == "done"


def test_a_chunk_that_is_not_json_is_an_invalid_response_keeping_the_text() -> None:
    with pytest.raises(InvalidResponseError) as caught:
        assemble(chunk({"content": "ok "}), "not json")
    assert caught.value.partial_text == "ok "


def test_finish_reason_length_is_reported() -> None:
    events = assemble(chunk({"content": "cut"}, "length"), "[DONE]")
    assert isinstance(events[-1], Finish) and events[-1].response.stop_reason == "length"


# --- reasoning: the request field -----------------------------------------------------------------------------

ASK = (Message.user("x"),)


@pytest.mark.parametrize(
    ("configured", "override", "expected"),
    [
        (None, None, None),
        (ReasoningConfig(), None, None),
        (ReasoningConfig(effort="high"), None, {"effort": "high"}),
        (ReasoningConfig(max_tokens=8000), None, {"max_tokens": 8000}),
        (ReasoningConfig(effort="low", exclude=True), None, {"effort": "low", "exclude": True}),
        (ReasoningConfig(enabled=True), None, {"enabled": True}),
        (ReasoningConfig(enabled=False), None, {"enabled": False}),
        (ReasoningConfig(effort="none"), None, {"effort": "none"}),
        (ReasoningConfig(effort="high"), ReasoningConfig(max_tokens=2000), {"max_tokens": 2000}),
        (
            ReasoningConfig(max_tokens=9000, exclude=True),
            ReasoningConfig(effort="xhigh"),
            {"effort": "xhigh", "exclude": True},
        ),
        (None, ReasoningConfig(effort="minimal"), {"effort": "minimal"}),
    ],
)
def test_openrouter_reasoning_object_for_each_configuration(
    configured: ReasoningConfig | None, override: ReasoningConfig | None, expected: dict[str, Any] | None
) -> None:
    body = body_for(ConversationRequest(messages=ASK, reasoning=override), reasoning=configured)
    assert body.get("reasoning") == expected
    assert "reasoning_effort" not in body


def test_a_callers_own_reasoning_is_kept_unless_the_request_overrides_it() -> None:
    passed = {"effort": "low", "summary": "auto"}
    plain = ConversationRequest(messages=ASK, extra={"reasoning": passed})
    assert body_for(plain)["reasoning"] == passed
    assert body_for(plain, reasoning=ReasoningConfig(effort="high"))["reasoning"] == passed
    overridden = ConversationRequest(
        messages=ASK, extra={"reasoning": passed}, reasoning=ReasoningConfig(effort="high")
    )
    assert body_for(overridden)["reasoning"] == {"effort": "high"}


@pytest.mark.parametrize(
    ("configured", "override", "expected"),
    [
        (None, None, None),
        (ReasoningConfig(effort="medium"), None, "medium"),
        (ReasoningConfig(effort="none"), None, "none"),
        (ReasoningConfig(enabled=False), None, "none"),
        (ReasoningConfig(enabled=True), None, None),
        (ReasoningConfig(effort="low"), ReasoningConfig(effort="high"), "high"),
    ],
)
def test_openai_compatible_reasoning_effort(
    configured: ReasoningConfig | None, override: ReasoningConfig | None, expected: str | None
) -> None:
    request = ConversationRequest(messages=ASK, reasoning=override)
    body = body_for(request, kind="openai_compatible", reasoning=configured)
    assert body.get("reasoning_effort") == expected and "reasoning" not in body
    passed = ConversationRequest(messages=ASK, extra={"reasoning_effort": "low"})
    assert body_for(passed, kind="openai_compatible", reasoning=configured)["reasoning_effort"] == "low"


# --- reasoning: sent back with its assistant message ------------------------------------------------------------

GEMINI = "google/gemini-3-pro-preview"
THOUGHT = ReasoningBlock(
    "openrouter", "text", "Plan: ls.", signature="sig-1", id="rs-1", format="google-gemini-v1", index=0, model=GEMINI
)
SEALED = ReasoningBlock(
    "openrouter", "encrypted", data="EnC+/=\u00e9\x00", id="rs-2", format="google-gemini-v1", index=1, model=GEMINI
)
CALL = ToolUseBlock("call_1", "run_shell_command", {"command": "ls"})


def assistant_wire(*content: Any, kind: Any = "openrouter", model: str = GEMINI) -> dict[str, Any]:
    history = (Message.user("go"), Message("assistant", tuple(content)))
    body = build_body(ConversationRequest(messages=history), kind=kind, model=model, stream=False)
    wire: dict[str, Any] = body["messages"][1]
    return wire


def test_openrouter_reasoning_details_go_back_whole_and_in_order() -> None:
    wire = assistant_wire(THOUGHT, SEALED, TextBlock("Listing."), CALL)
    assert wire["reasoning_details"] == [
        {
            "type": "reasoning.text",
            "text": "Plan: ls.",
            "signature": "sig-1",
            "id": "rs-1",
            "format": "google-gemini-v1",
            "index": 0,
        },
        {
            "type": "reasoning.encrypted",
            "data": "EnC+/=\u00e9\x00",
            "id": "rs-2",
            "format": "google-gemini-v1",
            "index": 1,
        },
    ]
    assert wire["content"] == "Listing." and wire["tool_calls"][0]["id"] == "call_1"
    assert "reasoning_details" in assistant_wire(THOUGHT, TextBlock("A plain answer."))  # every assistant message


def test_reasoning_the_target_cannot_verify_is_not_sent() -> None:
    claude = ReasoningBlock(
        "anthropic", "text", "native thinking", signature="anthropic-sig", model="claude-sonnet-4-5"
    )
    gpt = ReasoningBlock(
        "openrouter", "encrypted", data="gAAAA-openai", format="openai-responses-v1", model="openai/gpt-5"
    )
    plain = ReasoningBlock("openai", "text", "deepseek thoughts", model=GEMINI)
    assert "reasoning_details" not in assistant_wire(claude, gpt, plain, CALL)
    assert assistant_wire(claude, gpt, THOUGHT, CALL)["reasoning_details"][0]["signature"] == "sig-1"
    to_gpt = assistant_wire(claude, gpt, THOUGHT, CALL, model="openai/gpt-5")["reasoning_details"]
    assert [item["data"] for item in to_gpt] == ["gAAAA-openai"]
    from_caller = replace(SEALED, model=None)  # a /v1 caller's own details go back wherever it sends them
    assert len(assistant_wire(from_caller, CALL, model="openai/gpt-5")["reasoning_details"]) == 1


def test_openai_compatible_reasoning_content_only_beside_tool_calls() -> None:
    deepseek = "deepseek-reasoner"
    thought = ReasoningBlock("openai", "text", "Need the file list.", model=deepseek)
    wire = assistant_wire(thought, CALL, kind="openai_compatible", model=deepseek)
    assert wire["reasoning_content"] == "Need the file list." and "reasoning_details" not in wire
    assert "reasoning_content" not in assistant_wire(
        thought, TextBlock("Done."), kind="openai_compatible", model=deepseek
    )
    assert "reasoning_content" not in assistant_wire(thought, CALL, kind="openai_compatible", model="qwen3:8b")
    assert "reasoning_content" not in assistant_wire(THOUGHT, CALL, kind="openai_compatible", model=GEMINI)


# --- reasoning: non-streamed responses -------------------------------------------------------------------------


def test_reasoning_details_become_blocks_before_text_and_tool_calls() -> None:
    details = [
        {
            "type": "reasoning.summary",
            "summary": "Summed up.",
            "id": "rs-0",
            "format": "openai-responses-v1",
            "index": 0,
        },
        {
            "type": "reasoning.encrypted",
            "data": "gAAAA\u2603==",
            "id": "rs-1",
            "format": "openai-responses-v1",
            "index": 1,
        },
        {"type": "reasoning.unknown", "text": "?"},
        "not an item",
    ]
    call = {"id": "call_1", "type": "function", "function": {"name": "run_shell_command", "arguments": "{}"}}
    message = {"content": "Answer.", "reasoning": "Summed up.", "reasoning_details": details, "tool_calls": [call]}
    response = parse(completion(message))
    summary, sealed, text, tool = response.content
    assert summary == ReasoningBlock(
        "openrouter", "summary", "Summed up.", id="rs-0", format="openai-responses-v1", index=0, model="asked/model"
    )
    assert isinstance(sealed, ReasoningBlock) and sealed.data == "gAAAA\u2603==" and sealed.text == ""
    assert text == TextBlock("Answer.") and isinstance(tool, ToolUseBlock)
    assert response.reasoning_text == "Summed up."


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_plain_reasoning_text_without_details_is_one_openai_block(field: str) -> None:
    response = parse(completion({"content": "42", field: "Six times seven.", "reasoning_details": []}))
    assert response.content == (
        ReasoningBlock("openai", "text", "Six times seven.", model="asked/model"),
        TextBlock("42"),
    )


@pytest.mark.parametrize(
    "message",
    [{"content": "x", "reasoning": None}, {"content": "x", "reasoning": ""}, {"content": "x", "reasoning": 7}],
)
def test_no_reasoning_means_no_reasoning_blocks(message: dict[str, Any]) -> None:
    assert parse(completion(message)).content == (TextBlock("x"),)


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"prompt_tokens": 1, "completion_tokens": 2}, None),
        ({"completion_tokens_details": {"image_tokens": 0}}, None),
        ({"completion_tokens_details": {"reasoning_tokens": 0}}, 0),
        ({"completion_tokens_details": {"reasoning_tokens": 640}}, 640),
    ],
)
def test_reasoning_tokens_none_unless_the_upstream_said(details: dict[str, Any], expected: int | None) -> None:
    usage = parse_usage(details)
    assert usage is not None and usage.reasoning_tokens == expected


# --- reasoning: streamed ---------------------------------------------------------------------------------------


def reasoning_chunk(text: str | None = None, *details: dict[str, Any], content: str = "") -> str:
    delta: dict[str, Any] = {"role": "assistant", "content": content, "reasoning": text}
    if details:
        delta["reasoning_details"] = list(details)
    return chunk(delta)


def finished(*payloads: str) -> tuple[list[Any], ProviderResponse]:
    events = assemble(*payloads, chunk({"content": ""}, "stop"), "[DONE]")
    assert isinstance(events[-1], Finish)
    return events[:-1], events[-1].response


def piece(index: int | None, **fields: Any) -> dict[str, Any]:
    return {
        "type": "reasoning.text",
        "format": "anthropic-claude-v1",
        **fields,
        **({} if index is None else {"index": index}),
    }


def test_streamed_pieces_of_one_item_merge_by_index() -> None:
    events, response = finished(
        reasoning_chunk("Let", piece(0, text="Let", id="rs-a")),
        reasoning_chunk(" me compute.", piece(0, text=" me compute.")),
        reasoning_chunk(None, piece(0, signature="Et8BCmUI/+==")),
        chunk({"content": "391"}),
    )
    assert events == [ReasoningDelta("Let"), ReasoningDelta(" me compute."), TextDelta("391")]
    block = ReasoningBlock(
        "openrouter",
        "text",
        "Let me compute.",
        signature="Et8BCmUI/+==",
        id="rs-a",
        format="anthropic-claude-v1",
        index=0,
        model="asked/model",
    )
    assert response.content == (block, TextBlock("391"))


def test_details_without_a_reasoning_string_are_the_readable_delta_and_never_twice() -> None:
    events, response = finished(
        reasoning_chunk(None, piece(0, text="a"), {"type": "reasoning.summary", "summary": "b", "index": 1}),
        reasoning_chunk("c", piece(0, text="c")),
    )
    assert events == [ReasoningDelta("ab"), ReasoningDelta("c")]
    assert [block.text for block in response.reasoning] == ["ac", "b"]
    assert response.reasoning[1].kind == "summary"


def test_a_new_type_at_a_known_index_and_pieces_without_index_are_separate_items() -> None:
    sealed = {"type": "reasoning.encrypted", "data": "tool-sig\u00ff", "id": "tool_call_1", "index": 0}
    _, response = finished(
        reasoning_chunk("x", piece(0, text="x")),
        reasoning_chunk(None, sealed),
        reasoning_chunk("y", piece(None, text="y")),
        reasoning_chunk("z", piece(None, text="z")),
    )
    kinds = [(block.kind, block.text, block.data, block.index) for block in response.reasoning]
    assert kinds == [
        ("text", "x", None, 0),
        ("encrypted", "", "tool-sig\u00ff", 0),
        ("text", "y", None, None),
        ("text", "z", None, None),
    ]


def test_plain_streamed_reasoning_is_one_openai_block_first_in_the_content() -> None:
    events, response = finished(
        chunk({"reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing.", "content": "Hi"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "noop", "arguments": "{}"}}]}),
    )
    assert events[:3] == [ReasoningDelta("Think"), ReasoningDelta("ing."), TextDelta("Hi")]
    thought, text, call = response.content
    assert thought == ReasoningBlock("openai", "text", "Thinking.", model="asked/model")
    assert text == TextBlock("Hi") and isinstance(call, ToolUseBlock)


@pytest.mark.parametrize(
    "junk",
    [
        {"reasoning": 5},
        {"reasoning_details": "x"},
        {"reasoning_details": [1, None, []]},
        {"reasoning_details": [{"index": True, "text": "t"}]},
    ],
)
def test_malformed_reasoning_deltas_are_ignored(junk: dict[str, Any]) -> None:
    events, response = finished(chunk(junk), chunk({"content": "ok"}))
    assert events == [TextDelta("ok")] and response.content == (TextBlock("ok"),)


def test_a_stream_without_reasoning_has_no_reasoning_blocks_or_events() -> None:
    events, response = finished(chunk({"content": "plain", "reasoning": None, "reasoning_details": []}))
    assert events == [TextDelta("plain")] and response.reasoning == ()


REASONING_REPLY = tool_call_reply(
    [("call_1", "run_shell_command", '{"command": "ls"}')],
    text="Listing.",
    reasoning=[
        Thought("I should look at the files first, then answer.", signature="c2lnLTE="),
        Thought(encrypted="ENCRYPTED/+=\u00e9data"),
        Thought("Then summarise.", signature=None),
    ],
    usage=Usage(reasoning_tokens=64),
)


def sse_parse(pieces: list[bytes]) -> list[Any]:
    decoder = SSEDecoder()
    assembler = StreamAssembler(provider="openrouter", requested_model=GEMINI, secrets=(KEY,))
    events: list[Any] = []
    for batch in (*(decoder.feed(part) for part in pieces), decoder.close()):
        for sse in batch:
            events.extend(assembler.feed(sse.data))
    return events


def test_reasoning_stream_split_at_every_byte_gives_identical_blocks() -> None:
    raw = b"".join(stream_events(REASONING_REPLY, "gen-split", GEMINI))
    whole = sse_parse([raw])
    response = whole[-1].response
    assert [block.kind for block in response.reasoning] == ["text", "encrypted", "text"]
    assert [reasoning_detail(block) for block in response.reasoning] == reasoning_details(
        REASONING_REPLY.reasoning, "gen-split"
    )
    assert sse_parse([raw[i : i + 1] for i in range(len(raw))]) == whole
    for cut in range(1, len(raw)):
        assert sse_parse([raw[:cut], raw[cut:]]) == whole


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1000])
def test_reasoning_pieces_of_any_size_merge_to_the_same_items(size: int) -> None:
    reply = replace(REASONING_REPLY, chunk_size=size)
    events = sse_parse([b"".join(stream_events(reply, "gen-size", GEMINI))])
    response = events[-1].response
    assert [reasoning_detail(block) for block in response.reasoning] == reasoning_details(reply.reasoning, "gen-size")
    readable = "".join(event.text for event in events if isinstance(event, ReasoningDelta))
    assert readable == "".join(thought.text for thought in reply.reasoning)
    assert response.usage is not None and response.usage.reasoning_tokens == 64
