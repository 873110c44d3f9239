"""The SQLite `Store`: one aiosqlite connection to `koma.sqlite3` in WAL mode, shared safely by several processes.

The connection runs in autocommit mode, so every write method is a single statement that is committed when it
returns (the only multi-statement operation, turn recovery, uses an explicit `BEGIN IMMEDIATE`). Statements are
constant strings, so sqlite3's statement cache keeps them prepared. A session's `updated` time follows its
messages (a trigger bumps it on insert); renaming does not count as activity.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import aiosqlite
import orjson

from t_koma.errors import ConfigError, SessionNotFoundError, TKomaError
from t_koma.messages import ContentBlock, Role, TextBlock, block_from_dict, block_to_dict
from t_koma.store.base import Cooldown, SessionInfo, SessionSummary, StoredMessage, TurnStatus, UsageRecord
from t_koma.store.migrations import migrate

DEFAULT_TITLE = "New session"
INTERRUPTED_NOTE = "[turn interrupted: the previous process stopped before it finished]"
BUSY_TIMEOUT_SECONDS = 15.0

_ROLES = ("user", "assistant")
_SESSION_COLUMNS = "id, title, created, updated"
_MESSAGE_COLUMNS = "id, session_id, position, role, content, model, created, turn_id, status"

_INSERT_SESSION = "INSERT INTO sessions (id, title, created, updated) VALUES (?, ?, ?, ?)"
_GET_SESSION = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?"
_LATEST_SESSION = f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY updated DESC, rowid DESC LIMIT 1"
_RENAME_SESSION = f"UPDATE sessions SET title = ? WHERE id = ? RETURNING {_SESSION_COLUMNS}"
_DELETE_SESSION = "DELETE FROM sessions WHERE id = ?"
_LIST_SESSIONS = """
SELECT s.id, s.title, s.created, s.updated, coalesce(m.n, 0), coalesce(u.input, 0), coalesce(u.output, 0), u.cost
FROM sessions AS s
LEFT JOIN (SELECT session_id, count(*) AS n FROM messages GROUP BY session_id) AS m ON m.session_id = s.id
LEFT JOIN (
    SELECT session_id, sum(input_tokens) AS input, sum(output_tokens) AS output, sum(cost) AS cost
    FROM usage_log WHERE session_id IS NOT NULL GROUP BY session_id
) AS u ON u.session_id = s.id
ORDER BY s.updated DESC, s.rowid DESC
"""
# The position is computed inside the INSERT, which holds the write lock, so concurrent writers never tie.
_INSERT_MESSAGE = """
INSERT INTO messages (id, session_id, position, role, content, model, turn_id, status, created)
VALUES (?1, ?2, (SELECT coalesce(max(position) + 1, 0) FROM messages WHERE session_id = ?2), ?3, ?4, ?5, ?6, ?7, ?8)
RETURNING position
"""
_LOAD_MESSAGES = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY position"
_INSERT_TURN = """
INSERT INTO turns (id, session_id, status, owner_pid, owner_started, started) VALUES (?, ?, 'running', ?, ?, ?)
"""
_FINISH_TURN = "UPDATE turns SET status = ?, stop_reason = ?, finished = ? WHERE id = ?"
_RUNNING_TURNS = "SELECT id, session_id, owner_pid, owner_started FROM turns WHERE status = 'running'"
_INTERRUPT_TURN = """
UPDATE turns SET status = 'interrupted', stop_reason = 'interrupted', finished = ? WHERE id = ? AND status = 'running'
"""
_INSERT_USAGE = """
INSERT INTO usage_log (session_id, message_id, provider, model, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens, reasoning_tokens, cost, latency_ms, created)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_GET_COOLDOWN = "SELECT model_key, until, reason FROM cooldowns WHERE model_key = ? AND until > ?"
_SET_COOLDOWN = """
INSERT INTO cooldowns (model_key, until, reason) VALUES (?, ?, ?)
ON CONFLICT (model_key) DO UPDATE SET until = excluded.until, reason = excluded.reason
"""
_CLEAR_COOLDOWN = "DELETE FROM cooldowns WHERE model_key = ?"


