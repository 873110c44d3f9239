"""Best effort: which local process listens on a TCP port, for error messages. Linux only (`/proc/net/tcp*` gives
the socket's inode and owner uid, `/proc/<pid>/fd` the process when we may look); elsewhere, or when nothing is
found, the answer is None."""

from __future__ import annotations

import os
from pathlib import Path

from t_koma.client.sanitize import terminal_safe

_LISTEN = "0A"
_MAX_COMMAND_CHARS = 80


def describe_port_owner(port: int, proc: Path = Path("/proc")) -> str | None:
    """E.g. `pid 4242 (python3 -m http.server 3000) of user bob`, or `a process of user bob` when the process
    itself cannot be seen; None when nothing is found."""
    sockets = _listening_sockets(port, proc)
    if not sockets:
        return None
    pid = _pid_holding(set(sockets), proc)
    user = _user_name(next(iter(sockets.values())))
    if pid is None:
        return f"a process of user {user}"
    return f"pid {pid} ({_command(pid, proc)}) of user {user}"


def _listening_sockets(port: int, proc: Path) -> dict[str, int]:
    """{socket inode: owner uid} of the sockets listening on `port` (IPv4 and IPv6)."""
    found: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text(encoding="ascii", errors="replace").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and _port_of(fields[1]) == port:
                found[fields[9]] = int(fields[7])
    return found


def _port_of(address: str) -> int | None:
    try:
        return int(address.rpartition(":")[2], 16)
    except ValueError:
        return None


def _pid_holding(inodes: set[str], proc: Path) -> int | None:
    links = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            continue  # another user's process: its descriptors are hidden from us
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) in links:
                    return int(entry.name)
            except OSError:
                continue
    return None


def _command(pid: int, proc: Path) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    if len(command) > _MAX_COMMAND_CHARS:
        command = command[: _MAX_COMMAND_CHARS - 1] + "…"
    return terminal_safe(command) or "?"


def _user_name(uid: int) -> str:
    try:
        import pwd  # Unix only

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"
