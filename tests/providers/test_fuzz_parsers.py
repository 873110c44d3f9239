"""Property-based fuzzing of the stream parsers: real-shaped OpenRouter and Anthropic streams (from the fakes'
wire renderers), split at random points, mutated byte by byte, event by event and value by value, go through the
same pipeline the providers run (SSE decoder → stream assembler → end of stream), and, for a sample, through the
real provider clients over loopback HTTP. The only outcomes allowed: a well-formed result (exactly one `Finish`,
last, agreeing with the streamed deltas) or a typed `ProviderError` — never another exception, never a key in a
message. Bounded for CI (`T_KOMA_FUZZ_SCALE=10` runs ten times the examples)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t_koma.errors import ProviderError
from t_koma.messages import (
    ConversationRequest,
    Finish,
    Message,
    ProviderResponse,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallEvent,
)
from t_koma.providers.anthropic import AnthropicProvider
from t_koma.providers.anthropic_stream import StreamAssembler as AnthropicAssembler
from t_koma.providers.base import ProviderSpec, Timeouts
from t_koma.providers.openai_stream import StreamAssembler as OpenAIAssembler
from t_koma.providers.openrouter import OpenRouterProvider
from t_koma.providers.sse import SSEDecoder
from tests.engine.faults import SharedOpenRouter
from tests.fakes.anthropic import FakeAnthropic, _Renderer
from tests.fakes.openrouter_wire import KEEPALIVE, completion_body, stream_events
from tests.fakes.replies import RawReply, TextReply, Thought, Usage, raw_reply, text_reply, tool_call_reply
from tests.fakes.server import ServerThread

KEY = "sk-fuzz-SECRET-KEY-0003"
MODEL = "openai/gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
SCALE = max(1, int(os.environ.get("T_KOMA_FUZZ_SCALE", "1")))


def fuzz(examples: int) -> Any:
    """Deterministic (same examples every run) and bounded, so CI stays fast and reproducible."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- real-shaped streams -------------------------------------------------------------------------------

REPLIES: tuple[TextReply, ...] = (
    text_reply("Hello, wörld! ✓ " * 3, usage=Usage(cache_read_tokens=4, reasoning_tokens=2, cost=0.002), chunk_size=3),
    tool_call_reply(
        [("call_1", "run_shell_command", '{"command": "echo hi"}'), ("call_2", "noop", "")],
        text="Let me check.",
        chunk_size=5,
    ),
    text_reply("Short.", usage=None, keepalive=False),
    tool_call_reply(
        [("call_r", "run_shell_command", '{"command": "ls"}')],
        text="Thought it over.",
        reasoning=[Thought("Plan: list, then ånswer.", signature="c2ln+/=="), Thought(encrypted="EnCrYpTeD+/==")],
        usage=Usage(reasoning_tokens=21),
        chunk_size=4,
    ),
)


def openrouter_stream(reply: TextReply) -> bytes:
    return KEEPALIVE + b"".join(stream_events(reply, "gen-fuzz", MODEL))


def anthropic_stream(reply: TextReply) -> bytes:
    return b"".join(_Renderer(reply, "msg_fuzz", CLAUDE, None)._events())  # type: ignore[arg-type]


OPENROUTER_STREAMS = tuple(openrouter_stream(reply) for reply in REPLIES)
ANTHROPIC_STREAMS = tuple(anthropic_stream(reply) for reply in REPLIES)
OPENROUTER_BODIES = tuple(completion_body(reply, "gen-fuzz", MODEL) for reply in REPLIES)
ANTHROPIC_BODIES = tuple(_Renderer(reply, "msg_fuzz", CLAUDE, None)._message(reply) for reply in REPLIES)  # type: ignore[arg-type]


# --- the providers' pipelines, without the socket --------------------------------------------------------


def parse_openrouter(pieces: Iterable[bytes]) -> list[StreamEvent]:
    """What `OpenAIChatProvider.stream` does with the body: decode SSE, assemble, stop at `[DONE]`, `end()`."""
    decoder = SSEDecoder()
    assembler = OpenAIAssembler(provider="openrouter", requested_model=MODEL, secrets=(KEY,))
    events: list[StreamEvent] = []
    for batch in (*(decoder.feed(piece) for piece in pieces), decoder.close()):
        for sse in batch:
            events.extend(assembler.feed(sse.data))
            if assembler.done:
                return events
    events.extend(assembler.end())
    return events


