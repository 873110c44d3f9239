"""The `/ws` protocol outside chat turns: the spec's four messages exactly, `hello`, providers, sessions, ping,
and what happens to malformed, unknown and oversized frames (docs/protocol.md)."""

from __future__ import annotations

import copy

import pytest
from websockets.exceptions import ConnectionClosed

from t_koma.config.loader import load_config
from tests.fakes.openrouter import FakeUpstream
from tests.gateway.conftest import BASE_CONFIG, RunningGateway, run_gateway, write_config


def _add_catalog_entry(fake: FakeUpstream, model_id: str, name: str, context: int) -> None:
    entry = copy.deepcopy(fake.app.models[0])
    entry.update(id=model_id, canonical_slug=model_id, name=name, description="...", context_length=context)
    fake.app.models.insert(0, entry)


async def test_select_provider_answers_exactly_the_spec_message(gateway: RunningGateway, fake: FakeUpstream) -> None:
    _add_catalog_entry(fake, "anthropic/claude-3.5-sonnet", "Claude 3.5 Sonnet", 200000)
    client = await gateway.connect()
    await client.send(type="select_provider", provider="openrouter", model="anthropic/claude-3.5-sonnet")
    assert await client.recv() == {
        "type": "provider_selected",
        "provider": "openrouter",
        "model": "anthropic/claude-3.5-sonnet",
    }


async def test_list_available_models_answers_the_spec_shape(gateway: RunningGateway, fake: FakeUpstream) -> None:
    _add_catalog_entry(fake, "anthropic/claude-3.5-sonnet", "Claude 3.5 Sonnet", 200000)
    client = await gateway.connect()
    await client.send(type="list_available_models", provider="openrouter")
    frame = await client.recv()
    assert set(frame) == {"type", "provider", "models"}
    assert frame["type"] == "available_models"
    assert frame["provider"] == "openrouter"
    # The spec's four fields, plus `pricing` (USD per token) where the catalog states prices.
    spec_fields = {"id", "name", "description", "context_length"}
    assert all(set(model) - {"pricing"} == spec_fields for model in frame["models"])
    ids = [model["id"] for model in frame["models"]]
    # Configured models come first (fast, backup), then the catalog's own order.
    assert ids[:2] == ["openai/gpt-4o-mini", "moonshotai/kimi-k2.5"]
    assert {
        "id": "anthropic/claude-3.5-sonnet",
        "name": "Claude 3.5 Sonnet",
        "description": "...",
        "context_length": 200000,
    } in [{k: v for k, v in model.items() if k != "pricing"} for model in frame["models"]]
    assert len(ids) <= 20


