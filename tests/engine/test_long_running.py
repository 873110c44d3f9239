"""What an engine that serves for a long time keeps and reads per session: a turn reads only the tail of a long
session (the model is sent at most `agent.message_limit` messages anyway), never separates a tool call from its
result at the cut, and the "always approve" memory holds nothing for sessions without such approvals and is
bounded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from t_koma.config.loader import load_config
from t_koma.engine.approval import RememberedApprovals
from t_koma.engine.engine import HISTORY_MARGIN, Engine
from t_koma.engine.events import ApprovalDecision, ToolCallRequest, TurnRequest
from t_koma.messages import TextBlock, ToolResultBlock, ToolUseBlock
from t_koma.providers.factory import ModelResolver
from t_koma.store.base import SessionInfo, StoredMessage
from t_koma.store.sqlite import SqliteStore
from t_koma.tools.registry import default_registry
from tests.engine.support import write_config
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import text_reply, tool_call_reply

LIMIT = 10


class ReadCountingStore(SqliteStore):
    """The real store, noting how the engine reads history."""

    whole_reads = 0
    tail_reads: list[int]

    async def load_messages(self, session_id: str) -> list[StoredMessage]:
        self.whole_reads += 1
        return await super().load_messages(session_id)

    async def get_session_with_recent_messages(
        self, session_id: str, limit: int
    ) -> tuple[SessionInfo, list[StoredMessage]] | None:
        self.tail_reads.append(limit)
        return await super().get_session_with_recent_messages(session_id, limit)


@pytest.fixture
async def engine(fake_openrouter: FakeUpstream) -> AsyncIterator[Engine]:
    write_config(approval="ask", extra=f"[agent]\nmessage_limit = {LIMIT}\n")
    config = load_config()
    store = await ReadCountingStore.open(config.database_path)
    assert isinstance(store, ReadCountingStore)
    store.tail_reads = []
    opened = Engine(config, store, ModelResolver(config), default_registry())
    yield opened
    await opened.close()


async def _long_session(store: SqliteStore, exchanges: int) -> str:
    """A session of `exchanges` user/assistant pairs, every third one a tool call with its result in between."""
    session = await store.create_session("long")
    for n in range(exchanges):
        await store.append_message(session.id, "user", (TextBlock(f"question {n}"),))
        if n % 3 == 0:
            call = ToolUseBlock(f"call_{n}", "run_shell_command", {"command": f"echo {n}"})
            await store.append_message(session.id, "assistant", (call,))
            await store.append_message(session.id, "user", (ToolResultBlock(f"call_{n}", f"{n}\n"),))
        await store.append_message(session.id, "assistant", (TextBlock(f"answer {n}"),))
    return session.id


async def test_a_turn_reads_only_the_tail_of_a_long_session(engine: Engine, fake_openrouter: FakeUpstream) -> None:
    store = engine.store
    assert isinstance(store, ReadCountingStore)
    session_id = await _long_session(store, 100)
    fake_openrouter.app.enqueue(text_reply("Still here."))

    result = await engine.run_turn(TurnRequest("And now?", session_id=session_id))

    assert result.text == "Still here."
    assert (store.whole_reads, store.tail_reads) == (0, [LIMIT + HISTORY_MARGIN])
    sent = [m for m in fake_openrouter.app.last_body["messages"] if m["role"] != "system"]
    assert 0 < len(sent) <= LIMIT
    assert sent[0]["role"] == "user" and "question" in str(sent[0]["content"])  # a clean start, not a tool result
    assert sent[-1] == {"role": "user", "content": "And now?"}
    answered = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
    called = {call["id"] for m in sent if m["role"] == "assistant" for call in m.get("tool_calls") or ()}
    assert answered == called
    assert "answer 99" in json.dumps(sent)


async def test_a_tool_loop_longer_than_the_limit_still_starts_at_its_user_message(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    session_id = await _long_session(engine.store, 30)
    calls = [tool_call_reply([(f"c{n}", "run_shell_command", json.dumps({"command": f"echo {n}"}))]) for n in range(8)]
    fake_openrouter.app.enqueue(*calls, text_reply("Done."))

    result = await engine.run_turn(
        TurnRequest("Count to eight.", session_id=session_id, auto_approve=True, max_steps=20)
    )

    assert (result.text, result.steps) == ("Done.", 9)
    sent = [m for m in fake_openrouter.app.last_body["messages"] if m["role"] != "system"]
    assert sent[0] == {"role": "user", "content": "Count to eight."}  # reached back past the limit to the turn start
    assert len(sent) == 17


class Always:
    async def __call__(self, call: ToolCallRequest) -> ApprovalDecision:
        return "always"


async def test_only_sessions_with_always_approvals_are_remembered(
    engine: Engine, fake_openrouter: FakeUpstream
) -> None:
    fake = fake_openrouter.app
    for n in range(5):
        await engine.run_turn(TurnRequest(f"plain {n}"))
    assert len(engine.approvals) == 0

    fake.enqueue(tool_call_reply([("c1", "run_shell_command", '{"command": "echo hi"}')]), text_reply("Ran it."))
    approved = await engine.run_turn(TurnRequest("run echo", approval=Always()))
    await engine.run_turn(TurnRequest("another plain one"))

    assert len(engine.approvals) == 1
    assert engine.approvals.of(approved.session_id) == {"run_shell_command"}


def test_the_approval_memory_forgets_the_least_recently_used_session_first() -> None:
    approvals = RememberedApprovals(max_sessions=2)
    approvals.of("a").add("run_shell_command")
    approvals.of("b").add("run_shell_command")
    approvals.of("a")  # used again: "b" is now the oldest
    approvals.of("c").add("run_shell_command")

    assert len(approvals) == 2
    assert approvals.of("a") == {"run_shell_command"}
    assert approvals.of("c") == {"run_shell_command"}
    assert approvals.of("b") == set()  # forgotten: its user is asked again
    approvals.release("b")  # nothing remembered: dropped
    approvals.release("c")  # something remembered: kept
    assert len(approvals) == 1
    approvals.forget("c")  # the session was deleted
    assert len(approvals) == 0
