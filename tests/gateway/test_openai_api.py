"""`/v1` with the official `openai` SDK as the client: completions streaming and not, usage with cache and
cost fields, tools passed through (never run), fallback, OpenAI-shaped errors with the right status, and
`/v1/models`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from t_koma.config.loader import load_config
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import Usage, error_reply, midstream_error_reply, stall_reply, text_reply, tool_call_reply
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
