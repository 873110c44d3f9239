"""The generic OpenAI-compatible client: URL rules, optional key, no OpenRouter-only fields."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from t_koma.errors import AuthenticationError
from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ProviderResponse,
    ReasoningBlock,
    ReasoningConfig,
    ReasoningDelta,
    SystemBlock,
    TextBlock,
    TextDelta,
    ToolResultBlock,
)
from t_koma.providers.base import ProviderSpec
from t_koma.providers.openai_compatible import OpenAICompatibleProvider, v1_base
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import RawReply, error_reply, raw_reply, text_reply

MakeProvider = Callable[..., OpenAICompatibleProvider]


@pytest.fixture
async def make_provider(fake_openrouter: FakeUpstream) -> AsyncIterator[MakeProvider]:
    made: list[OpenAICompatibleProvider] = []

    def make(base_url: str | None = None, **fields: Any) -> OpenAICompatibleProvider:
        spec = ProviderSpec(
            kind="openai_compatible", model="qwen2.5:7b", base_url=base_url or fake_openrouter.url, **fields
        )
        made.append(OpenAICompatibleProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://localhost:8000", "http://localhost:8000/v1"),
        ("http://localhost:8000/", "http://localhost:8000/v1"),
        ("http://localhost:8000/v1", "http://localhost:8000/v1"),
        ("http://localhost:8000/v1/", "http://localhost:8000/v1"),
        ("http://proxy/llm", "http://proxy/llm/v1"),
    ],
)
def test_v1_base(base: str, expected: str) -> None:
    assert v1_base(base) == expected


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_chat_goes_to_v1_chat_completions(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, suffix: str
) -> None:
    provider = make_provider(fake_openrouter.url + suffix)
    assert provider.chat_url == fake_openrouter.url + "/v1/chat/completions"
    assert (await provider.complete(ConversationRequest(messages=(Message.user("hi"),)))).text
    assert fake_openrouter.app.chat_requests[-1].path == "/v1/chat/completions"


async def test_no_authorization_header_without_a_key(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    await make_provider().complete(ConversationRequest(messages=(Message.user("hi"),)))
    assert "authorization" not in fake_openrouter.app.chat_requests[-1].headers


async def test_bearer_key_when_configured(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    await make_provider(api_key="sk-local-SECRET-42").complete(ConversationRequest(messages=(Message.user("hi"),)))
    assert fake_openrouter.app.chat_requests[-1].headers["authorization"] == "Bearer sk-local-SECRET-42"


async def test_no_openrouter_only_fields_or_headers(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    provider = make_provider(routing=("groq",), allow_fallbacks=False, http_referer="https://x", app_name="app")
    request = ConversationRequest(system=(SystemBlock("sys"),), messages=(Message.user("hi"),))
    events = [event async for event in provider.stream(request)]
    assert isinstance(events[-1], Finish) and any(isinstance(event, TextDelta) for event in events)
    recorded = fake_openrouter.app.chat_requests[-1]
    assert "provider" not in recorded.body and "cache_control" not in str(recorded.body)
    assert not {"http-referer", "x-title", "x-openrouter-title"} & set(recorded.headers)
    assert recorded.body["messages"][0] == {"role": "system", "content": "sys"}


async def test_errors_are_typed_and_keys_scrubbed(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    fake_openrouter.app.enqueue(error_reply(401, "bad key sk-local-SECRET-42"))
    with pytest.raises(AuthenticationError) as caught:
        await make_provider(api_key="sk-local-SECRET-42").complete(ConversationRequest(messages=(Message.user("x"),)))
    assert "sk-local-SECRET-42" not in caught.value.message and caught.value.provider == "openai_compatible"


async def test_list_models_from_a_bare_v1_models(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    fake_openrouter.app.models = [{"id": "qwen2.5:7b"}, {"id": "llama3.2:3b"}]
    models = await make_provider().list_models()
    assert [(model.id, model.name) for model in models] == [
        ("qwen2.5:7b", "qwen2.5:7b"),
        ("llama3.2:3b", "llama3.2:3b"),
    ]
    assert fake_openrouter.app.requests[-1].path == "/v1/models"


async def test_max_tokens_from_spec(fake_openrouter: FakeUpstream, make_provider: MakeProvider) -> None:
    fake_openrouter.app.enqueue(text_reply("ok"))
    await make_provider(max_tokens=99).complete(ConversationRequest(messages=(Message.user("x"),)))
    assert fake_openrouter.app.last_body["max_tokens"] == 99


# --- reasoning ---------------------------------------------------------------------------------------------------


def deepseek_stream(*deltas: dict[str, Any], finish: str = "tool_calls") -> RawReply:
    """A DeepSeek-style stream: readable reasoning in `delta.reasoning_content`, then the answer."""
    frames = [{"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
    frames.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return raw_reply(
        *(b"data: " + orjson.dumps({"id": "c1", "model": "deepseek-reasoner", **frame}) + b"\n\n" for frame in frames),
        b"data: [DONE]\n\n",
    )


def deepseek_body(reasoning: str, call_id: str) -> RawReply:
    call = {"id": call_id, "type": "function", "function": {"name": "run_shell_command", "arguments": "{}"}}
    message = {"role": "assistant", "content": None, "reasoning_content": reasoning, "tool_calls": [call]}
    body = {
        "id": "c2",
        "model": "deepseek-reasoner",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
    }
    return raw_reply(orjson.dumps(body), content_type="application/json")


@pytest.mark.parametrize("stream", [True, False])
async def test_reasoning_content_is_shown_kept_and_sent_back_beside_the_tool_call(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider, stream: bool
) -> None:
    if stream:
        call = {"index": 0, "id": "call_d", "function": {"name": "run_shell_command", "arguments": "{}"}}
        reply = deepseek_stream(
            {"reasoning_content": "Need "}, {"reasoning_content": "the listing."}, {"tool_calls": [call]}
        )
    else:
        reply = deepseek_body("Need the listing.", "call_d")
    fake_openrouter.app.enqueue(reply, text_reply("Done."))
    provider = make_provider(reasoning=ReasoningConfig(effort="high"))
    history: tuple[Message, ...] = (Message.user("list"),)
    first = (
        await provider.complete(ConversationRequest(messages=history))
        if not stream
        else await streamed(provider, history)
    )
    assert first.content[0] == ReasoningBlock("openai", "text", "Need the listing.", model="qwen2.5:7b")
    assert fake_openrouter.app.last_body["reasoning_effort"] == "high"

    history += (
        first.as_message(),
        Message("user", (ToolResultBlock("call_d", "a.txt"),)),
        Message("assistant", (first.reasoning[0], TextBlock("Plain."))),
        Message.user("more"),
    )
    await provider.complete(ConversationRequest(messages=history))
    calling, plain = (m for m in fake_openrouter.app.last_body["messages"] if m["role"] == "assistant")
    assert calling["reasoning_content"] == "Need the listing." and "reasoning_details" not in calling
    assert "reasoning_content" not in plain


async def streamed(provider: OpenAICompatibleProvider, history: tuple[Message, ...]) -> ProviderResponse:
    events = [event async for event in provider.stream(ConversationRequest(messages=history))]
    assert [event.text for event in events if isinstance(event, ReasoningDelta)] == ["Need ", "the listing."]
    assert isinstance(events[-1], Finish)
    return events[-1].response


async def test_no_reasoning_effort_unless_configured(
    fake_openrouter: FakeUpstream, make_provider: MakeProvider
) -> None:
    await make_provider().complete(ConversationRequest(messages=(Message.user("x"),)))
    assert "reasoning_effort" not in fake_openrouter.app.last_body and "reasoning" not in fake_openrouter.app.last_body
    override = ConversationRequest(messages=(Message.user("x"),), reasoning=ReasoningConfig(effort="none"))
    await make_provider(reasoning=ReasoningConfig(effort="high")).complete(override)
    assert fake_openrouter.app.last_body["reasoning_effort"] == "none"
