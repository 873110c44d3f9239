"""`/v1` with the official `openai` SDK as the client: completions streaming and not, usage with cache and
cost fields, tools passed through (never run), fallback, OpenAI-shaped errors with the right status, and
`/v1/models`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import openai
import orjson
import pytest

from t_koma.config.loader import load_config
from t_koma.gateway.openai_convert import RequestError, completion, parse_request
from t_koma.messages import ProviderResponse, ProviderUsage, ReasoningBlock, ReasoningConfig, TextBlock
from t_koma.providers.reasoning import block_from_detail, reasoning_detail
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import (
    Thought,
    Usage,
    error_reply,
    midstream_error_reply,
    stall_reply,
    text_reply,
    tool_call_reply,
)
from tests.gateway.conftest import BASE_CONFIG, RunningGateway, run_gateway, until, write_config

USAGE = Usage(input_tokens=10, output_tokens=3, cache_read_tokens=4, cache_creation_tokens=2, cost=0.001)
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.token, max_retries=0) as client:
        yield client


async def test_a_completion_through_the_sdk(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.app.enqueue(text_reply("Hi there!", usage=USAGE))
    raw = await sdk.chat.completions.with_raw_response.create(
        model="fast",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        temperature=0.2,
        max_tokens=50,
    )
    assert float(raw.headers["x-t-koma-overhead-ms"]) >= 0
    assert raw.headers["x-t-koma-served-by"] == "fast"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hi there!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "openai/gpt-4o-mini"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 3, 13)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 4
    assert usage.model_extra == {"cache_write_tokens": 2, "cost": 0.001}
    sent = fake.app.last_body
    assert sent["model"] == "openai/gpt-4o-mini"
    assert sent["temperature"] == 0.2  # unknown-to-t-koma fields pass through
    assert sent["max_tokens"] == 50
    assert sent["messages"][-1] == {"role": "user", "content": "Hello"}
    assert "Be brief." in str(sent["messages"][0])


async def test_a_streamed_completion_through_the_sdk(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.app.enqueue(text_reply("Streaming works fine.", usage=USAGE, chunk_size=5))
    stream = await sdk.chat.completions.create(
        model="openrouter/openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Streaming works fine."
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (10, 3)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 4
    assert usage.model_extra == {"cache_write_tokens": 2, "cost": 0.001}
    assert len({c.id for c in chunks}) == 1
    assert fake.app.last_body["stream"] is True


async def test_tool_calls_are_returned_to_the_caller_not_run(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.app.enqueue(
        tool_call_reply([("call_w1", "get_weather", '{"city": "Oslo"}')]),
        text_reply("It is cold in Oslo."),
    )
    first = await sdk.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("call_w1", "get_weather", '{"city":"Oslo"}')
    sent_tools = fake.app.last_body["tools"]
    assert sent_tools[0]["function"]["name"] == "get_weather"
    assert all(t["function"]["name"] != "run_shell_command" for t in sent_tools)  # no server-side tools here
    second = await sdk.chat.completions.create(
        model="fast",
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_w1", "content": "-12 C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == "It is cold in Oslo."
    sent = fake.app.last_body["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "call_w1"
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "-12 C"}


async def test_streamed_tool_calls(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.app.enqueue(tool_call_reply([("call_a", "get_weather", '{"city": "Rome"}')]))
    stream = await sdk.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Rome?"}], tools=[WEATHER_TOOL], stream=True
    )
    chunks = [chunk async for chunk in stream]
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert [(c.index, c.id, c.function.name if c.function else None) for c in calls] == [(0, "call_a", "get_weather")]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


async def test_an_unknown_model_is_a_404_in_openai_shape(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.chat.completions.create(model="no-such-alias", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"
    assert "no-such-alias" in raised.value.message


async def test_an_upstream_rate_limit_keeps_status_and_retry_after(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.app.enqueue(error_reply(429, "Rate limited", headers={"Retry-After": "120"}))
    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "120"
    assert raised.value.type == "rate_limit_error"


async def test_an_upstream_that_refuses_the_gateways_key_is_a_502(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.app.enqueue(error_reply(401, "No auth credentials found"))
    with pytest.raises(openai.APIStatusError) as raised:
        await sdk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 502  # the caller's token was fine
    assert raised.value.code == "authentication_error"


async def test_a_mid_stream_failure_arrives_as_an_error_chunk(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.app.enqueue(midstream_error_reply("partial words", code=502, message="Provider disconnected"))
    stream = await sdk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = ""
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text == "partial words"
    assert "Provider disconnected" in raised.value.message


async def test_fallback_and_exhaustion_through_a_chain(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG.replace('default_model = "fast"', 'default_model = ["fast", "backup"]'))
    fake = fake_openrouter.app
    async with (
        run_gateway(load_config()) as gateway,
        openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.token, max_retries=0) as sdk,
    ):
        fake.enqueue(error_reply(503, "Overloaded"), text_reply("From the backup."))
        raw = await sdk.chat.completions.with_raw_response.create(
            model="default", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert raw.headers["x-t-koma-served-by"] == "backup"
        chunks = [chunk async for chunk in raw.parse()]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "From the backup."
        # fast is cooling down since it failed, so only backup is tried; it fails too: the chain is exhausted.
        fake.enqueue(error_reply(503, "Still overloaded"))
        calls_before = len(fake.chat_requests)
        with pytest.raises(openai.InternalServerError) as raised:
            await sdk.chat.completions.create(
                model="fast", extra_body={"models": ["backup"]}, messages=[{"role": "user", "content": "hi"}]
            )
        assert len(fake.chat_requests) == calls_before + 1
        assert raised.value.status_code == 503
        assert raised.value.code == "all_models_exhausted"
        body: Any = raised.value.body
        attempts = {a["model"]: a["error"] for a in body["attempts"]}
        assert list(attempts) == ["fast", "backup"]
        assert "cooling down" in attempts["fast"]
        assert "Still overloaded" in attempts["backup"]


async def test_models_lists_aliases_then_catalogs(sdk: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in sdk.models.list()]
    assert ids[:2] == ["fast", "backup"]
    assert "openrouter/openai/gpt-4o-mini" in ids
    assert ids.index("openrouter/openai/gpt-4o-mini") > ids.index("backup")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "fast"}', "messages"),
        (b'{"model": "fast", "messages": [{"role": "wizard", "content": "hi"}]}', "messages"),
        (b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}', "max_tokens"),
        (
            b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "max"}',
            "reasoning_effort",
        ),
        (
            b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "reasoning": {"effort": 1}}',
            "reasoning",
        ),
    ],
)
async def test_bad_requests_are_400_in_openai_shape(gateway: RunningGateway, body: bytes, param: str | None) -> None:
    headers = {**gateway.auth_headers, "Content-Type": "application/json"}
    async with gateway.http() as http, http.post("/v1/chat/completions", data=body, headers=headers) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error.get("param") == param
    assert error["message"]


async def test_a_client_that_hangs_up_mid_stream_stops_the_upstream_call(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    fake.app.enqueue(stall_reply(30, partial_text="first words"))
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with gateway.http() as http:
        response = await http.post("/v1/chat/completions", json=body, headers=gateway.auth_headers)
        assert response.status == 200
        first = await response.content.readuntil(b"\n\n")
        assert b'"role":"assistant"' in first
        await until(lambda: gateway.state.v1_streams == 1)
        response.close()  # hang up while the upstream is still stalling
    await until(lambda: gateway.state.v1_streams == 0)


# --- reasoning: conversion (request parameters, messages sent back, response shapes) ---------------------------

GEMINI_DETAILS: list[dict[str, Any]] = [
    {"type": "reasoning.text", "text": "Look up Oslo.", "format": "google-gemini-v1", "index": 0},
    {"type": "reasoning.encrypted", "data": "c2lnbmVk+/=", "format": "google-gemini-v1", "index": 1, "id": "tool_1"},
]
CLAUDE_DETAILS: list[dict[str, Any]] = [
    {"type": "reasoning.text", "text": "Think.", "signature": "sig-1", "format": "anthropic-claude-v1", "index": 0},
    {"type": "reasoning.encrypted", "data": "opaque", "format": "anthropic-claude-v1", "index": 1},
]


def request_with(**fields: Any) -> bytes:
    return orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}], **fields})


def assistant_turn(**fields: Any) -> bytes:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [call], **fields},
        {"role": "tool", "tool_call_id": "c1", "content": "-12 C"},
    ]
    return orjson.dumps({"model": "fast", "messages": messages})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"reasoning": {"effort": "high", "exclude": True}}, ReasoningConfig(effort="high", exclude=True)),
        ({"reasoning": {"max_tokens": 8000}}, ReasoningConfig(max_tokens=8000)),
        ({"reasoning": {"enabled": False}}, ReasoningConfig(enabled=False)),
        ({"reasoning_effort": "minimal"}, ReasoningConfig(effort="minimal")),
        ({"reasoning_effort": "low", "reasoning": {"exclude": True}}, ReasoningConfig(effort="low", exclude=True)),
        ({"reasoning": None, "reasoning_effort": None}, None),
        ({}, None),
    ],
)
def test_reasoning_parameters_become_the_requests_reasoning(fields: dict[str, Any], expected: Any) -> None:
    parsed = parse_request(request_with(temperature=0.5, **fields), ("fast",))

    assert parsed.conversation.reasoning == expected
    assert dict(parsed.conversation.extra) == {"temperature": 0.5}  # mapped, not passed through a second time


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"reasoning": {"effort": "extreme"}}, "reasoning", "none, minimal, low, medium, high, xhigh"),
        ({"reasoning_effort": "max"}, "reasoning_effort", "none, minimal, low, medium, high, xhigh"),
        ({"reasoning": "high"}, "reasoning", "effort, max_tokens, exclude, enabled"),
        ({"reasoning": {"effort": "low", "max_tokens": 10}}, "reasoning", "not both"),
        ({"reasoning": {"max_tokens": 0}}, "reasoning", "positive integer"),
        ({"reasoning": {"exclude": "yes"}}, "reasoning", "boolean"),
        ({"reasoning": {"summary": "auto"}}, "reasoning", "unknown key 'summary'"),
        ({"reasoning": {"effort": "low"}, "reasoning_effort": "high"}, "reasoning_effort", "one reasoning amount"),
    ],
)
def test_bad_reasoning_parameters_are_refused(fields: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(RequestError) as raised:
        parse_request(request_with(**fields), ("fast",))

    assert raised.value.param == param and words in raised.value.message


def test_reasoning_details_sent_back_come_first_in_their_message() -> None:
    parsed = parse_request(assistant_turn(reasoning="Look up Oslo.", reasoning_details=GEMINI_DETAILS), ("fast",))

    assistant = parsed.conversation.messages[1]
    assert [type(block).__name__ for block in assistant.content] == [
        "ReasoningBlock",
        "ReasoningBlock",
        "TextBlock",
        "ToolUseBlock",
    ]
    assert [reasoning_detail(block) for block in assistant.reasoning] == GEMINI_DETAILS
    assert {(block.origin, block.model) for block in assistant.reasoning} == {("openrouter", None)}


def test_claude_items_sent_back_also_become_native_thinking_for_the_anthropic_api() -> None:
    parsed = parse_request(assistant_turn(reasoning_details=CLAUDE_DETAILS), ("fast",))

    blocks = parsed.conversation.messages[1].reasoning
    assert [(b.origin, b.kind) for b in blocks] == [
        ("anthropic", "text"),
        ("anthropic", "encrypted"),
        ("openrouter", "text"),
        ("openrouter", "encrypted"),
    ]
    assert (blocks[0].text, blocks[0].signature, blocks[1].data) == ("Think.", "sig-1", "opaque")


def test_plain_reasoning_text_sent_back_is_openai_reasoning() -> None:
    parsed = parse_request(assistant_turn(reasoning_content="Hmm, Oslo."), ("fast",))

    [block] = parsed.conversation.messages[1].reasoning
    assert (block.origin, block.kind, block.text, block.model) == ("openai", "text", "Hmm, Oslo.", None)


@pytest.mark.parametrize(
    "fields", [{"reasoning_details": {"type": "reasoning.text"}}, {"reasoning_details": ["x"]}, {"reasoning": 3}]
)
def test_malformed_reasoning_in_a_message_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as raised:
        parse_request(assistant_turn(**fields), ("fast",))

    assert raised.value.param == "messages" and "messages[1]" in raised.value.message


def test_a_response_carries_its_reasoning_in_openrouters_shapes() -> None:
    gemini = [block_from_detail(item, "google/gemini-3-pro-preview") for item in GEMINI_DETAILS]
    claude = (
        ReasoningBlock("anthropic", "text", "Think.", signature="sig-1", format="anthropic-claude-v1", model="c"),
        ReasoningBlock("anthropic", "encrypted", data="opaque", model="c"),
    )
    usage = ProviderUsage(input_tokens=5, output_tokens=40, reasoning_tokens=32)

    from_gemini = completion(
        ProviderResponse("gen-1", "g", (*filter(None, gemini), TextBlock("Cold.")), usage, "stop"), "g"
    )
    from_claude = completion(ProviderResponse("", "c", (*claude, TextBlock("Cold.")), None, "end_turn"), "c")
    plain = completion(
        ProviderResponse("", "d", (ReasoningBlock("openai", text="Hm."), TextBlock("Cold.")), None, "stop"), "d"
    )
    none = completion(ProviderResponse("", "d", (TextBlock("Cold."),), None, "stop"), "d")

    message = from_gemini["choices"][0]["message"]
    assert (message["reasoning"], message["reasoning_details"]) == ("Look up Oslo.", GEMINI_DETAILS)
    assert from_gemini["usage"]["completion_tokens_details"] == {"reasoning_tokens": 32}
    assert from_claude["choices"][0]["message"]["reasoning_details"] == CLAUDE_DETAILS
    assert (
        plain["choices"][0]["message"]["reasoning"] == "Hm."
        and "reasoning_details" not in plain["choices"][0]["message"]
    )
    assert set(none["choices"][0]["message"]) == {"role", "content"}


# --- reasoning: agent loops through the SDK ------------------------------------------------------------------

REASONING_ALIASES = """
[models.gemini]
provider = "openrouter"
model = "google/gemini-3-pro-preview"

