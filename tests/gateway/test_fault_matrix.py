"""The fault matrix through a real gateway: every upstream behaviour of `tests.engine.faults` seen by an OpenAI
client of `/v1/chat/completions` (streaming and not) and by a WebSocket chat client. A fault the chain may retry
moves the call to the next model (and cools the failing one down); any other is answered at once, in OpenAI's
error shape with the documented status (docs/protocol.md) or as an `error` frame of the engine's type; the
session stays usable; no key appears in any frame, body or log line (the `run_gateway` scan)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from t_koma.config.loader import load_config
from tests.engine.faults import FAULTS, PARTIAL, DeadEnds, Fault, SharedOpenRouter, dead_end_models, dead_ends
from tests.engine.faults import shorten_read_timeout as shorten
from tests.engine.support import query
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import DEFAULT_TEXT, text_reply
from tests.gateway.conftest import RunningGateway, run_gateway, write_config

PROMPT = "Hi there, gateway matrix."
FALLBACK_TEXT = "From the backup model."
BACKUP_MODEL = "moonshotai/kimi-k2.5"
_OPENAI_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}


@pytest.fixture(scope="module")
def shared_openrouter() -> Iterator[SharedOpenRouter]:
    with SharedOpenRouter() as server:
        yield server


@pytest.fixture
def openrouter(shared_openrouter: SharedOpenRouter, monkeypatch: pytest.MonkeyPatch) -> FakeUpstream:
    return shared_openrouter.fresh(monkeypatch)


@pytest.fixture
def ends(openrouter: FakeUpstream) -> Iterator[DeadEnds]:
    with dead_ends(openrouter.url) as opened:
        yield opened


def failing_pair(fault: Fault) -> tuple[str, str]:
    """Two aliases that both meet the fault (for a chain that has nothing left to fall back to)."""
    if fault.dead_end is not None:
        return fault.dead_end, fault.dead_end + "2"
    return "fast", "backup"


def config_for(fault: Fault, ends: DeadEnds) -> str:
    failing, _ = failing_pair(fault)
    return f"""
default_model = ["{failing}", "backup"]

[models.fast]
provider = "openrouter"
model = "openai/gpt-4o-mini"

[models.backup]
provider = "openrouter"
model = "{BACKUP_MODEL}"

[tools.shell]
approval = "ask"

{dead_end_models(ends)}
"""


def documented_status(fault: Fault) -> int:
    """docs/protocol.md: the upstream's own status; 401/402/403 of the gateway's key become 502; a timeout is a
    504; no status at all (a connection failure, a body that is not JSON) is a 502."""
    status = fault.status
    if status in (401, 402, 403):
        return 502
    if status in (408, 504):
        return 504
    return status or 502


def assert_openai_error(body: dict[str, Any], status: int, code: str) -> None:
    error = body["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"]
    assert error["code"] == code
    assert error["type"] == _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def parse_sse(raw: str) -> tuple[list[str], list[dict[str, Any]], bool]:
    """(comments, data chunks, ended with [DONE])."""
    comments, chunks, done = [], [], False
    for block in raw.split("\n\n"):
        for line in block.splitlines():
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line.startswith("data: "):
                data = line[len("data: ") :]
                if data == "[DONE]":
                    done = True
                else:
                    chunks.append(orjson.loads(data))
    return comments, chunks, done


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice.get("delta", {}).get("content") or "" for chunk in chunks for choice in chunk.get("choices", [])
    )


class Matrix:
    """One fault against one running gateway."""

    def __init__(self, fault: Fault, gateway: RunningGateway, fake: FakeUpstream) -> None:
        self.fault = fault
        self.gateway = gateway
        self.fake = fake
        self.failing, self.second = failing_pair(fault)

    def arm(self, times: int = 1) -> None:
        if self.fault.reply is not None:
            self.fake.app.enqueue(*[self.fault.reply] * times)

    def asked(self) -> list[str]:
        return [str((r.body or {}).get("model")) for r in self.fake.app.chat_requests]

    async def post(self, chain: tuple[str, ...], *, stream: bool) -> tuple[int, dict[str, str], str]:
        body = {
            "model": chain[0],
            "models": list(chain[1:]),
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": stream,
        }
        async with (
            self.gateway.http() as http,
            http.post("/v1/chat/completions", json=body, headers=self.gateway.auth_headers) as response,
        ):
            text = await response.text()
            self.gateway.seen.append(text)
            return response.status, {name.lower(): value for name, value in response.headers.items()}, text

    async def cooled(self, label: str) -> bool:
        """Whether `label` was put in cooldown (in the store, where every process sees it); then lifts it, so
        that the next call of this test starts clean."""
        cooldown = await self.gateway.engine.store.get_cooldown(label)
        await self.gateway.engine.breaker.record_success(label)
        return cooldown is not None


async def check_v1_json(m: Matrix) -> None:
    fault = m.fault
    m.arm()
    if fault.retryable:
        m.fake.app.enqueue(text_reply(FALLBACK_TEXT))
    asked_before = len(m.asked())

    status, headers, text = await m.post((m.failing, "backup"), stream=False)

    body = orjson.loads(text)
    if fault.retryable:
        assert status == 200, text
        assert body["choices"][0]["message"]["content"] == FALLBACK_TEXT
        assert headers["x-t-koma-served-by"] == "backup"
        assert await m.cooled(m.failing)
    else:
        assert status == documented_status(fault), text
        assert_openai_error(body, status, fault.error.error_type)
        assert len(m.asked()) == asked_before + 1  # the backup was never asked
        assert not await m.cooled(m.failing)


async def check_v1_exhausted(m: Matrix) -> None:
    """Every model of the chain meets the fault: the status is the last error's, the body lists both."""
    m.arm(2)
    status, headers, text = await m.post((m.failing, m.second), stream=False)

    assert status == documented_status(m.fault), text
    body = orjson.loads(text)
    assert_openai_error(body, status, "all_models_exhausted")
    assert [attempt["model"] for attempt in body["error"]["attempts"]] == [m.failing, m.second]
    if m.fault.id == "429-retry-after":
        assert headers["retry-after"] == "7"
    assert await m.cooled(m.failing) and await m.cooled(m.second)


