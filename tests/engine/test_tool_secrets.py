"""A command the model runs can print a key (`cat .env`, `env | base64`): its output is redacted before it goes
upstream, into the database or to any client, in every form `errors.scrub` knows."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from t_koma.engine.events import ToolResultEvent, TurnRequest
from tests.engine.support import Events, open_engine, query
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import text_reply, tool_call_reply

FORMS = (
    TEST_KEY,
    TEST_KEY.lower(),
    TEST_KEY.upper(),
    base64.b64encode(TEST_KEY.encode()).decode()[:-4],
    base64.b64encode(b"OPENROUTER_API_KEY=" + TEST_KEY.encode()).decode()[28:-4],
)


async def test_tool_output_holding_the_key_is_redacted_everywhere(fake_openrouter: FakeUpstream) -> None:
    Path("leak.txt").write_text(f"OPENROUTER_API_KEY={TEST_KEY}\n")
    command = "cat leak.txt; base64 leak.txt; tr a-z A-Z < leak.txt; tr A-Z a-z < leak.txt; base64 -w0 leak.txt"
    fake = fake_openrouter.app
    fake.enqueue(
        tool_call_reply([("call_1", "run_shell_command", json.dumps({"command": command}))]),
        text_reply("I saw nothing."),
    )
    engine = await open_engine()
    events = Events()
    try:
        result = await engine.run_turn(TurnRequest("Show me the secrets."), events)
    finally:
        await engine.close()

    [shown] = events.of(ToolResultEvent)
    upstream = json.dumps(fake.chat_requests[1].body)
    stored = json.dumps(query(engine.store.path, "SELECT content FROM messages"))
    [record] = result.tool_calls
    assert "OPENROUTER_API_KEY=***" in shown.content  # the command ran and its output came back, redacted
    for form in FORMS:
        for where, text in (("event", shown.content), ("upstream", upstream), ("store", stored)):
            assert form not in text, f"{form!r} leaked to the {where}"
        assert form not in (record.result or "")
