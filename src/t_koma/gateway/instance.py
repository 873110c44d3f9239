"""One gateway per data dir. Two gateways on one database would run turns of the same session at once (each
process only serialises its own), so the second one refuses to start, naming the first."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from t_koma.errors import ConfigError
from t_koma.files import ensure_private_file

LOCK_FILE_NAME = "gateway.lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path, port: int) -> Iterator[None]:
    """Hold the data dir's gateway lock while the block runs; raise `ConfigError` when another process holds it.
    The kernel drops the lock when the holder exits, however it exits (kill -9 included): no stale lock files."""
    path = ensure_private_file(data_dir / LOCK_FILE_NAME)
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(_held_message(path, data_dir)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {port}\n".encode())
        yield
    finally:
        os.close(fd)


def _held_message(path: Path, data_dir: Path) -> str:
    holder = path.read_text(encoding="utf-8", errors="replace").split()
    who = f" (pid {holder[0]}, port {holder[1]})" if len(holder) == 2 and all(p.isdigit() for p in holder) else ""
    return (
        f"another t-koma gateway already runs on the data dir {data_dir}{who}; use that one, stop it, or give this "
        "one its own data dir with T_KOMA_DATA_DIR"
    )