async def test_list_available_models_all_returns_the_whole_catalog_with_prices(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    for number in range(25):
        _add_catalog_entry(fake, f"lab/model-{number}", f"Model {number}", 8000)
    client = await gateway.connect()
    await client.send(type="list_available_models", provider="openrouter", all=True)
    frame = await client.recv()
    ids = [model["id"] for model in frame["models"]]
    assert len(ids) == len(fake.app.models) > 20
    priced = [model for model in frame["models"] if "pricing" in model]
    assert priced and all(set(model["pricing"]) == {"prompt", "completion"} for model in priced)


@pytest.mark.parametrize("spelling", ["open_router", "OpenRouter", "OPENROUTER"])
async def test_provider_names_are_accepted_in_any_spelling(gateway: RunningGateway, spelling: str) -> None:
    client = await gateway.connect()
    await client.send(type="select_provider", provider=spelling, model="openai/gpt-4o-mini", id="s1")
    assert await client.recv() == {
        "type": "provider_selected",
        "id": "s1",
        "provider": "openrouter",
        "model": "openai/gpt-4o-mini",
    }
    await client.send(type="list_available_models", provider=spelling)
    assert (await client.expect("available_models"))["provider"] == "openrouter"


async def test_select_provider_refuses_an_unknown_model_with_invalid_model(gateway: RunningGateway) -> None:
    client = await gateway.connect()
    await client.send(type="select_provider", provider="openrouter", model="openai/gpt-4o-minii", id=1)
    frame = await client.expect("error")
    assert frame["id"] == 1
    assert frame["error"]["type"] == "invalid_model"
    assert frame["error"]["reason"] == "unknown_model"
    assert "openai/gpt-4o-mini" in frame["error"]["suggestions"]
    await client.send(type="select_provider", provider="openrouter", model="bad id with spaces")
    assert (await client.expect("error"))["error"]["type"] == "invalid_model"


async def test_select_provider_refuses_an_unknown_provider(gateway: RunningGateway) -> None:
    client = await gateway.connect()
    await client.send(type="select_provider", provider="openai-ish", model="gpt-4o")
    error = (await client.expect("error"))["error"]
    assert error["type"] == "invalid_model"
    assert error["reason"] == "unknown_provider"


async def test_select_provider_names_a_missing_key_variable_never_a_value(gateway: RunningGateway) -> None:
    client = await gateway.connect()
    await client.send(type="select_provider", provider="anthropic", model="claude-sonnet-4-5")
    error = (await client.expect("error"))["error"]
    assert error["type"] == "invalid_model"
    assert error["reason"] == "missing_api_key"
    assert error["key_env"] == "ANTHROPIC_API_KEY"
    assert "ANTHROPIC_API_KEY" in error["message"]


async def test_hello_lists_providers_and_which_have_keys(gateway: RunningGateway) -> None:
    client = await gateway.connect(hello=False)
    hello = await client.expect("hello")
    assert hello["session_id"] is None
    assert hello["chain"] == ["fast"]
    assert (hello["provider"], hello["model"]) == ("openrouter", "openai/gpt-4o-mini")
    assert hello["max_frame_bytes"] == 1024 * 1024
    providers = {p["name"]: p for p in hello["providers"]}
    assert providers["openrouter"] == {
        "name": "openrouter",
        "label": "OpenRouter",
        "configured": True,
        "key_env": "OPENROUTER_API_KEY",
    }
    assert providers["anthropic"]["configured"] is False
    assert providers["anthropic"]["key_env"] == "ANTHROPIC_API_KEY"
    await client.send(type="list_providers", id="p")
    assert (await client.expect("providers"))["providers"] == hello["providers"]


async def test_ping_is_answered_with_pong_echoing_the_id(gateway: RunningGateway) -> None:
    client = await gateway.connect()
    await client.send(type="ping", id=42)
    assert await client.recv() == {"type": "pong", "id": 42}


@pytest.mark.parametrize(
    ("raw", "error_type", "mentions"),
    [
        ("{not json", "invalid_message", "malformed JSON"),
        ("[1, 2]", "invalid_message", "JSON object"),
        ('{"id": 1}', "invalid_message", "type"),
        ('{"type": "teleport", "id": 2}', "unknown_type", "teleport"),
        ('{"type": "chat", "id": 3}', "invalid_message", "content"),
        ('{"type": "chat", "content": 5}', "invalid_message", "content"),
        ('{"type": "chat", "content": "x", "reasoning": "max"}', "invalid_message", "none, minimal, low, medium"),
        ('{"type": "select_provider", "provider": "openrouter"}', "invalid_message", "model"),
        ('{"type": "tool_approval", "call_id": "c", "decision": "maybe"}', "invalid_message", "decision"),
        ('{"type": "switch_session"}', "invalid_message", "session_id"),
    ],
)
async def test_bad_frames_get_an_error_and_the_connection_stays_open(
    gateway: RunningGateway, raw: str, error_type: str, mentions: str
) -> None:
    client = await gateway.connect()
    await client.send_raw(raw)
    frame = await client.expect("error")
    assert frame["error"]["type"] == error_type
    assert mentions in frame["error"]["message"]
    await client.send(type="ping", id="still-open")
    assert await client.recv() == {"type": "pong", "id": "still-open"}


async def test_a_frame_over_the_limit_closes_the_connection_with_1009(fake_openrouter: FakeUpstream) -> None:
    write_config(BASE_CONFIG + "\n[gateway]\nmax_frame_bytes = 4096\n")
    async with run_gateway(load_config()) as gateway:
        client = await gateway.connect()
        await client.send(type="chat", content="x" * 3000)  # under the limit: accepted
        await client.until("response")
        await client.send(type="chat", content="x" * 5000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        other = await gateway.connect()  # the gateway itself is fine
        await other.send(type="ping")
        assert await other.recv() == {"type": "pong"}


async def test_sessions_create_list_switch_history_delete(gateway: RunningGateway) -> None:
    client = await gateway.connect()
    await client.send(type="create_session", title="notes", id="c")
    created = await client.expect("session_created")
    session_id = created["session_id"]
    assert created == {"type": "session_created", "id": "c", "session_id": session_id, "title": "notes"}
    await client.send(type="chat", content="hello there")
    _, response = await client.until("response")
    assert response["session_id"] == session_id  # the chat went to the current session
    await client.send(type="list_sessions")
    sessions = (await client.expect("session_list"))["sessions"]
    assert [(s["id"], s["title"], s["message_count"], s["is_active"], s["busy"]) for s in sessions] == [
        (session_id, "notes", 2, True, False)
    ]
    await client.send(type="get_history", session_id=session_id)
    history = await client.expect("history")
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "hello there"),
        ("assistant", "Hello from the fake upstream."),
    ]
    await client.send(type="switch_session", session_id="nope")
    assert (await client.expect("error"))["error"]["type"] == "session_not_found"
    await client.send(type="delete_session", session_id=session_id)
    assert await client.recv() == {"type": "session_deleted", "session_id": session_id}
    await client.send(type="get_history")
    assert (await client.expect("error"))["error"]["type"] == "session_not_found"