async def check_v1_stream(m: Matrix) -> None:
    fault = m.fault
    m.arm()
    backup_asked = fault.retryable and not fault.partial
    if backup_asked:
        m.fake.app.enqueue(text_reply(FALLBACK_TEXT))
    asked_before = len(m.asked())

    status, _, text = await m.post((m.failing, "backup"), stream=True)

    assert (BACKUP_MODEL in m.asked()[asked_before:]) is backup_asked
    if not fault.retryable:
        assert status == documented_status(fault), text
        assert_openai_error(orjson.loads(text), status, fault.error.error_type)
        return
    assert status == 200, text
    comments, chunks, done = parse_sse(text)
    assert done, text
    if fault.partial:
        # The first token was already sent: no failover any more, the error travels inside the stream.
        assert streamed_text(chunks) == fault.partial
        [error] = [chunk["error"] for chunk in chunks if "error" in chunk]
        assert error["code"] == fault.error.error_type
    else:
        assert streamed_text(chunks) == FALLBACK_TEXT
        assert any(comment.startswith(f"fallback from {m.failing} to backup") for comment in comments), comments
        assert not any("error" in chunk for chunk in chunks)
    assert await m.cooled(m.failing)


async def check_ws(m: Matrix) -> None:
    fault = m.fault
    m.arm()
    if fault.retryable:
        m.fake.app.enqueue(text_reply(FALLBACK_TEXT))
    client = await m.gateway.connect()
    await client.send(type="chat", id="c1", content=PROMPT)
    session_id = (await client.expect("session_created"))["session_id"]

    before, end = await client.until("response", "error")

    assert all(frame["session_id"] == session_id and frame["id"] == "c1" for frame in [*before, end])
    if fault.retryable:
        kinds = [frame["type"] for frame in before]
        assert kinds.count("fallback") == 1, kinds
        moved = before[kinds.index("fallback")]
        assert (moved["from_model"], moved["to_model"]) == (m.failing, "backup")
        partial = "".join(f["text"] for f in before[: kinds.index("fallback")] if f["type"] == "text_delta")
        assert partial == fault.partial
        assert end["type"] == "response" and end["content"] == FALLBACK_TEXT
        assert await m.cooled(m.failing)
    else:
        assert end["type"] == "error" and end["error"]["type"] == fault.error.error_type, end
        assert not any(frame["type"] == "fallback" for frame in before)
        assert not await m.cooled(m.failing)
    # The session goes on: a second message in it is answered, and the history holds what happened.
    await client.send(type="chat", id="c2", content="And now?", session_id=session_id)
    _, again = await client.until("response", "error")
    assert again["type"] == "response" and again["content"] == DEFAULT_TEXT, again
    await client.send(type="get_history", session_id=session_id)
    history = await client.expect("history")
    rows = [(message["role"], message["content"], message["status"]) for message in history["messages"]]
    first_answer = [("assistant", FALLBACK_TEXT, None)] if fault.retryable else []
    assert rows == [
        ("user", PROMPT, None),
        *first_answer,
        ("user", "And now?", None),
        ("assistant", DEFAULT_TEXT, None),
    ]
    assert PARTIAL not in str(history)
    await client.close()


@pytest.mark.parametrize("fault", FAULTS, ids=str)
async def test_the_gateway_answers_each_upstream_fault_as_documented(
    fault: Fault, openrouter: FakeUpstream, ends: DeadEnds, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fault.slow:
        shorten(monkeypatch)
    write_config(config_for(fault, ends))
    async with run_gateway(load_config()) as gateway:
        matrix = Matrix(fault, gateway, openrouter)
        await check_v1_json(matrix)
        if fault.retryable:
            await check_v1_exhausted(matrix)
        await check_v1_stream(matrix)
        await check_ws(matrix)
        database = gateway.config.database_path
    assert query(database, "PRAGMA integrity_check") == [("ok",)]
