"""Find a running gateway, or start one in the background and wait for it (bounded) with a spinner.

A started gateway runs in its own session (it survives the chat and is reused by the next one) and logs to
`<data dir>/gateway.log`. Whatever answers on the port must prove it is the user's gateway (`client.verify`); a
foreign listener is reported, never sent the token, and no second gateway is started next to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from t_koma.client.frames import GatewayUnavailableError
from t_koma.client.verify import ForeignListenerError, HealthCheck, check_gateway, foreign_listener_message

START_TIMEOUT = 15.0
PROBE_TIMEOUT = 0.5
SLOW_PROBE_TIMEOUT = 3.0
"""A listener silent for PROBE_TIMEOUT gets this long before it is called foreign (a busy gateway is slow)."""
POLL_INTERVAL = 0.1


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """The user's gateway, proven on `/health`; `started_pid` is set when this call started it."""

    http_url: str
    version: str
    started_pid: int | None = None


def probe(http_url: str, token_path: Path, timeout: float = PROBE_TIMEOUT) -> HealthCheck:
    """What answers `GET /health` at `http_url`, checked against the token in `token_path`. Never uses a proxy."""
    return check_gateway(http_url, lambda: read_token(token_path), timeout)


def read_token(path: Path) -> str | None:
    """The gateway's token from its file in the data dir; None when it does not exist (yet)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def gateway_command() -> list[str]:
    return [sys.executable, "-m", "t_koma", "gateway"]


def spawn_detached(command: Sequence[str], log_path: Path) -> int:
    """Start `command` in a new session with stdin from /dev/null and stdout/stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if hasattr(os, "posix_spawn"):
        # posix_spawn rather than Popen: the child must outlive us, and a Popen left running warns when collected.
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        return os.posix_spawn(command[0], list(command), env, file_actions=actions, setsid=True)
    with log_path.open("ab") as log:  # pragma: no cover - Windows
        flags = getattr(subprocess, "DETACHED_PROCESS", 0) | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        process = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, creationflags=flags
        )
        return process.pid


def exit_status(pid: int) -> int | None:
    """The exit code of our child `pid` once it has exited (reaping it), else None."""
    if not hasattr(os, "waitpid"):  # pragma: no cover - Windows
        return None
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def ensure_gateway(
    http_url: str,
    log_path: Path,
    token_path: Path,
    *,
    autostart: bool = True,
    console: Console | None = None,
    command: Sequence[str] | None = None,
    timeout: float = START_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> GatewayStatus:
    """Reuse the user's gateway answering at `http_url`, or start one (unless `autostart` is False) and wait for it.
    Raises `ForeignListenerError` when something else holds the port."""
    found = probe(http_url, token_path)
    if found.timed_out:
        found = probe(http_url, token_path, SLOW_PROBE_TIMEOUT)
    if found.version is not None:
        return GatewayStatus(http_url, found.version)
    if found.problem is not None:
        raise ForeignListenerError(foreign_listener_message(http_url, found.problem))
    if not autostart:
        raise GatewayUnavailableError(
            f"no gateway answers at {http_url}; start one with `t-koma gateway` (or drop --no-autostart)"
        )
    pid = spawn_detached(command or gateway_command(), log_path)
    console = console or Console(stderr=True)
    with console.status(f"Starting the gateway at {http_url} …", spinner="dots"):
        version = _wait_healthy(http_url, token_path, pid, log_path, timeout, clock)
    return GatewayStatus(http_url, version, started_pid=pid)


def _wait_healthy(
    http_url: str, token_path: Path, pid: int, log_path: Path, timeout: float, clock: Callable[[], float]
) -> str:
    deadline = clock() + timeout
    exited: int | None = None
    while clock() < deadline:
        found = probe(http_url, token_path)
        if found.version is not None:
            return found.version  # ours, or one another client started at the same moment
        if found.problem is not None and not found.timed_out:
            raise ForeignListenerError(foreign_listener_message(http_url, found.problem))
        if exited is None:
            exited = exit_status(pid)
        if exited is not None:
            raise GatewayUnavailableError(
                f"the gateway exited (code {exited}) before answering at {http_url}{_last_line(log_path)}; "
                f"see {log_path}"
            )
        time.sleep(POLL_INTERVAL)
    raise GatewayUnavailableError(
        f"the gateway did not answer at {http_url} within {timeout:.0f} s{_last_line(log_path)}; see {log_path}"
    )


def _last_line(log_path: Path) -> str:
    try:
        lines = [line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return f" (last log line: {lines[-1][:200]})" if lines else ""
