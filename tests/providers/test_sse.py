"""The SSE decoder: comment keep-alives, blank lines, line endings and chunk boundaries (reference §C1)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from t_koma.providers.sse import SSEDecoder, SSEEvent
from tests.fakes.openrouter_wire import KEEPALIVE, stream_events
from tests.fakes.replies import Usage, text_reply, tool_call_reply


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_openrouter_keepalive_comments_are_skipped() -> None:
    assert decode(b': OPENROUTER PROCESSING\n\ndata: {"a": 1}\n\n: OPENROUTER PROCESSING\n\ndata: [DONE]\n\n') == [
        SSEEvent('{"a": 1}'),
        SSEEvent("[DONE]"),
    ]


def test_a_blank_line_after_only_a_comment_dispatches_no_empty_event() -> None:
    # openai-python dispatched an empty event here, which then failed JSON parsing (llmgateway#2334).
    assert decode(b": keep-alive\n\n\n\n") == []


def test_data_lines_of_one_event_are_joined_with_newlines() -> None:
    assert decode(b"data: first\ndata:second\n\n") == [SSEEvent("first\nsecond")]


def test_event_and_id_fields_are_kept_and_reset_per_event() -> None:
    events = decode(b"event: error\nid: 7\ndata: x\n\ndata: y\n\n")
    assert events == [SSEEvent("x", "error", "7"), SSEEvent("y", "message", "7")]


def test_crlf_and_cr_line_endings() -> None:
    assert decode(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == [SSEEvent("a"), SSEEvent("b"), SSEEvent("c")]


def test_crlf_split_between_chunks_is_one_line_ending() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [SSEEvent("a"), SSEEvent("b")]


def test_multibyte_utf8_split_between_chunks() -> None:
    raw = "data: héllo ✓\n\n".encode()
    cut = raw.index("✓".encode()) + 1
    assert decode(raw[:cut], raw[cut:]) == [SSEEvent("héllo ✓")]


def test_an_unterminated_event_at_the_end_is_dropped() -> None:
    assert decode(b"data: complete\n\ndata: cut-off") == [SSEEvent("complete")]


def _real_stream() -> bytes:
    reply = text_reply("Hello, wörld! " * 5, usage=Usage(cache_read_tokens=4, cost=0.002), chunk_size=3)
    tools = tool_call_reply([("call_1", "run_shell_command", '{"command": "echo hi"}'), ("call_2", "noop", "")])
    return (
        KEEPALIVE
        + b"".join(stream_events(reply, "gen-1", "openai/gpt-4o-mini"))
        + b"".join(stream_events(tools, "gen-2", "openai/gpt-4o-mini"))
    )


REAL_STREAM = _real_stream()
EXPECTED = decode(REAL_STREAM)


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(REAL_STREAM)), max_size=40),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_any_split_of_a_real_stream_decodes_to_the_same_events(cuts: list[int], newline: bytes) -> None:
    stream = REAL_STREAM.replace(b"\n", newline)
    points = sorted({0, len(stream), *(min(cut, len(stream)) for cut in cuts)})
    chunks = [stream[start:end] for start, end in itertools.pairwise(points)]
    assert decode(*chunks) == EXPECTED


def test_the_real_stream_has_the_expected_shape() -> None:
    assert EXPECTED[-1] == SSEEvent("[DONE]")
    assert sum(event.data == "[DONE]" for event in EXPECTED) == 2
    assert not any(event.data.startswith(":") or not event.data for event in EXPECTED)


def test_a_stream_ending_in_cr_line_endings_dispatches_its_last_event() -> None:
    assert decode(b"data: a\r\r") == [SSEEvent("a")]