[models.thinker]
provider = "anthropic"
model = "claude-sonnet-4-5"
reasoning = { max_tokens = 2048 }
"""
WEATHER_QUESTION: Any = {"role": "user", "content": "Weather in Oslo?"}
THE_ANSWER: Any = {"role": "tool", "tool_call_id": "call_g1", "content": "-12 C"}


@pytest.fixture
async def reasoning_sdk(fake_openrouter: FakeUpstream, fake_anthropic: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    write_config(BASE_CONFIG + REASONING_ALIASES)
    async with (
        run_gateway(load_config()) as gateway,
        openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.token, max_retries=0) as client,
    ):
        yield client


def weather_loop(*, signature: str) -> tuple[Any, Any]:
    """A two-step tool loop that reasons before each step."""
    return (
        tool_call_reply(
            [("call_g1", "get_weather", '{"city": "Oslo"}')],
            reasoning=[Thought("I need the weather.", signature=signature)],
            usage=Usage(10, 20, reasoning_tokens=15),
        ),
        text_reply("It is cold.", reasoning=[Thought("Cold it is.", signature=signature + "-2")]),
    )


async def test_a_gemini_tool_loop_through_the_sdk_sends_reasoning_back(
    reasoning_sdk: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.app.enqueue(*weather_loop(signature="sig-g1"))
    create = partial(reasoning_sdk.chat.completions.create, model="gemini", tools=[WEATHER_TOOL])

    first = await create(messages=[WEATHER_QUESTION], reasoning_effort="high")
    message = first.choices[0].message
    extra = message.model_extra or {}
    assert extra["reasoning"] == "I need the weather."
    assert [(d["type"], d["signature"]) for d in extra["reasoning_details"]] == [("reasoning.text", "sig-g1")]
    assert first.usage is not None and first.usage.completion_tokens_details is not None
    assert first.usage.completion_tokens_details.reasoning_tokens == 15
    without = message.model_dump(exclude_none=True, exclude={"reasoning_details"})
    with pytest.raises(openai.BadRequestError):  # Gemini's 400: the fake is as strict as the real upstream
        await create(messages=[WEATHER_QUESTION, without, THE_ANSWER])
    second = await create(messages=[WEATHER_QUESTION, message.model_dump(exclude_none=True), THE_ANSWER])

    assert second.choices[0].message.content == "It is cold."
    bodies = [request.body or {} for request in fake.app.chat_requests]
    assert bodies[0]["reasoning"] == {"effort": "high"} and "reasoning_effort" not in bodies[0]
    [looped] = [m for m in bodies[-1]["messages"] if m["role"] == "assistant"]
    assert looped["reasoning_details"] == extra["reasoning_details"] == fake.app.produced_reasoning["call_g1"]


async def streamed_step(create: Any, messages: list[Any]) -> tuple[list[Any], str, list[Any], list[Any]]:
    """One streamed step as an SDK agent reads it: chunks, reasoning text, reasoning_details, tool calls."""
    stream = await create(messages=messages, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    deltas = [(c.choices[0].delta.model_extra or {}) for c in chunks if c.choices]
    reasoning = "".join(delta.get("reasoning") or "" for delta in deltas)
    details = [item for delta in deltas for item in delta.get("reasoning_details") or ()]
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    return chunks, reasoning, details, calls


async def test_a_streamed_gemini_tool_loop_through_the_sdk(
    reasoning_sdk: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.app.enqueue(*weather_loop(signature="sig-s1"))
    create = partial(
        reasoning_sdk.chat.completions.create, model="gemini", tools=[WEATHER_TOOL], reasoning_effort="low"
    )

    chunks, reasoning, details, calls = await streamed_step(create, [WEATHER_QUESTION])
    assert reasoning == "I need the weather." and details == fake.app.produced_reasoning["call_g1"]
    with_choice = [c for c in chunks if c.choices]
    assert (with_choice[-2].choices[0].delta.model_extra or {}).get("reasoning_details") == details
    assert with_choice[-1].choices[0].finish_reason == "tool_calls"  # the complete list just before the finish
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 15
    [call] = calls
    assert call.function is not None
    function = {"name": call.function.name, "arguments": call.function.arguments}
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call.id, "type": "function", "function": function}],
        "reasoning_details": details,
    }
    chunks, reasoning, _, _ = await streamed_step(create, [WEATHER_QUESTION, assistant, THE_ANSWER])

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "It is cold."
    assert reasoning == "Cold it is."
    assert (fake.app.last_body["reasoning"], fake.app.last_body["stream"]) == ({"effort": "low"}, True)


async def test_a_claude_thinking_loop_through_the_sdk_keeps_thinking_on(
    reasoning_sdk: openai.AsyncOpenAI, fake_anthropic: Any
) -> None:
    fake_anthropic.app.enqueue(*weather_loop(signature="sig-c1"))
    create = partial(reasoning_sdk.chat.completions.create, model="thinker", tools=[WEATHER_TOOL])

    first = await create(messages=[WEATHER_QUESTION])
    message = first.choices[0].message
    details = (message.model_extra or {})["reasoning_details"]
    assert details == [
        {
            "type": "reasoning.text",
            "text": "I need the weather.",
            "signature": "sig-c1",
            "format": "anthropic-claude-v1",
            "index": 0,
        }
    ]
    second = await create(messages=[WEATHER_QUESTION, message.model_dump(exclude_none=True), THE_ANSWER])

    assert second.choices[0].message.content == "It is cold."
    body = fake_anthropic.app.message_requests[-1].body
    assert body["thinking"]["type"] == "enabled"  # still thinking in the loop: its signed block went back first
    [looped] = [m for m in body["messages"] if m["role"] == "assistant"]
    assert looped["content"][0] == {"type": "thinking", "thinking": "I need the weather.", "signature": "sig-c1"}