class SqliteStore:
    """`Store` backed by one SQLite file. Open with `await SqliteStore.open(path)`; close with `close()`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # Single statements need no lock against each other (the connection's thread serialises them), but none
        # may run inside another task's explicit transaction.
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating it and its parent directories if needed) and migrate the database at `path`."""
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            is_new = not path.exists()
            conn = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the database {path}: {exc}") from exc
        try:
            await _configure(conn)
            await migrate(conn, time.time())
            if is_new:
                path.chmod(0o600)  # conversations are private; SQLite gives -wal/-shm the same mode
        except sqlite3.Error as exc:
            await conn.close()
            raise ConfigError(f"cannot use the database {path}: {exc}") from exc
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._conn.close()

    # --- sessions ------------------------------------------------------------------------------------

    async def create_session(self, title: str | None = None) -> SessionInfo:
        now = time.time()
        info = SessionInfo(f"sess_{uuid.uuid4().hex}", _clean_title(title), now, now)
        await self._write(_INSERT_SESSION, (info.id, info.title, info.created_at, info.updated_at))
        return info

    async def get_session(self, session_id: str) -> SessionInfo | None:
        rows = await self._fetch(_GET_SESSION, (session_id,))
        return _session(rows[0]) if rows else None

    async def latest_session(self) -> SessionInfo | None:
        """The most recently active session (newest message, else newest created)."""
        rows = await self._fetch(_LATEST_SESSION, ())
        return _session(rows[0]) if rows else None

    async def list_sessions(self) -> list[SessionSummary]:
        """All sessions, most recently active first, with message counts and summed usage."""
        rows = await self._fetch(_LIST_SESSIONS, ())
        return [
            SessionSummary(_session(row), int(row[4]), int(row[5]), int(row[6]), _opt_float(row[7])) for row in rows
        ]

    async def rename_session(self, session_id: str, title: str) -> SessionInfo:
        """Set a session's title (blank → the default title). Raises `SessionNotFoundError`."""
        rows = await self._fetch(_RENAME_SESSION, (_clean_title(title), session_id))
        if not rows:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        return _session(rows[0])

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session with its messages and turns; its usage rows stay (session set to NULL)."""
        async with self._lock:
            cursor = await self._conn.execute(_DELETE_SESSION, (session_id,))
        return cursor.rowcount > 0

    # --- messages ------------------------------------------------------------------------------------

    async def append_message(
        self,
        session_id: str,
        role: Role,
        content: tuple[ContentBlock, ...],
        *,
        model: str | None = None,
        turn_id: str | None = None,
        status: str | None = None,
    ) -> StoredMessage:
        return await self._append(session_id, role, content, model, turn_id, status, None)

    async def append_step(
        self,
        session_id: str,
        content: tuple[ContentBlock, ...],
        usage: UsageRecord,
        *,
        model: str | None = None,
        turn_id: str | None = None,
    ) -> StoredMessage:
        """An assistant message and the usage row of the call that produced it (its `message_id` is filled in)."""
        return await self._append(session_id, "assistant", content, model, turn_id, None, usage)

    async def _append(
        self,
        session_id: str,
        role: Role,
        content: tuple[ContentBlock, ...],
        model: str | None,
        turn_id: str | None,
        status: str | None,
        usage: UsageRecord | None,
    ) -> StoredMessage:
        if role not in _ROLES:
            raise ValueError(f"role must be 'user' or 'assistant', not {role!r}")
        message_id = f"msg_{uuid.uuid4().hex}"
        now = time.time()
        payload = orjson.dumps([block_to_dict(block) for block in content]).decode()
        params = (message_id, session_id, role, payload, model, turn_id, status, now)
        try:
            async with self._lock:
                if usage is None:
                    rows = await self._conn.execute_fetchall(_INSERT_MESSAGE, params)
                else:
                    # Both statements are queued to the database thread at once: one round trip, not two.
                    usage_params = _usage_params(replace(usage, session_id=session_id, message_id=message_id))
                    rows, _ = await asyncio.gather(
                        self._conn.execute_fetchall(_INSERT_MESSAGE, params),
                        self._conn.execute(_INSERT_USAGE, usage_params),
                    )
        except sqlite3.IntegrityError as exc:
            raise await self._missing_reference(session_id, turn_id, exc) from exc
        position = int(next(iter(rows))[0])
        return StoredMessage(message_id, session_id, position, role, tuple(content), model, now, turn_id, status)

    async def load_messages(self, session_id: str) -> list[StoredMessage]:
        """The session's messages in order; empty for an unknown session."""
        return [_message(row) for row in await self._fetch(_LOAD_MESSAGES, (session_id,))]

    # --- turns ---------------------------------------------------------------------------------------

    async def begin_turn(self, session_id: str) -> str:
        turn_id = f"turn_{uuid.uuid4().hex}"
        pid = os.getpid()
        try:
            await self._write(_INSERT_TURN, (turn_id, session_id, pid, _process_started(pid), time.time()))
        except sqlite3.IntegrityError as exc:
            raise SessionNotFoundError(f"no session with id {session_id!r}") from exc
        return turn_id

    async def finish_turn(self, turn_id: str, status: TurnStatus, stop_reason: str | None = None) -> None:
        """Record how a turn ended. An unknown `turn_id` changes nothing."""
        await self._write(_FINISH_TURN, (status, stop_reason, time.time(), turn_id))

    async def recover_interrupted_turns(self) -> int:
        """Mark `running` turns whose process is gone as `interrupted`, each with an assistant note appended to
        its session. Turns of live processes (another `t-koma ask`, a gateway) are left alone."""
        async with self._lock:
            running = await self._conn.execute_fetchall(_RUNNING_TURNS)
            dead = [(str(row[0]), str(row[1])) for row in running if not _process_alive(row[2], row[3])]
            if not dead:
                return 0
            note = orjson.dumps([block_to_dict(TextBlock(INTERRUPTED_NOTE))]).decode()
            recovered = 0
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                for turn_id, session_id in dead:
                    now = time.time()
                    cursor = await self._conn.execute(_INTERRUPT_TURN, (now, turn_id))
                    if cursor.rowcount == 0:  # another process recovered it first
                        continue
                    params = (
                        f"msg_{uuid.uuid4().hex}",
                        session_id,
                        "assistant",
                        note,
                        None,
                        turn_id,
                        "interrupted",
                        now,
                    )
                    await self._conn.execute_fetchall(_INSERT_MESSAGE, params)
                    recovered += 1
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
        return recovered

    # --- usage and cooldowns -------------------------------------------------------------------------

    async def record_usage(self, record: UsageRecord) -> None:
        try:
            await self._write(_INSERT_USAGE, _usage_params(record))
        except sqlite3.IntegrityError as exc:
            raise await self._missing_reference(record.session_id, None, exc, message_id=record.message_id) from exc

    async def record_usage_many(self, records: Sequence[UsageRecord]) -> None:
        """Several usage rows in one transaction (the pass-through path batches them)."""
        if not records:
            return
        async with self._lock:
            await self._conn.execute("BEGIN")
            try:
                await self._conn.executemany(_INSERT_USAGE, [_usage_params(record) for record in records])
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def get_cooldown(self, model_key: str) -> Cooldown | None:
        rows = await self._fetch(_GET_COOLDOWN, (model_key, time.time()))
        return Cooldown(str(rows[0][0]), float(rows[0][1]), str(rows[0][2])) if rows else None

    async def set_cooldown(self, model_key: str, until: float, reason: str) -> None:
        await self._write(_SET_COOLDOWN, (model_key, until, reason))

    async def clear_cooldown(self, model_key: str) -> None:
        await self._write(_CLEAR_COOLDOWN, (model_key,))

    # --- plumbing ------------------------------------------------------------------------------------

    async def _write(self, sql: str, params: Sequence[Any]) -> None:
        # No cursor.close(): the statement is already finished and reset, and closing would cost a thread hop.
        async with self._lock:
            await self._conn.execute(sql, params)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._lock:
            rows = await self._conn.execute_fetchall(sql, params)
        return cast("list[tuple[Any, ...]]", list(rows))

    async def _missing_reference(
        self, session_id: str | None, turn_id: str | None, exc: sqlite3.IntegrityError, *, message_id: str | None = None
    ) -> TKomaError:
        if session_id is not None and await self.get_session(session_id) is None:
            return SessionNotFoundError(f"no session with id {session_id!r}")
        what = f"turn {turn_id!r}" if turn_id is not None else f"message {message_id!r}"
        return TKomaError(f"cannot store the record: unknown {what} ({exc})")


