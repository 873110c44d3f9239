"""SQLite failures the user can act on, named as such: "database is locked" and "disk is full" instead of an
internal error. `GuardedConnection` wraps the store's connection so that every statement gets this mapping."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from t_koma.errors import StoreError

# (fragment of SQLite's message, what the user reads: {path} and {timeout} are filled in)
_KNOWN: tuple[tuple[str, str], ...] = (
    (
        "locked",
        "the database {path} is locked by another process (waited {timeout:g} s); stop the other t-koma process "
        "using this data dir, or retry",
    ),
    ("disk is full", "the disk holding the database {path} is full; free some space and retry"),
    ("readonly", "the database {path} is read-only; make it and its directory writable by you"),
    ("disk i/o error", "disk I/O error on the database {path}; check the disk and the file"),
    (
        "malformed",
        "the database {path} is damaged; move it aside to start a new one (the sessions in it are lost)",
    ),
    (
        "not a database",
        "the file {path} is not a t-koma database; move it aside or point T_KOMA_DATA_DIR elsewhere",
    ),
)


def store_error(exc: sqlite3.Error, path: Path, timeout: float) -> StoreError:
    """The user-facing error for a SQLite failure (integrity errors are the store's own business, not this)."""
    text = str(exc).lower()
    for fragment, message in _KNOWN:
        if fragment in text:
            return StoreError(message.format(path=path, timeout=timeout))
    return StoreError(f"database error on {path}: {exc}")


class GuardedConnection:
    """The aiosqlite connection with SQLite's operational failures raised as `StoreError`."""

    __slots__ = ("_conn", "_path", "_timeout")

    def __init__(self, conn: aiosqlite.Connection, path: Path, timeout: float) -> None:
        self._conn = conn
        self._path = path
        self._timeout = timeout

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> aiosqlite.Cursor:
        with self._named_failures():
            return await self._conn.execute(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> Iterable[sqlite3.Row]:
        with self._named_failures():
            return await self._conn.execute_fetchall(sql, parameters)

    @contextmanager
    def _named_failures(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise  # a missing session or turn: the store turns it into its own error
        except sqlite3.DatabaseError as exc:
            raise store_error(exc, self._path, self._timeout) from None

    async def close(self) -> None:
        await self._conn.close()
