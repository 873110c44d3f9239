"""The two parse layers at the gateway's edge: WebSocket frames → typed client messages, and OpenAI request
bodies → `ConversationRequest`. Any input either parses or raises the layer's own error; nothing else escapes."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t_koma.gateway.openai_convert import RequestError, parse_request
from t_koma.gateway.protocol import (
    CLIENT_MESSAGE_TYPES,
    Chat,
    ProtocolError,
    ToolApproval,
    parse_client_message,
)
from t_koma.messages import ReasoningConfig, TextBlock, ToolResultBlock, ToolUseBlock

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(CLIENT_MESSAGE_TYPES) | st.text(max_size=10)},
    optional={
        "id": _json,
        "content": _json,
        "session_id": _json,
        "provider": _json,
        "model": _json,
        "call_id": _json,
        "decision": st.sampled_from(["approve", "deny", "always"]) | _json,
        "title": _json,
        "reasoning": st.sampled_from(["high", "off", "on", "8000", "max"]) | _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(frame=_frames | _json)
def test_any_frame_parses_or_raises_a_protocol_error(frame: Any) -> None:
    try:
        message = parse_client_message(orjson.dumps(frame))
    except ProtocolError as exc:
        assert exc.message
        return
    assert isinstance(frame, dict) and frame["type"] in CLIENT_MESSAGE_TYPES
    assert message.id == frame.get("id")


def test_a_chat_frame_becomes_a_typed_message() -> None:
    assert parse_client_message('{"type": "chat", "id": "a", "content": "hi", "session_id": "s1"}') == Chat(
        "a", "hi", "s1"
    )
    approval = parse_client_message('{"type": "tool_approval", "call_id": "c1", "decision": "always"}')
    assert approval == ToolApproval(None, "c1", "always")


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ('"high"', ReasoningConfig(effort="high")),
        ('"XHigh"', ReasoningConfig(effort="xhigh")),
        ('"off"', ReasoningConfig(effort="none")),
        ('"on"', ReasoningConfig(enabled=True)),
        ('"8000"', ReasoningConfig(max_tokens=8000)),
        ("8000", ReasoningConfig(max_tokens=8000)),
        ("null", None),
    ],
)
def test_a_chat_frame_may_carry_a_reasoning_level(level: str, expected: ReasoningConfig | None) -> None:
    message = parse_client_message(f'{{"type": "chat", "content": "hi", "reasoning": {level}}}')
    assert message == Chat(None, "hi", None, expected)


@pytest.mark.parametrize("level", ['"max"', '""', "0", "-5", "true", "2.5", '["high"]', '"' + "9" * 40 + '"'])
def test_a_bad_reasoning_level_is_a_protocol_error_listing_the_allowed_values(level: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_client_message(f'{{"type": "chat", "id": "c", "content": "hi", "reasoning": {level}}}')
    assert raised.value.request_id == "c"
    assert raised.value.message.startswith("chat: field 'reasoning'")
    assert "none, minimal, low, medium, high, xhigh, off, on or a token budget like 8000" in raised.value.message


def test_the_id_of_a_bad_frame_is_kept_for_the_error_reply() -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_client_message('{"type": "chat", "id": 7}')
    assert raised.value.request_id == 7
    assert raised.value.error_type == "invalid_message"


def test_an_openai_conversation_maps_to_typed_messages() -> None:
    body = {
        "model": "fast",
        "models": ["backup"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                    {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "not json"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "-12 C"},
            {"role": "tool", "tool_call_id": "c2", "content": "error"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "max_completion_tokens": 100,
        "temperature": 0.3,
        "provider": {"order": ["anthropic"]},
        "stream": True,
    }
    parsed = parse_request(orjson.dumps(body), ("default-a",))
    assert parsed.chain == ("fast", "backup")
    assert parsed.stream is True
    request = parsed.conversation
    assert [block.text for block in request.system] == ["Be brief.", "Use metric units."]
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assistant = request.messages[1].content
    assert assistant[0] == TextBlock("Checking.")
    assert assistant[1] == ToolUseBlock("c1", "weather", {"city": "Oslo"})
    assert isinstance(assistant[2], ToolUseBlock) and assistant[2].raw_arguments == "not json"
    assert assistant[2].arguments_error is not None
    # Tool results and the user's next words form one user message, results first.
    assert request.messages[2].content == (
        ToolResultBlock("c1", "-12 C"),
        ToolResultBlock("c2", "error"),
        TextBlock("And tomorrow?"),
    )
    assert request.tools[0].name == "weather"
    assert request.tool_choice == "weather"
    assert request.max_tokens == 100
    assert request.extra == {"temperature": 0.3, "provider": {"order": ["anthropic"]}}


def test_default_means_the_configured_chain() -> None:
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}
    assert parse_request(orjson.dumps(body), ("a", "b")).chain == ("a", "b")


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": 3},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "models": "backup"},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
    ],
)
def test_requests_the_gateway_cannot_map_are_request_errors(body: dict[str, Any]) -> None:
    with pytest.raises(RequestError):
        parse_request(orjson.dumps(body), ())


@settings(max_examples=200, deadline=None)
@given(body=_json)
def test_any_json_body_parses_or_raises_a_request_error(body: Any) -> None:
    with contextlib.suppress(RequestError):
        parse_request(orjson.dumps(body), ("a",))