async def _configure(conn: aiosqlite.Connection) -> None:
    """Connection settings, applied once at open (PRAGMAs are per connection, not per file, except WAL)."""
    await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute("PRAGMA foreign_keys = ON")


def _clean_title(title: str | None) -> str:
    return (title or "").strip() or DEFAULT_TITLE


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _session(row: Sequence[Any]) -> SessionInfo:
    return SessionInfo(str(row[0]), str(row[1]), float(row[2]), float(row[3]))


def _message(row: Sequence[Any]) -> StoredMessage:
    role = str(row[3])
    if role not in _ROLES:
        raise TKomaError(f"corrupt message {row[0]!r}: unknown role {role!r}")
    content = tuple(block_from_dict(block) for block in orjson.loads(row[4]))
    return StoredMessage(
        id=str(row[0]),
        session_id=str(row[1]),
        position=int(row[2]),
        role=cast("Role", role),
        content=content,
        model=row[5],
        created_at=float(row[6]),
        turn_id=row[7],
        status=row[8],
    )


# --- which process owns a running turn --------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) from /proc, or None where /proc is unavailable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _process_started(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _process_alive(pid: Any, started: Any) -> bool:
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


def _usage_params(record: UsageRecord) -> tuple[Any, ...]:
    usage = record.usage
    return (
        record.session_id,
        record.message_id,
        record.provider,
        record.model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_creation_tokens,
        usage.reasoning_tokens,
        usage.cost,
        record.latency_ms,
        time.time(),
    )
