"""The OpenRouter client against the fake OpenRouter on loopback: what it sends (headers, routing, tool
messages, cache breakpoints) and what it makes of every reply shape, trap (reference §C 1–3, 6, 7) and error."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from t_koma.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
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
from t_koma.providers.base import ProviderSpec, Timeouts
from t_koma.providers.openrouter import OpenRouterProvider
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
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

MakeProvider = Callable[..., OpenRouterProvider]
SHELL = ToolDefinition(
    "run_shell_command", "Run a shell command", {"type": "object", "properties": {"command": {"type": "string"}}}
)


@pytest.fixture
async def make_provider(fake_openrouter: FakeUpstream) -> AsyncIterator[MakeProvider]:
    made: list[OpenRouterProvider] = []

    def make(model: str = "openai/gpt-4o-mini", **fields: Any) -> OpenRouterProvider:
        fields.setdefault("base_url", fake_openrouter.base_url)
        fields.setdefault("api_key", TEST_KEY)
        provider = OpenRouterProvider(ProviderSpec(kind="openrouter", model=model, **fields))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def ask(text: str = "Hi", **fields: Any) -> ConversationRequest:
    return ConversationRequest(messages=(Message.user(text),), **fields)


async def collect(provider: OpenRouterProvider, request: ConversationRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


async def call(provider: OpenRouterProvider, request: ConversationRequest, stream: bool) -> ProviderResponse:
    if not stream:
        return await provider.complete(request)
    events = await collect(provider, request)
    assert isinstance(events[-1], Finish)
    return events[-1].response


# --- what we send -------------------------------------------------------------------------------------------


async def test_bearer_key_and_attribution_headers(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    provider = make_provider(http_referer="https://t-koma.example", app_name="t-koma tests")
    await provider.complete(ask())
    headers = fake_openrouter.app.chat_requests[-1].headers
    assert headers["authorization"] == f"Bearer {TEST_KEY}"
    assert headers["http-referer"] == "https://t-koma.example"
    assert headers["x-title"] == "t-koma tests" and headers["x-openrouter-title"] == "t-koma tests"
    assert fake_openrouter.app.chat_requests[-1].path == "/api/v1/chat/completions"


async def test_no_attribution_headers_unless_configured(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    await make_provider().complete(ask())
    headers = fake_openrouter.app.chat_requests[-1].headers
    assert not {"http-referer", "x-title", "x-openrouter-title"} & set(headers)


async def test_provider_routing_only_when_configured(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    await make_provider().complete(ask())
    assert "provider" not in fake_openrouter.app.last_body
    await make_provider(routing=(" groq ", "", "together"), allow_fallbacks=False).complete(ask())
    assert fake_openrouter.app.last_body["provider"] == {"order": ["groq", "together"], "allow_fallbacks": False}
    await make_provider(allow_fallbacks=True).complete(ask())
    assert fake_openrouter.app.last_body["provider"] == {"allow_fallbacks": True}
    await make_provider(routing=("  ",)).complete(ask())
    assert "provider" not in fake_openrouter.app.last_body


async def test_routing_is_sent_on_streaming_calls_too(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    await collect(make_provider(routing=("moonshotai",)), ask())
    assert fake_openrouter.app.last_body["provider"] == {"order": ["moonshotai"]}
    assert fake_openrouter.app.last_body["stream"] is True


async def test_conversation_with_tools_goes_out_in_openai_format(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    history = [
        Message.user("list files"),
        Message("assistant", (ToolUseBlock("call_1", "run_shell_command", {"command": "ls"}),)),
        Message("user", (ToolResultBlock("call_1", "a.txt\nb.txt"),)),
    ]
    provider = make_provider(max_tokens=321)
    await provider.send_conversation([SystemBlock("You are t-koma.")], history, [SHELL], "and now?", None, "auto")
    body = fake_openrouter.app.last_body
    assert body["model"] == "openai/gpt-4o-mini" and body["max_tokens"] == 321 and body["tool_choice"] == "auto"
    assert body["tools"][0]["function"]["name"] == "run_shell_command"
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert body["messages"][2]["tool_calls"][0]["function"] == {
        "name": "run_shell_command",
        "arguments": '{"command":"ls"}',
    }
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"}


async def test_message_limit_keeps_a_tool_call_with_its_result(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    history = [
        Message.user("old question"),
        Message("assistant", (TextBlock("old answer"),)),
        Message.user("list files"),
        Message("assistant", (ToolUseBlock("call_1", "run_shell_command", {"command": "ls"}),)),
        Message("user", (ToolResultBlock("call_1", "a.txt"),)),
        Message("assistant", (TextBlock("there is a.txt"),)),
    ]
    await make_provider().send_conversation(None, history, [SHELL], "thanks", 3, None)
    roles = [m["role"] for m in fake_openrouter.app.last_body["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]  # never a tool result without its call


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash"])
async def test_cache_breakpoints_for_upstreams_that_need_them(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, model: str
) -> None:
    request = ConversationRequest(system=(SystemBlock("long stable prompt"),), messages=(Message.user("hi"),))
    await make_provider(model).complete(request)
    system, user = fake_openrouter.app.last_body["messages"]
    assert system["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert user["content"][-1] == {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}


async def test_no_cache_breakpoints_for_automatically_caching_upstreams(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    request = ConversationRequest(system=(SystemBlock("prompt"),), messages=(Message.user("hi"),))
    await make_provider("openai/gpt-4o-mini").complete(request)
    assert "cache_control" not in str(fake_openrouter.app.last_body)


# --- what we parse: §C traps --------------------------------------------------------------------------------


async def test_keepalive_comments_in_the_stream_are_skipped(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    # §C1: `: OPENROUTER PROCESSING` before and between chunks.
    fake_openrouter.app.enqueue(text_reply("Hello from the stream", chunk_size=3))
    events = await collect(make_provider(), ask())
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert "".join(deltas) == "Hello from the stream" and len(deltas) == 7
    assert isinstance(events[-1], Finish) and events[-1].response.text == "Hello from the stream"


async def test_whitespace_before_a_non_streaming_body(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    # §C2: newlines sent as keep-alive before the JSON of a slow non-streaming call.
    fake_openrouter.app.enqueue(text_reply("Slow but fine", keepalive=True))
    response = await make_provider().complete(ask())
    assert response.text == "Slow but fine" and response.upstream_provider == "FakeProvider"


@pytest.mark.parametrize("stream", [True, False])
async def test_cache_tokens_cost_and_reasoning_are_kept(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    # §C3: the final streamed usage chunk carries a choice; its cached tokens and cost must not be lost.
    usage = Usage(
        input_tokens=1000,
        output_tokens=50,
        cache_read_tokens=900,
        cache_creation_tokens=40,
        reasoning_tokens=30,
        cost=0.000847,
    )
    fake_openrouter.app.enqueue(text_reply("cached", usage=usage))
    response = await call(make_provider(), ask(), stream)
    assert response.usage == ProviderUsage(1000, 50, 900, 40, 30, 0.000847)


async def test_usage_fields_not_sent_stay_none(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    fake_openrouter.app.enqueue(text_reply("plain", usage=Usage(input_tokens=3, output_tokens=1)))
    events = await collect(make_provider(), ask())
    usage_events = [event for event in events if isinstance(event, UsageEvent)]
    assert usage_events == [UsageEvent(ProviderUsage(3, 1, None, None, None, None))]  # exactly one, never doubled


async def test_no_usage_at_all_is_none(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    fake_openrouter.app.enqueue(text_reply("no usage", usage=None))
    assert (await make_provider().complete(ask())).usage is None


@pytest.mark.parametrize("partial", ["", "Half of the ans"])
async def test_midstream_error_chunk_is_a_typed_error_keeping_partial_text(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, partial: str
) -> None:
    # §C6: HTTP 200, then an `error` chunk with finish_reason "error" (as the only event, or after some text).
    fake_openrouter.app.enqueue(midstream_error_reply(partial, code=502, message="Provider disconnected"))
    seen: list[str] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in make_provider().stream(ask()):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert caught.value.partial_text == partial == "".join(seen)
    assert caught.value.upstream_provider == "FakeProvider" and caught.value.retryable


async def test_finish_reason_error_in_a_non_streaming_body(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    fake_openrouter.app.enqueue(midstream_error_reply("Partial", code=429, message="Upstream rate limited"))
    with pytest.raises(RateLimitError) as caught:
        await make_provider().complete(ask())
    assert caught.value.partial_text == "Partial"


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_calls_arrive_whole_with_ids_and_parsed_arguments(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    # §C7: id only in a call's first delta, arguments split over many chunks, empty arguments, broken arguments.
    calls = [
        ("call_1", "run_shell_command", '{"command": "echo hi && ls -la /tmp"}'),
        ("call_2", "noop", ""),
        ("call_3", "run_shell_command", '{"command": "ec'),
    ]
    fake_openrouter.app.enqueue(tool_call_reply(calls, text="Running.", chunk_size=3))
    response = await call(make_provider(), ask(tools=(SHELL,)), stream)
    first, empty, broken = response.tool_calls
    assert first == ToolUseBlock("call_1", "run_shell_command", {"command": "echo hi && ls -la /tmp"})
    assert empty == ToolUseBlock("call_2", "noop", {})
    assert broken.id == "call_3" and broken.raw_arguments == '{"command": "ec' and broken.arguments_error is not None
    assert response.text == "Running." and response.stop_reason == "tool_calls"


async def test_streamed_tool_calls_are_emitted_once(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    fake_openrouter.app.enqueue(tool_call_reply([("call_1", "run_shell_command", '{"command": "ls"}')]))
    events = await collect(make_provider(), ask(tools=(SHELL,)))
    assert [type(event) for event in events] == [ToolCallEvent, UsageEvent, Finish]


async def test_cut_stream_is_a_retryable_error_keeping_partial_text(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    fake_openrouter.app.enqueue(cut_stream_reply("The answer is"))
    with pytest.raises(UpstreamError) as caught:
        await collect(make_provider(), ask())
    assert caught.value.retryable and caught.value.partial_text == "The answer is"


async def test_stream_without_done_after_finish_is_complete(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    chunk = b'data: {"id":"g","model":"m","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
    fake_openrouter.app.enqueue(raw_reply(b": OPENROUTER PROCESSING\r\n\r\n", chunk))
    events = await collect(make_provider(), ask())
    assert isinstance(events[-1], Finish) and events[-1].response.text == "ok"


async def test_a_server_that_ignores_stream_true_still_works(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    body = b'{"id":"g","model":"m","choices":[{"index":0,"message":{"content":"whole"},"finish_reason":"stop"}]}'
    fake_openrouter.app.enqueue(raw_reply(body, content_type="application/json"))
    events = await collect(make_provider(), ask())
    assert events[0] == TextDelta("whole") and isinstance(events[-1], Finish)


# --- every error class --------------------------------------------------------------------------------------

ERROR_CASES: list[tuple[int, type[ProviderError], dict[str, Any]]] = [
    (400, BadRequestError, {}),
    (401, AuthenticationError, {}),
    (402, InsufficientCreditsError, {}),
    (
        403,
        PermissionDeniedError,
        {"metadata": {"reasons": ["self-harm"], "flagged_input": "x", "provider_name": "OpenAI"}},
    ),
    (404, ModelNotFoundError, {}),
    (408, RequestTimeoutError, {}),
    (429, RateLimitError, {"headers": {"Retry-After": "7"}}),
    (500, UpstreamError, {}),
    (502, UpstreamError, {"metadata": {"provider_name": "Anthropic", "raw": '{"type":"overloaded_error"}'}}),
    (503, OverloadedError, {"headers": {"Retry-After": "3"}}),
]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("status", "kind", "extra"), ERROR_CASES)
async def test_http_errors_map_to_typed_errors(
    fake_openrouter: FakeUpstream,
    make_provider: MakeProvider,
    status: int,
    kind: type[ProviderError],
    extra: dict[str, Any],
    stream: bool,
) -> None:
    fake_openrouter.app.enqueue(error_reply(status, f"failure {status}", **extra))
    with pytest.raises(kind) as caught:
        await call(make_provider(), ask(), stream)
    error = caught.value
    assert type(error) is kind and error.status == status and f"failure {status}" in error.message
    assert error.to_dict() == {"error": {"message": error.message, "type": kind.error_type, "status": status}}
    if status == 403:
        assert isinstance(error, PermissionDeniedError) and error.reasons == ("self-harm",)
    if status in (429, 503):
        assert getattr(error, "retry_after", None) == float(extra["headers"]["Retry-After"])
    if status == 502:
        assert error.upstream_provider == "Anthropic" and error.raw == '{"type":"overloaded_error"}'


async def test_402_can_only_afford(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    message = "This request requires more credits, or fewer max_tokens. You requested up to 8192 tokens, but can only "
    message += "afford 2048."
    fake_openrouter.app.enqueue(error_reply(402, message))
    with pytest.raises(InsufficientCreditsError) as caught:
        await make_provider().complete(ask())
    assert caught.value.affordable_tokens == 2048 and not caught.value.retryable


@pytest.mark.parametrize("stream", [True, False])
async def test_garbage_body_is_an_invalid_response(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    fake_openrouter.app.enqueue(garbage_reply("<html>oops</html>"))
    with pytest.raises(InvalidResponseError) as caught:
        await call(make_provider(), ask(), stream)
    assert caught.value.retryable and "oops" in caught.value.message


@pytest.mark.parametrize("stream", [True, False])
async def test_stall_beyond_the_read_timeout_is_a_timeout(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    fake_openrouter.app.enqueue(stall_reply(10, partial_text="Thinking" if stream else ""))
    provider = make_provider(timeouts=Timeouts(connect=5, read=0.3))
    with pytest.raises(RequestTimeoutError) as caught:
        await call(provider, ask(), stream)
    assert caught.value.retryable
    if stream:
        assert caught.value.partial_text == "Thinking"


async def test_connection_refused_is_a_connection_error(make_provider: MakeProvider) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = make_provider(base_url=f"http://127.0.0.1:{port}/api/v1")
    for attempt in (provider.complete(ask()), collect(provider, ask()), provider.list_models()):
        with pytest.raises(ConnectionFailedError) as caught:
            await attempt
        assert caught.value.retryable and TEST_KEY not in caught.value.message


async def test_keys_never_appear_in_errors(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    leaky = f"Invalid key Bearer {TEST_KEY} (key {TEST_KEY})"
    fake_openrouter.app.enqueue(
        error_reply(401, leaky, metadata={"raw": TEST_KEY}),
        midstream_error_reply("x", message=leaky),
        garbage_reply(f"garbage with {TEST_KEY}"),
    )
    provider = make_provider()
    for stream in (False, True, False):
        with pytest.raises(ProviderError) as caught:
            await call(provider, ask(), stream)
        rendered = f"{caught.value} {caught.value.to_dict()} {caught.value.raw} {caught.value!r}"
        assert TEST_KEY not in rendered and "***" in rendered


async def test_provider_is_reusable_after_a_stream_abandoned_early(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    fake_openrouter.app.enqueue(text_reply("a long answer " * 20, chunk_size=2), text_reply("second"))
    provider = make_provider()
    stream = provider.stream(ask())
    async for event in stream:
        assert isinstance(event, TextDelta)
        break
    await stream.aclose()
    assert (await provider.complete(ask())).text == "second"


async def test_send_message_default_path(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    response = await make_provider().send_message("ping")
    assert response.text == "Hello from the fake upstream."
    assert fake_openrouter.app.last_body["messages"] == [{"role": "user", "content": "ping"}]


# --- catalog endpoint ---------------------------------------------------------------------------------------


async def test_list_models_typed_with_prices_per_token(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    models = await make_provider().list_models()
    by_id = {model.id: model for model in models}
    assert [model.id for model in models][:2] == ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4.5"]
    mini = by_id["openai/gpt-4o-mini"]
    assert mini.prompt_price == pytest.approx(0.00000015) and mini.completion_price == pytest.approx(0.0000006)
    assert mini.context_length == 128000 and mini.supports_tools
    assert not by_id["mistralai/mistral-7b-instruct"].supports_tools
    assert by_id["openrouter/auto"].prompt_price is None  # "-1": price varies
    assert fake_openrouter.app.requests[-1].path == "/api/v1/models"