def parse_anthropic(pieces: Iterable[bytes]) -> list[StreamEvent]:
    """What `AnthropicProvider.stream` does with the body: decode SSE, assemble until `message_stop`."""
    decoder = SSEDecoder()
    assembler = AnthropicAssembler(CLAUDE, (KEY,))
    events: list[StreamEvent] = []
    for batch in (*(decoder.feed(piece) for piece in pieces), decoder.close()):
        for sse in batch:
            events.extend(assembler.feed(sse))
            if assembler.done:
                return events
    raise assembler.unterminated()


def outcome(events: list[StreamEvent], *, exact: bool = True) -> ProviderResponse:
    """A successful parse ends with exactly one `Finish`. For a well-formed stream (`exact`), the final response
    also says what the deltas streamed. (A mangled stream may legitimately disagree: a block that lost its
    `index` replaces another.)"""
    finishes = [event for event in events if isinstance(event, Finish)]
    assert len(finishes) == 1 and events[-1] is finishes[0], events
    response = finishes[0].response
    if exact:
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == response.text
        readable = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
        assert readable == "".join(block.text for block in response.reasoning)
        assert [e.call for e in events if isinstance(e, ToolCallEvent)] == list(response.tool_calls)
    return response


def parse_or_typed_error(parse: Any, pieces: Iterable[bytes]) -> ProviderResponse | ProviderError:
    try:
        return outcome(parse(pieces), exact=False)
    except ProviderError as error:  # the only exception a parser may raise
        assert KEY not in error.message and KEY not in (error.raw or "")
        return error


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# --- strategies -----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def events_of(stream: bytes) -> list[bytes]:
    return [block + b"\n\n" for block in stream.split(b"\n\n") if block]


def mutate_json(draw: st.DrawFn, document: Any) -> Any:
    """`document` with a value somewhere inside replaced by anything, or its key removed."""
    node: Any = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            return draw(json_values)
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and draw(st.integers(0, 4)) == 0:
            del node[key]
        else:
            node[key] = draw(json_values)
        return document


@st.composite
def mutated_value(draw: st.DrawFn, stream: bytes) -> bytes:
    """One event's JSON with a value somewhere inside replaced by anything (or its key removed)."""
    events = events_of(stream)
    index = draw(st.integers(0, len(events) - 1))
    head, _, payload = events[index].rstrip(b"\n").rpartition(b"data: ")
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return stream
    events[index] = head + b"data: " + orjson.dumps(mutate_json(draw, document)) + b"\n\n"
    return b"".join(events)


@st.composite
def mutated_body(draw: st.DrawFn, body: dict[str, Any]) -> bytes:
    """A non-streaming JSON body with one to three values changed."""
    document = orjson.loads(orjson.dumps(body))
    for _ in range(draw(st.integers(1, 3))):
        document = mutate_json(draw, document)
    return orjson.dumps(document)


@st.composite
def mutated_events(draw: st.DrawFn, stream: bytes) -> bytes:
    """Events dropped, duplicated, swapped, or foreign events (random JSON, not JSON at all) inserted."""
    events = events_of(stream)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "duplicate", "swap", "insert_json", "insert_text"]))
        i = draw(st.integers(0, len(events) - 1)) if events else 0
        if op == "drop" and events:
            del events[i]
        elif op == "duplicate" and events:
            events.insert(i, events[i])
        elif op == "swap" and len(events) > 1:
            j = draw(st.integers(0, len(events) - 1))
            events[i], events[j] = events[j], events[i]
        elif op == "insert_json":
            name = draw(st.sampled_from([b"", b"event: error\n", b"event: message_delta\n", b"event: ping\n"]))
            events.insert(i, name + b"data: " + orjson.dumps(draw(json_values)) + b"\n\n")
        else:
            text = draw(st.text(max_size=30)).replace("\n", " ").encode()
            events.insert(i, b"data: " + text + b"\n\n")
    return b"".join(events)


@st.composite
def mutated_bytes(draw: st.DrawFn, stream: bytes) -> bytes:
    """Bytes flipped, deleted, inserted (invalid UTF-8 included), or the stream truncated."""
    data = bytearray(stream)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
    return bytes(data)


def mutation(stream: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated_value(stream), mutated_events(stream), mutated_bytes(stream))


cut_lists = st.lists(st.integers(min_value=0, max_value=4096), max_size=30)


