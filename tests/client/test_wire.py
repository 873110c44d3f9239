"""Parsing the gateway's frames, using the examples of docs/protocol.md."""

from __future__ import annotations

import pytest

from t_koma.client.frames import (
    ErrorFrame,
    GatewayError,
    Hello,
    History,
    HistoryEntry,
    ModelEntry,
    ReasoningDelta,
    Response,
    SessionList,
    UnknownFrame,
    Usage,
)
from t_koma.client.wire import parse_frame


def test_hello() -> None:
    incoming = parse_frame(
        {
            "type": "hello",
            "version": "0.1.0",
            "protocol": 1,
            "session_id": None,
            "provider": "openrouter",
            "model": "anthropic/claude-sonnet-4.5",
            "chain": ["sonnet", "kimi"],
            "max_frame_bytes": 1048576,
            "providers": [
                {
                    "name": "anthropic",
                    "label": "Anthropic (Claude)",
                    "configured": False,
                    "key_env": "ANTHROPIC_API_KEY",
                }
            ],
        }
    )
    assert incoming.id is None
    hello = incoming.frame
    assert isinstance(hello, Hello)
    assert (hello.provider, hello.model, hello.chain) == (
        "openrouter",
        "anthropic/claude-sonnet-4.5",
        ("sonnet", "kimi"),
    )
    assert hello.providers[0].configured is False and hello.providers[0].key_env == "ANTHROPIC_API_KEY"


def test_available_models_in_the_spec_shape_and_with_optional_prices() -> None:
    incoming = parse_frame(
        {
            "type": "available_models",
            "id": 4,
            "provider": "openrouter",
            "models": [
                {"id": "a/b", "name": "B", "description": "...", "context_length": 200000},
                {"id": "c/d", "name": None, "pricing": {"prompt": "0.000003", "completion": "0.000015"}},
            ],
        }
    )
    assert incoming.id == "4"
    assert incoming.frame.models == (  # type: ignore[union-attr]
        ModelEntry("a/b", "B", "...", 200000),
        ModelEntry("c/d", "c/d", "", None, 3e-6, 15e-6),
    )


def test_session_list_with_flat_usage() -> None:
    frame = parse_frame(
        {
            "type": "session_list",
            "sessions": [
                {
                    "id": "8c1d",
                    "title": "refactor notes",
                    "created_at": 1767225600.12,
                    "updated_at": 1767225700.5,
                    "message_count": 4,
                    "input_tokens": 1200,
                    "output_tokens": 310,
                    "cost": 0.0021,
                    "is_active": True,
                    "busy": False,
                }
            ],
        }
    ).frame
    assert isinstance(frame, SessionList)
    assert frame.sessions[0].usage == Usage(1200, 310, None, None, cost=0.0021)
    assert frame.sessions[0].message_count == 4


def test_history_with_blocks() -> None:
    frame = parse_frame(
        {
            "type": "history",
            "session_id": "8c1d",
            "messages": [
                {"id": "m1", "role": "user", "content": "hi", "blocks": [{"type": "text", "text": "hi"}]},
                {
                    "id": "m2",
                    "role": "assistant",
                    "content": "",
                    "blocks": [
                        {"type": "tool_use", "id": "c1", "name": "run_shell_command", "input": {"command": "ls"}}
                    ],
                    "status": "cancelled",
                },
                {
                    "id": "m3",
                    "role": "user",
                    "content": "",
                    "blocks": [{"type": "tool_result", "tool_use_id": "c1", "content": "x\n", "is_error": False}],
                },
            ],
        }
    ).frame
    assert isinstance(frame, History)
    assert frame.messages == (
        HistoryEntry("user", "hi"),
        HistoryEntry("assistant", "", tool_calls=(("run_shell_command", '{"command": "ls"}'),), status="cancelled"),
        HistoryEntry("user", "", tool_results=(("x\n", False),)),
    )


def test_a_cancelled_response() -> None:
    frame = parse_frame(
        {
            "type": "response",
            "id": "t1",
            "session_id": "s",
            "content": "partial",
            "stop_reason": "cancelled",
            "usage": None,
        }
    ).frame
    assert frame == Response("partial", "s", None, None, None, cancelled=True)


def test_errors_keep_reason_and_suggestions() -> None:
    frame = parse_frame(
        {
            "type": "error",
            "id": "7",
            "error": {
                "message": "unknown model",
                "type": "invalid_model",
                "reason": "unknown_model",
                "suggestions": ["a/b"],
            },
        }
    ).frame
    assert frame == ErrorFrame("unknown model", "invalid_model", "unknown_model", ("a/b",))


def test_unknown_types_are_kept_and_missing_fields_raise() -> None:
    assert parse_frame({"type": "future_thing", "x": 1}).frame == UnknownFrame("future_thing")
    with pytest.raises(GatewayError, match="malformed 'text_delta' frame"):
        parse_frame({"type": "text_delta"})


def test_reasoning_deltas_and_reasoning_tokens_in_usage() -> None:
    incoming = parse_frame({"type": "reasoning_delta", "id": "t1", "session_id": "8c1d", "text": "Let me see"})
    assert (incoming.id, incoming.frame) == ("t1", ReasoningDelta("Let me see", "8c1d"))
    usage = {"input_tokens": 12, "output_tokens": 40, "reasoning_tokens": 30, "cost": 0.001}
    response = parse_frame({"type": "response", "content": "ok", "usage": usage}).frame
    assert isinstance(response, Response) and response.usage == Usage(12, 40, reasoning_tokens=30, cost=0.001)
    unknown = parse_frame({"type": "response", "content": "ok", "usage": {**usage, "reasoning_tokens": None}}).frame
    assert isinstance(unknown, Response) and unknown.usage is not None and unknown.usage.reasoning_tokens is None
    with pytest.raises(GatewayError, match="malformed 'reasoning_delta' frame"):
        parse_frame({"type": "reasoning_delta"})


def test_history_keeps_the_readable_reasoning_of_a_message() -> None:
    thought = {"type": "reasoning", "origin": "anthropic", "kind": "text", "text": "First A.", "signature": "s"}
    sealed = {"type": "reasoning", "origin": "anthropic", "kind": "encrypted", "text": "", "data": "opaque"}
    frame = parse_frame(
        {
            "type": "history",
            "session_id": "8c1d",
            "messages": [
                {
                    "role": "assistant",
                    "content": "Done.",
                    "blocks": [thought, sealed, {**thought, "text": "Then B."}, {"type": "text", "text": "Done."}],
                }
            ],
        }
    ).frame
    assert isinstance(frame, History)
    assert frame.messages == (HistoryEntry("assistant", "Done.", reasoning="First A.\n\nThen B."),)
