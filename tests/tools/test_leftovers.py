"""Background processes a tool command leaves behind — also those that escaped its process group with `setsid` —
are stopped when t-koma stops (the engine closes), and nothing else is touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from t_koma.engine.events import TurnRequest
from t_koma.processes import process_alive
from t_koma.tools.leftovers import stop_leftovers
from tests.engine.support import open_engine, wait_for
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import text_reply, tool_call_reply


async def test_processes_a_command_left_running_are_stopped_when_the_engine_closes(
    fake_openrouter: FakeUpstream,
) -> None:
    command = (
        "setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' > /dev/null 2>&1 & "
        "(sleep 300 > /dev/null 2>&1 & echo $! > background.pid); "
        "while [ ! -s escaped.pid ]; do sleep 0.01; done"
    )
    fake_openrouter.app.enqueue(
        tool_call_reply([("call_1", "run_shell_command", json.dumps({"command": command}))]), text_reply("Started.")
    )
    bystander = subprocess.Popen(["sleep", "300"])  # not started by a tool: must survive
    engine = await open_engine()
    try:
        await engine.run_turn(TurnRequest("Start a server."))
        pids = [int(Path(name).read_text()) for name in ("escaped.pid", "background.pid")]
        assert all(process_alive(pid, None) for pid in pids)  # the turn is over; they run on, as the tool promises

        await engine.close()

        await wait_for(lambda: not any(process_alive(pid, None) for pid in pids))
        assert bystander.poll() is None
    finally:
        stop_leftovers(engine.tool_context.owner or "", grace_seconds=0)  # whatever a failed check left running
        bystander.kill()
        bystander.wait()


def test_stopping_with_no_leftovers_is_a_no_op() -> None:
    assert stop_leftovers("no-such-owner") == 0
