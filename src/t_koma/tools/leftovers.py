"""Processes the shell tool left behind, found and stopped when t-koma stops.

A command may start background processes, and `setsid` or a double fork takes them out of the command's process
group, so stopping that group does not reach them. Every tool process gets `T_KOMA_TOOL_OWNER=<owner>` in its
environment, which children inherit through `setsid` and `exec`; `stop_leftovers` finds them by it in
`/proc/<pid>/environ` (readable for one's own processes) and stops them: SIGTERM, then SIGKILL after a grace."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

from t_koma.processes import process_alive

OWNER_VARIABLE = "T_KOMA_TOOL_OWNER"
_PROC = Path("/proc")
_POLL_SECONDS = 0.05


def new_owner() -> str:
    """A tag for the tool processes of this t-koma process (unique across restarts and pid reuse)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def find_leftovers(owner: str) -> list[int]:
    """The pids of live processes started (directly or not) by tool commands of `owner`."""
    marker = f"{OWNER_VARIABLE}={owner}".encode()
    found: list[int] = []
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop_leftovers(owner: str, grace_seconds: float = 2.0) -> int:
    """Stop every leftover process of `owner`; returns how many there were."""
    pids = find_leftovers(owner)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while pids and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        pids = [pid for pid in pids if process_alive(pid, None)]
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return len(pids)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone meanwhile
        os.kill(pid, sig)
