"""`run_shell_command` running real commands: output layout, exit codes, timeouts that stop whole process
groups, the output cap, the scrubbed environment and the workspace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from t_koma.config.model import Config, Secrets, ShellSettings
from t_koma.tools.base import ToolContext, ToolResult
from t_koma.tools.registry import tool_context
from t_koma.tools.shell import ShellTool

SHELL = ShellTool()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def context(workspace: Path, *, timeout: float = 10.0, cap: int = 32 * 1024) -> ToolContext:
    return ToolContext(workspace=workspace, env=dict(os.environ), timeout_seconds=timeout, output_cap_bytes=cap)


async def run(workspace: Path, arguments: dict[str, Any], **settings: Any) -> ToolResult:
    return await SHELL.run(arguments, context(workspace, **settings))


def process_gone(pid: int) -> bool:
    """Gone, or a zombie (an orphan nobody reaps still has a pid, but nothing runs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.fixture
def leftover_pids() -> Iterator[list[int]]:
    """Pids a test started on purpose; killed afterwards whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_the_tool_describes_itself_to_the_model() -> None:
    definition = SHELL.definition()
    assert definition.name == "run_shell_command"
    assert definition.parameters["required"] == ["command"]
    assert set(definition.parameters["properties"]) == {"command", "timeout_seconds"}
    assert "timeout" in definition.description and "stderr" in definition.description


async def test_echo_returns_stdout_and_exit_code(workspace: Path) -> None:
    result = await run(workspace, {"command": "echo hello world"})
    assert result == ToolResult("exit code: 0\nstdout:\nhello world", is_error=False)


async def test_stderr_and_non_zero_exit_are_an_error_result(workspace: Path) -> None:
    result = await run(workspace, {"command": "echo out; echo problem >&2; exit 3"})
    assert result.is_error
    assert result.content == "exit code: 3\nstdout:\nout\nstderr:\nproblem"


async def test_a_failing_command_without_output_is_still_reported(workspace: Path) -> None:
    result = await run(workspace, {"command": "false"})
    assert result == ToolResult("exit code: 1\n(no output)", is_error=True)


async def test_a_command_killed_by_a_signal_names_the_signal(workspace: Path) -> None:
    result = await run(workspace, {"command": "kill -9 $$"})
    assert result.is_error
    assert "exit code: -9 (killed by SIGKILL)" in result.content


async def test_the_command_runs_in_the_workspace(workspace: Path) -> None:
    (workspace / "marker.txt").write_text("here")
    result = await run(workspace, {"command": "pwd; cat marker.txt"})
    lines = result.content.splitlines()
    assert Path(lines[2]).resolve() == workspace.resolve()
    assert lines[3] == "here"


async def test_stdin_is_empty_so_reading_input_does_not_hang(workspace: Path) -> None:
    result = await run(workspace, {"command": "cat; echo done"})
    assert result.content == "exit code: 0\nstdout:\ndone"


async def test_invalid_bytes_are_decoded_with_replacement(workspace: Path) -> None:
    result = await run(workspace, {"command": r"printf '\377ok'"})
    assert result.content.endswith("\ufffdok")


@pytest.mark.parametrize("arguments", [{}, {"command": ""}, {"command": "   "}, {"command": 42}, {"cmd": "ls"}])
async def test_a_missing_or_invalid_command_is_an_error_result(workspace: Path, arguments: dict[str, Any]) -> None:
    result = await run(workspace, arguments)
    assert result.is_error
    assert "'command'" in result.content


@pytest.mark.parametrize("timeout", ["soon", -1, 0, True, float("nan"), [5]])
async def test_an_invalid_timeout_is_an_error_result(workspace: Path, timeout: object) -> None:
    result = await run(workspace, {"command": "echo hi", "timeout_seconds": timeout})
    assert result.is_error
    assert "'timeout_seconds'" in result.content


async def test_a_missing_workspace_is_an_error_result(tmp_path: Path) -> None:
    result = await run(tmp_path / "nowhere", {"command": "echo hi"})
    assert result.is_error and "does not exist" in result.content


async def test_timeout_kills_the_command_and_its_children(workspace: Path, leftover_pids: list[int]) -> None:
    result = await run(
        workspace, {"command": "echo started; sleep 30 & echo $! > child.pid; wait", "timeout_seconds": 0.5}
    )
    child = int((workspace / "child.pid").read_text())
    leftover_pids.append(child)
    assert result.is_error
    assert result.content.startswith("error: the command timed out after 0.5 s")
    assert "stdout:\nstarted" in result.content
    assert await wait_until(lambda: process_gone(child))


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    workspace: Path, leftover_pids: list[int]
) -> None:
    command = "sh -c 'trap \"\" TERM; exec sleep 30' & echo $! > child.pid; wait"
    result = await run(workspace, {"command": command, "timeout_seconds": 0.3})
    child = int((workspace / "child.pid").read_text())
    leftover_pids.append(child)
    assert result.is_error and "timed out" in result.content
    assert await wait_until(lambda: process_gone(child))


async def test_the_default_timeout_comes_from_the_context(workspace: Path) -> None:
    result = await run(workspace, {"command": "sleep 30"}, timeout=0.3)
    assert result.is_error and "timed out after 0.3 s" in result.content


async def test_a_requested_timeout_is_capped_at_ten_times_the_default(workspace: Path) -> None:
    result = await run(workspace, {"command": "echo ok", "timeout_seconds": 10_000}, timeout=2)
    assert result == ToolResult("note: timeout_seconds was capped at 20 s\nexit code: 0\nstdout:\nok")


async def test_cancelling_the_run_kills_the_process_group(workspace: Path, leftover_pids: list[int]) -> None:
    task = asyncio.create_task(run(workspace, {"command": "sleep 30 & echo $! > child.pid; wait"}))
    pid_file = workspace / "child.pid"
    assert await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    leftover_pids.append(child)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_until(lambda: process_gone(child))


async def test_background_processes_holding_the_output_are_stopped(workspace: Path, leftover_pids: list[int]) -> None:
    result = await run(workspace, {"command": "sleep 30 & echo $! > bg.pid; echo launched"})
    child = int((workspace / "bg.pid").read_text())
    leftover_pids.append(child)
    assert not result.is_error
    assert result.content.startswith("exit code: 0\nstdout:\nlaunched\nnote: background processes")
    assert await wait_until(lambda: process_gone(child))


async def test_background_processes_with_redirected_output_keep_running(
    workspace: Path, leftover_pids: list[int]
) -> None:
    result = await run(workspace, {"command": "sleep 30 > /dev/null 2>&1 & echo $! > bg.pid"})
    child = int((workspace / "bg.pid").read_text())
    leftover_pids.append(child)
    assert result == ToolResult("exit code: 0\n(no output)")
    assert not process_gone(child)


async def test_long_output_keeps_head_and_tail_around_a_cut_marker(workspace: Path) -> None:
    full = "".join(f"{i}\n" for i in range(1, 20_001)).encode()
    result = await run(workspace, {"command": "seq 1 20000"}, cap=1000)
    stdout = result.content.split("stdout:\n", 1)[1]
    head, tail = full[:500].decode(), full[-500:].decode().rstrip("\n")
    layout = re.escape(head) + r"\n?\[\.\.\. (\d+) bytes cut \.\.\.\]\n?" + re.escape(tail)
    match = re.fullmatch(layout, stdout)
    assert match is not None, stdout
    assert int(match.group(1)) == len(full) - 1000
    assert f"\n[... {len(full) - 1000} bytes cut ...]\n" in stdout  # on a line of its own
    assert not result.is_error


async def test_the_cap_is_shared_so_a_short_stderr_survives_a_flood_on_stdout(workspace: Path) -> None:
    command = "echo the-real-error >&2; head -c 100000 /dev/zero | tr '\\0' x; exit 2"
    result = await run(workspace, {"command": command}, cap=2000)
    assert result.is_error
    assert result.content.endswith("stderr:\nthe-real-error")
    stderr_size = len(b"the-real-error\n")
    assert f"[... {100_000 - (2000 - stderr_size)} bytes cut ...]" in result.content
    assert len(result.content) < 2200


async def test_provider_keys_are_not_in_the_command_environment(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-SECRET-0001")
    monkeypatch.setenv("MY_LOCAL_TOKEN", "local-secret-0003")
    monkeypatch.setenv("HARMLESS", "visible")
    config = Config(
        config_dir=tmp_path,
        data_dir=tmp_path,
        config_file=None,
        default_chain=(),
        models={},
        secrets=Secrets({"OPENROUTER_API_KEY": "sk-or-test-SECRET-0001", "MY_LOCAL_TOKEN": "local-secret-0003"}),
        key_variables=("OPENROUTER_API_KEY", "MY_LOCAL_TOKEN"),
        shell=ShellSettings(workspace=workspace),
    )
    command = 'echo "[$OPENROUTER_API_KEY][$MY_LOCAL_TOKEN][$HARMLESS]"; env'
    result = await SHELL.run({"command": command}, tool_context(config))
    assert result.content.splitlines()[2] == "[][][visible]"
    assert "SECRET" not in result.content and "local-secret" not in result.content
