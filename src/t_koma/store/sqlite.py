"""The SQLite `Store`: one aiosqlite connection to `koma.sqlite3` in WAL mode, shared safely by several processes.

The connection runs in autocommit mode, so every write is a single statement that is committed when it returns (the
only multi-statement operation, turn recovery, uses an explicit `BEGIN IMMEDIATE`). Statements are constant
strings, so sqlite3's statement cache keeps them prepared. They are not serialised by a lock: the connection's
thread runs them one at a time in the order they were queued, so many tasks' statements wait in its queue at once
and each costs its caller one round trip, and statements a method queues together (`asyncio.gather` starts its
tasks in order, in consecutive steps of the event loop) reach the database in that order, in one round trip.
(Behind a lock, each statement held every other task for a round trip through a busy event loop: a WebSocket turn's
few statements waited seconds behind `/v1` load.) A session's `updated` time follows its messages (a trigger bumps
it on insert); renaming does not count as activity.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import aiosqlite
import orjson

from t_koma.errors import ConfigError, SessionNotFoundError, TKomaError
from t_koma.files import ensure_private_file
from t_koma.messages import ContentBlock, Role, TextBlock, block_from_dict, block_to_dict
from t_koma.processes import own_process_started, process_alive
from t_koma.store import statements as sql
from t_koma.store.base import Cooldown, SessionInfo, SessionSummary, StoredMessage, TurnStatus, UsageRecord
from t_koma.store.failures import GuardedConnection
from t_koma.store.migrations import migrate

DEFAULT_TITLE = "New session"
INTERRUPTED_NOTE = "[turn interrupted: the previous process stopped before it finished]"
BUSY_TIMEOUT_SECONDS = 15.0

_ROLES = ("user", "assistant")


class SqliteStore:
    """`Store` backed by one SQLite file. Open with `await SqliteStore.open(path)`; close with `close()`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = GuardedConnection(conn, path, BUSY_TIMEOUT_SECONDS)
        self.path = path
        # No statement may be queued while another task holds an explicit transaction open (it would run inside
        # it): statements wait while `_no_transaction` is clear.
        self._no_transaction = asyncio.Event()
        self._no_transaction.set()
        self._transaction_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating it and its parent directories if needed) and migrate the database at `path`."""
        path = Path(path).expanduser()
        try:
            # Conversations are private: the file exists with mode 0600 before SQLite opens it, and SQLite creates
            # the -wal and -shm files with the database's mode. Files an older version left open are tightened.
            ensure_private_file(path)
            for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if companion.exists():
                    ensure_private_file(companion)
            conn = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the database {path}: {exc}") from exc
        try:
            await _configure(conn)
            await migrate(conn, time.time())
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
        await self._write(sql.INSERT_SESSION, (info.id, info.title, info.created_at, info.updated_at))
        return info

    async def get_session(self, session_id: str) -> SessionInfo | None:
        rows = await self._fetch(sql.GET_SESSION, (session_id,))
        return _session(rows[0]) if rows else None

    async def latest_session(self) -> SessionInfo | None:
        """The most recently active session (newest message, else newest created)."""
        rows = await self._fetch(sql.LATEST_SESSION, ())
        return _session(rows[0]) if rows else None

    async def list_sessions(self) -> list[SessionSummary]:
        """All sessions, most recently active first, with message counts and summed usage."""
        rows = await self._fetch(sql.LIST_SESSIONS, ())
        return [
            SessionSummary(_session(row), int(row[4]), int(row[5]), int(row[6]), _opt_float(row[7])) for row in rows
        ]

    async def rename_session(self, session_id: str, title: str) -> SessionInfo:
        """Set a session's title (blank → the default title). Raises `SessionNotFoundError`."""
        rows = await self._fetch(sql.RENAME_SESSION, (_clean_title(title), session_id))
        if not rows:
            raise SessionNotFoundError(f"no session with id {session_id!r}")
        return _session(rows[0])

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session with its messages and turns; its usage rows stay (session set to NULL)."""
        await self._outside_transactions()
        cursor = await self._conn.execute(sql.DELETE_SESSION, (session_id,))
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
        finishes: bool = False,
        stop_reason: str | None = None,
    ) -> StoredMessage:
        """An assistant message and the usage row of the call that produced it (its `message_id` is filled in); with
        `finishes`, the turn's last step: the turn is also recorded as done with `stop_reason`. The statements are
        queued at once, in that order (one round trip), each committed on its own."""
        finish = (turn_id, stop_reason) if finishes and turn_id is not None else None
        return await self._append(session_id, "assistant", content, model, turn_id, None, usage, finish)

    async def _append(
        self,
        session_id: str,
        role: Role,
        content: tuple[ContentBlock, ...],
        model: str | None,
        turn_id: str | None,
        status: str | None,
        usage: UsageRecord | None,
        finish: tuple[str, str | None] | None = None,
    ) -> StoredMessage:
        message = _new_message(session_id, role, content, model, turn_id, status)
        insert = self._fetch(sql.INSERT_MESSAGE, _message_params(message))
        try:
            if usage is None:
                rows = await insert
            else:
                usage_params = _usage_params(replace(usage, session_id=session_id, message_id=message.id))
                more = [self._write(sql.INSERT_USAGE, usage_params)]
                if finish is not None:
                    more.append(self._write(sql.FINISH_TURN, ("done", finish[1], time.time(), finish[0])))
                rows, *_ = await asyncio.gather(insert, *more)
        except sqlite3.IntegrityError as exc:
            raise await self._missing_reference(session_id, turn_id, exc) from exc
        return replace(message, position=int(rows[0][0]))

    async def load_messages(self, session_id: str) -> list[StoredMessage]:
        """The session's messages in order; empty for an unknown session."""
        return [_message(row) for row in await self._fetch(sql.LOAD_MESSAGES, (session_id,))]

    async def load_recent_messages(self, session_id: str, limit: int) -> list[StoredMessage]:
        """The session's last `limit` messages (by position), in order; empty for an unknown session."""
        rows = await self._fetch(sql.LOAD_RECENT_MESSAGES, (session_id, max(0, limit)))
        return _messages_from_json(rows[0][0])

    async def get_session_with_recent_messages(
        self, session_id: str, limit: int
    ) -> tuple[SessionInfo, list[StoredMessage]] | None:
        """`get_session` and `load_recent_messages` in one statement (what a turn reads first); None for an unknown
        session."""
        rows = await self._fetch(sql.GET_SESSION_WITH_RECENT, (session_id, max(0, limit)))
        return (_session(rows[0]), _messages_from_json(rows[0][4])) if rows else None

    # --- turns ---------------------------------------------------------------------------------------

    async def begin_turn(self, session_id: str) -> str:
        turn_id, params = _new_turn(session_id)
        try:
            await self._write(sql.INSERT_TURN, params)
        except sqlite3.IntegrityError as exc:
            raise SessionNotFoundError(f"no session with id {session_id!r}") from exc
        return turn_id

    async def begin_turn_with_message(
        self, session_id: str, content: tuple[ContentBlock, ...]
    ) -> tuple[str, StoredMessage]:
        """Record a turn as running and append its user message: two commits, queued together (one round trip)."""
        turn_id, turn_params = _new_turn(session_id)
        message = _new_message(session_id, "user", content, None, turn_id, None)
        try:
            _, rows = await asyncio.gather(
                self._write(sql.INSERT_TURN, turn_params), self._fetch(sql.INSERT_MESSAGE, _message_params(message))
            )
        except sqlite3.IntegrityError as exc:
            raise await self._missing_reference(session_id, turn_id, exc) from exc
        return turn_id, replace(message, position=int(rows[0][0]))

    async def finish_turn(self, turn_id: str, status: TurnStatus, stop_reason: str | None = None) -> None:
        """Record how a turn ended. An unknown `turn_id` changes nothing."""
        await self._write(sql.FINISH_TURN, (status, stop_reason, time.time(), turn_id))

    async def recover_interrupted_turns(self) -> int:
        """Mark `running` turns whose process is gone as `interrupted`, each with an assistant note appended to
        its session. Turns of live processes (another `t-koma ask`, a gateway) are left alone."""
        running = await self._fetch(sql.RUNNING_TURNS, ())
        dead = [(str(row[0]), str(row[1])) for row in running if not process_alive(row[2], row[3])]
        if not dead:
            return 0
        recovered = 0
        async with self._transaction("BEGIN IMMEDIATE"):
            for turn_id, session_id in dead:
                now = time.time()
                cursor = await self._conn.execute(sql.INTERRUPT_TURN, (now, turn_id))
                if cursor.rowcount == 0:  # another process recovered it first
                    continue
                streamed = await self._conn.execute_fetchall(sql.PARTIAL_TEXT, (turn_id,))
                await self._conn.execute(sql.DISCARD_PARTIAL, (turn_id,))
                params = (
                    f"msg_{uuid.uuid4().hex}",
                    session_id,
                    "assistant",
                    _interrupted_note(str(next(iter(streamed))[0]) if streamed else ""),
                    None,
                    turn_id,
                    "interrupted",
                    now,
                )
                await self._conn.execute_fetchall(sql.INSERT_MESSAGE, params)
                recovered += 1
        return recovered

    async def save_partial(self, turn_id: str, session_id: str, text: str) -> None:
        await self._write(sql.SAVE_PARTIAL, (turn_id, session_id, text, time.time()))

    async def discard_partial(self, turn_id: str) -> None:
        await self._write(sql.DISCARD_PARTIAL, (turn_id,))

    # --- usage and cooldowns -------------------------------------------------------------------------

    async def record_usage(self, record: UsageRecord) -> None:
        try:
            await self._write(sql.INSERT_USAGE, _usage_params(record))
        except sqlite3.IntegrityError as exc:
            raise await self._missing_reference(record.session_id, None, exc, message_id=record.message_id) from exc

    async def record_usage_many(self, records: Sequence[UsageRecord]) -> None:
        """Several usage rows in one transaction (the pass-through path batches them)."""
        if not records:
            return
        await self._write(sql.INSERT_USAGE_MANY, (orjson.dumps([_usage_params(record) for record in records]),))

    async def get_cooldown(self, model_key: str) -> Cooldown | None:
        rows = await self._fetch(sql.GET_COOLDOWN, (model_key, time.time()))
        return Cooldown(str(rows[0][0]), float(rows[0][1]), str(rows[0][2])) if rows else None

    async def set_cooldown(self, model_key: str, until: float, reason: str) -> None:
        await self._write(sql.SET_COOLDOWN, (model_key, until, reason))

    async def clear_cooldown(self, model_key: str) -> None:
        await self._write(sql.CLEAR_COOLDOWN, (model_key,))

    # --- plumbing ------------------------------------------------------------------------------------

    async def _write(self, sql: str, params: Sequence[Any]) -> None:
        # No cursor.close(): the statement is already finished and reset, and closing would cost a thread hop.
        if not self._no_transaction.is_set():
            await self._outside_transactions()
        await self._conn.execute(sql, params)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not self._no_transaction.is_set():
            await self._outside_transactions()
        rows = await self._conn.execute_fetchall(sql, params)
        return cast("list[tuple[Any, ...]]", list(rows))

    async def _outside_transactions(self) -> None:
        # A loop: another transaction may have begun before this task woke up.
        while not self._no_transaction.is_set():
            await self._no_transaction.wait()

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[None]:
        """An explicit transaction; other tasks' statements wait until it ends."""
        async with self._transaction_lock:
            self._no_transaction.clear()
            try:
                await self._conn.execute(begin)
                try:
                    yield
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")
            finally:
                self._no_transaction.set()

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