# --- the properties -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "streams"),
    [(parse_openrouter, OPENROUTER_STREAMS), (parse_anthropic, ANTHROPIC_STREAMS)],
    ids=["openrouter", "anthropic"],
)
@fuzz(40)
@given(data=st.data(), cuts=cut_lists)
def test_any_split_of_a_real_stream_parses_to_the_same_response(
    parse: Any, streams: tuple[bytes, ...], data: st.DataObject, cuts: list[int]
) -> None:
    stream = data.draw(st.sampled_from(streams))
    whole = outcome(parse([stream]))

    assert outcome(parse(split(stream, cuts))) == whole


@pytest.mark.parametrize(
    ("parse", "streams"),
    [(parse_openrouter, OPENROUTER_STREAMS), (parse_anthropic, ANTHROPIC_STREAMS)],
    ids=["openrouter", "anthropic"],
)
@fuzz(150)
@given(data=st.data(), cuts=cut_lists)
def test_a_mutated_stream_parses_or_fails_with_a_typed_error(
    parse: Any, streams: tuple[bytes, ...], data: st.DataObject, cuts: list[int]
) -> None:
    stream = data.draw(st.sampled_from(streams))
    mutated = data.draw(mutation(stream))

    parse_or_typed_error(parse, split(mutated, cuts))


@pytest.mark.parametrize("parse", [parse_openrouter, parse_anthropic], ids=["openrouter", "anthropic"])
@fuzz(60)
@given(body=st.binary(max_size=400), cuts=cut_lists)
def test_random_bytes_parse_or_fail_with_a_typed_error(parse: Any, body: bytes, cuts: list[int]) -> None:
    parse_or_typed_error(parse, split(body, cuts))


# --- through the real provider clients, over loopback HTTP ------------------------------------------------


@pytest.fixture(scope="module")
def openrouter_server() -> Iterator[SharedOpenRouter]:
    with SharedOpenRouter() as server:
        yield server


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[tuple[FakeAnthropic, str]]:
    app = FakeAnthropic(api_key=KEY)
    server = ServerThread(app)
    server.start()
    try:
        yield app, server.url
    finally:
        server.stop()


REQUEST = ConversationRequest(messages=(Message.user("Hi"),))
TIMEOUTS = Timeouts(connect=5.0, read=10.0)


async def call_through(
    provider: OpenRouterProvider | AnthropicProvider, *, stream: bool
) -> ProviderResponse | ProviderError:
    try:
        if not stream:
            return await provider.complete(REQUEST)
        return outcome([event async for event in provider.stream(REQUEST)], exact=False)
    except ProviderError as error:
        assert KEY not in error.message and KEY not in (error.raw or "")
        return error
    finally:
        await provider.aclose()


def mutated_reply(
    data: st.DataObject, streams: tuple[bytes, ...], bodies: tuple[dict[str, Any], ...]
) -> tuple[bool, RawReply]:
    """A mutated stream (split into writes at random) or a mutated JSON body; returns whether it streams."""
    if data.draw(st.booleans()):
        body = data.draw(mutation(data.draw(st.sampled_from(streams))))
        return True, raw_reply(*split(body, data.draw(cut_lists)))
    body = data.draw(mutated_body(data.draw(st.sampled_from(bodies))))
    return False, raw_reply(body, content_type="application/json")


@fuzz(40)
@given(data=st.data())
def test_mutated_replies_through_the_openrouter_client(
    openrouter_server: SharedOpenRouter, data: st.DataObject
) -> None:
    fake = openrouter_server.install()
    stream, reply = mutated_reply(data, OPENROUTER_STREAMS, OPENROUTER_BODIES)
    fake.app.enqueue(reply)
    spec = ProviderSpec(kind="openrouter", model=MODEL, base_url=fake.base_url, api_key=KEY, timeouts=TIMEOUTS)

    asyncio.run(call_through(OpenRouterProvider(spec), stream=stream))


@fuzz(40)
@given(data=st.data())
def test_mutated_replies_through_the_anthropic_client(
    anthropic_server: tuple[FakeAnthropic, str], data: st.DataObject
) -> None:
    app, url = anthropic_server
    stream, reply = mutated_reply(data, ANTHROPIC_STREAMS, ANTHROPIC_BODIES)
    app.enqueue(reply)
    spec = ProviderSpec(kind="anthropic", model=CLAUDE, base_url=url, api_key=KEY, timeouts=TIMEOUTS)

    asyncio.run(call_through(AnthropicProvider(spec), stream=stream))
