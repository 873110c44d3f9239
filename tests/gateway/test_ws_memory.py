"""What the gateway keeps per WebSocket turn and session. A finished turn leaves no reference cycles behind: its
objects are freed by reference counting as soon as it ends, not whenever the cyclic GC next runs (under load,
garbage waiting for the GC piled up to tens of thousands of objects and left the allocator's arenas fragmented: the
gateway's RSS grew). The engine's per-session "always approve" memory holds only sessions with such approvals,
until they are deleted."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import text_reply, tool_call_reply
from tests.gateway.conftest import RunningGateway, until

ECHO_CALL = ("call_1", "run_shell_command", '{"command": "echo hi"}')


@contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """Collects (and keeps, for inspection) the unreachable objects left by the block."""
    gc.collect()
    found: list[object] = []
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _ours(objects: list[object]) -> list[str]:
    return sorted({type(o).__qualname__ for o in objects if type(o).__module__.startswith("t_koma")})


async def test_finished_turns_leave_no_cyclic_garbage(gateway: RunningGateway, fake: FakeUpstream) -> None:
    client = await gateway.connect()
    await client.send(type="chat", id=1, content="warm up")
    session_id = (await client.expect("session_created"))["session_id"]
    await client.until("response")
    await until(lambda: len(gateway.state.turns) == 0)

    with cyclic_garbage() as garbage:
        fake.app.enqueue(text_reply("plain"), tool_call_reply([ECHO_CALL]), text_reply("The tool said hi."))
        await client.send(type="chat", id=2, content="plain turn", session_id=session_id)
        await client.until("response")
        await client.send(type="chat", id=3, content="run echo", session_id=session_id)
        request = (await client.until("tool_approval_request"))[1]
        await client.send(type="tool_approval", call_id=request["call_id"], decision="approve")
        _, response = await client.until("response")
        assert response["content"] == "The tool said hi."
        await client.send(type="chat", id=4, content="next", session_id=session_id)  # prunes the connection's turns
        await client.until("response")
        await until(lambda: len(gateway.state.turns) == 0)
    assert _ours(garbage) == []
    await client.close()


async def test_always_approvals_are_kept_only_for_sessions_that_have_them_until_deleted(
    gateway: RunningGateway, fake: FakeUpstream
) -> None:
    client = await gateway.connect()
    await client.send(type="chat", content="plain")
    plain = (await client.expect("session_created"))["session_id"]
    await client.until("response")
    assert len(gateway.engine.approvals) == 0

    fake.app.enqueue(tool_call_reply([ECHO_CALL]), text_reply("Ran it."))
    await client.send(type="create_session")
    session_id = (await client.expect("session_created"))["session_id"]
    await client.send(type="chat", content="run echo", session_id=session_id)
    request = (await client.until("tool_approval_request"))[1]
    await client.send(type="tool_approval", call_id=request["call_id"], decision="always")
    await client.until("response")
    await until(lambda: len(gateway.state.turns) == 0)
    assert len(gateway.engine.approvals) == 1

    for deleted in (plain, session_id):
        await client.send(type="delete_session", session_id=deleted)
        await client.expect("session_deleted")
    assert len(gateway.engine.approvals) == 0
    await client.close()
