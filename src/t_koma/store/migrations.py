"""Versioned schema migrations for the SQLite store.

Each migration is applied once, inside one `BEGIN IMMEDIATE` transaction together with its row in
`schema_migrations`, so several processes opening the same file at once never apply one twice. Never edit a
released migration: append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from t_koma.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_V1_INITIAL = Migration(
    1,
    "initial schema: sessions, turns, messages, usage_log, cooldowns",
    (
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL
        ) STRICT
        """,
        "CREATE INDEX sessions_by_updated ON sessions (updated)",
        """
        CREATE TABLE turns (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            status TEXT NOT NULL CHECK (status IN ('running', 'done', 'interrupted', 'cancelled', 'failed')),
            stop_reason TEXT,
            owner_pid INTEGER,
            owner_started TEXT,
            started REAL NOT NULL,
            finished REAL
        ) STRICT
        """,
        "CREATE INDEX turns_by_session ON turns (session_id)",
        "CREATE INDEX turns_running ON turns (status) WHERE status = 'running'",
        """
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            position INTEGER NOT NULL CHECK (position >= 0),
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            model TEXT,
            turn_id TEXT REFERENCES turns (id) ON DELETE SET NULL,
            status TEXT,
            created REAL NOT NULL,
            UNIQUE (session_id, position)
        ) STRICT
        """,
        "CREATE INDEX messages_by_turn ON messages (turn_id)",
        """
        CREATE TRIGGER messages_touch_session AFTER INSERT ON messages
        BEGIN
            UPDATE sessions SET updated = max(updated, NEW.created) WHERE id = NEW.session_id;
        END
        """,
        """
        CREATE TABLE usage_log (
            id INTEGER PRIMARY KEY,
            session_id TEXT REFERENCES sessions (id) ON DELETE SET NULL,
            message_id TEXT REFERENCES messages (id) ON DELETE SET NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cache_read_tokens INTEGER,
            cache_creation_tokens INTEGER,
            reasoning_tokens INTEGER,
            cost REAL,
            latency_ms REAL NOT NULL,
            created REAL NOT NULL
        ) STRICT
        """,
        "CREATE INDEX usage_by_session ON usage_log (session_id)",
        "CREATE INDEX usage_by_message ON usage_log (message_id)",
        """
        CREATE TABLE cooldowns (
            model_key TEXT PRIMARY KEY,
            until REAL NOT NULL,
            reason TEXT NOT NULL
        ) STRICT
        """,
    ),
)

_V2_REASONING = Migration(
    2,
    "assistant messages may hold reasoning blocks (type 'reasoning' in messages.content)",
    # No table changes: reasoning is stored in order with the other content blocks, opaque parts verbatim. The
    # version exists so that an older t-koma, which cannot read such blocks, refuses the database with a clear
    # "upgrade t-koma" instead of failing on the first session that holds reasoning.
    (),
)

_V3_PARTIAL_STEPS = Migration(
    3,
    "partial_steps: text a running step has streamed so far, kept so a killed process loses at most a second",
    (
        """
        CREATE TABLE partial_steps (
            turn_id TEXT PRIMARY KEY REFERENCES turns (id) ON DELETE CASCADE,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            updated REAL NOT NULL
        ) STRICT
        """,
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1_INITIAL, _V2_REASONING, _V3_PARTIAL_STEPS)

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied REAL NOT NULL
) STRICT
"""


async def applied_versions(conn: aiosqlite.Connection) -> set[int]:
    rows = await conn.execute_fetchall("SELECT version FROM schema_migrations")
    return {int(row[0]) for row in rows}


async def migrate(conn: aiosqlite.Connection, now: float, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied by this call.

    `conn` must be in autocommit mode (isolation_level=None): transactions here are explicit."""
    await conn.execute(_CREATE_LEDGER)
    known = {migration.version for migration in migrations}
    done = await applied_versions(conn)
    _refuse_newer(done, known)
    if done >= known:
        return []
    await conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated since the check above.
        done = await applied_versions(conn)
        _refuse_newer(done, known)
        applied: list[int] = []
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in done:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
                (migration.version, migration.name, now),
            )
            applied.append(migration.version)
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    return applied


def _refuse_newer(done: set[int], known: set[int]) -> None:
    newest_known = max(known, default=0)
    newest_done = max(done, default=0)
    if newest_done > newest_known:
        raise ConfigError(
            f"the database schema (version {newest_done}) is newer than this t-koma understands "
            f"(version {newest_known}); upgrade t-koma"
        )
