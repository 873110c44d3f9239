"""Whether a process still runs, from its pid and start time (/proc): turn recovery tells a live owner (another
`t-koma ask`, a gateway) from a dead one even when the pid was reused, and `tools.leftovers` waits for the
processes it stops."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) from /proc, or None where /proc is unavailable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_started(pid: int) -> str | None:
    """The process's start time as /proc gives it (None where /proc is unavailable)."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


_own: tuple[int, str | None] | None = None


def own_process_started() -> tuple[int, str | None]:
    """This process's pid and start time, read from /proc once per process (a turn records its owner)."""
    global _own
    pid = os.getpid()
    if _own is None or _own[0] != pid:  # first call, or a forked child
        _own = (pid, process_started(pid))
    return _own


def process_alive(pid: Any, started: Any) -> bool:
    """Whether the process that began a turn still runs. The start time guards against a reused pid."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    if state == "Z":
        return False
    return started is None or start == str(started)
