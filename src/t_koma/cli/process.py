"""Process-level protection applied once when the `t-koma` command starts.

The shell tool runs model-chosen commands as the user. Any process of the same user may read another's
`/proc/<pid>/environ` (the environment it was started with, where exported API keys live) unless that process is
marked non-dumpable, which also keeps its memory out of core dumps and same-user debuggers. t-koma marks itself so:
`tr '\\0' '\\n' < /proc/$PPID/environ` run by the tool then gets "Permission denied" instead of the keys. (root
reads everything regardless; keys exported in the user's own shell stay readable from that shell's entry, which
is why docs/configuration.md recommends the config dir's `.env` over `export`.)"""

from __future__ import annotations

import ctypes
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def protect_process() -> bool:
    """Mark this process non-dumpable (Linux); True when it is now protected."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)


def is_protected() -> bool:
    libc = _libc()
    return libc is not None and libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The symbols already loaded into this process (libc among them): `ctypes.util.find_library` would run
        # `ldconfig` and cost ~30 ms on every start.
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