def _interrupted_note(streamed: str) -> str:
    """The recovered turn's assistant message: what it had streamed, then the note."""
    text = f"{streamed}\n\n{INTERRUPTED_NOTE}" if streamed.strip() else INTERRUPTED_NOTE
    return orjson.dumps([block_to_dict(TextBlock(text))]).decode()


def _clean_title(title: str | None) -> str:
    return (title or "").strip() or DEFAULT_TITLE


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _session(row: Sequence[Any]) -> SessionInfo:
    return SessionInfo(str(row[0]), str(row[1]), float(row[2]), float(row[3]))


def _message(row: Sequence[Any], blocks: list[Any] | None = None) -> StoredMessage:
    """A message from its columns (`MESSAGE_COLUMNS`); `blocks` is its content when already parsed."""
    role = str(row[3])
    if role not in _ROLES:
        raise TKomaError(f"corrupt message {row[0]!r}: unknown role {role!r}")
    content = tuple(block_from_dict(block) for block in (orjson.loads(row[4]) if blocks is None else blocks))
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


def _messages_from_json(text: str) -> list[StoredMessage]:
    """Messages from a `json_group_array` of their columns, content embedded as JSON."""
    messages = [_message(fields, fields[4]) for fields in orjson.loads(text)]
    messages.sort(key=lambda message: message.position)  # an aggregate's input order is not guaranteed
    return messages


def _new_turn(session_id: str) -> tuple[str, tuple[Any, ...]]:
    turn_id = f"turn_{uuid.uuid4().hex}"
    pid, started = own_process_started()
    return turn_id, (turn_id, session_id, pid, started, time.time())


def _new_message(
    session_id: str,
    role: Role,
    content: tuple[ContentBlock, ...],
    model: str | None,
    turn_id: str | None,
    status: str | None,
) -> StoredMessage:
    """A message about to be inserted (its position is assigned by the INSERT)."""
    if role not in _ROLES:
        raise ValueError(f"role must be 'user' or 'assistant', not {role!r}")
    message_id = f"msg_{uuid.uuid4().hex}"
    return StoredMessage(message_id, session_id, -1, role, tuple(content), model, time.time(), turn_id, status)


def _message_params(message: StoredMessage) -> tuple[Any, ...]:
    payload = orjson.dumps([block_to_dict(block) for block in message.content]).decode()
    return (
        message.id,
        message.session_id,
        message.role,
        payload,
        message.model,
        message.turn_id,
        message.status,
        message.created_at,
    )


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
