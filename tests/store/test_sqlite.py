"""The SQLite store against real database files: sessions, messages, turns, usage, cooldowns, migrations, and
what several processes sharing one file (or a process killed mid-write) leave behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from t_koma.errors import ConfigError, SessionNotFoundError
from t_koma.messages import ProviderUsage, ReasoningBlock, TextBlock, ToolResultBlock, ToolUseBlock
from t_koma.store.base import Store, UsageRecord
from t_koma.store.sqlite import DEFAULT_TITLE, INTERRUPTED_NOTE, SqliteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "nested" / "koma.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(db_path)
    yield opened
    await opened.close()


def raw(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Query the file with plain sqlite3, as an outside observer."""
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


def run_python(db_path: Path, body: str) -> subprocess.Popen[str]:
    """Start another process that opens the same database file as `store`."""
    script = "import asyncio, sys\nfrom pathlib import Path\nfrom t_koma.store.sqlite import SqliteStore\n"
    script += "from t_koma.messages import TextBlock\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, str(db_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def usage(input_tokens: int, output_tokens: int, cost: float | None = None) -> ProviderUsage:
    return ProviderUsage(input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)


# --- opening and migrating ---------------------------------------------------------------------------


async def test_open_creates_the_file_in_wal_mode_with_strict_tables(store: SqliteStore, db_path: Path) -> None:
    assert db_path.is_file()
    assert db_path.stat().st_mode & 0o777 == 0o600
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    strict = {
        row[0]: row[1] for row in raw(db_path, "SELECT name, strict FROM pragma_table_list WHERE schema = 'main'")
    }
    for table in ("sessions", "messages", "turns", "usage_log", "cooldowns", "partial_steps", "schema_migrations"):
        assert strict[table] == 1, table
    assert [row[0] for row in raw(db_path, "SELECT version FROM schema_migrations")] == [1, 2, 3]


async def test_reopening_applies_no_migration_twice_and_keeps_data(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session("kept")
    await store.close()
    for _ in range(2):
        reopened = await SqliteStore.open(db_path)
        assert await reopened.get_session(session.id) == session
        await reopened.close()
    assert raw(db_path, "SELECT count(*) FROM schema_migrations") == [(3,)]


async def test_a_database_from_a_newer_version_is_refused(store: SqliteStore, db_path: Path) -> None:
    await store.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, applied) VALUES (99, 'future', 0)")
    with pytest.raises(ConfigError, match="newer than this t-koma"):
        await SqliteStore.open(db_path)


async def test_a_version_1_database_is_upgraded_in_place_keeping_its_sessions(db_path: Path) -> None:
    from t_koma.store.migrations import MIGRATIONS

    old = await SqliteStore.open(db_path)
    session = await old.create_session("from version 1")
    await old.append_message(session.id, "user", (TextBlock("hi"),))
    await old.close()
    with sqlite3.connect(db_path) as conn:  # what a version-1 t-koma left: only migration 1 and its tables
        conn.execute("DROP TABLE partial_steps")
        conn.execute("DELETE FROM schema_migrations WHERE version > 1")

    reopened = await SqliteStore.open(db_path)
    try:
        assert [m.content for m in await reopened.load_messages(session.id)] == [(TextBlock("hi"),)]
    finally:
        await reopened.close()
    versions = [row[0] for row in raw(db_path, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in MIGRATIONS] == [1, 2, 3]


async def test_an_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot open the database"):
        await SqliteStore.open(tmp_path / "file" / "koma.sqlite3")


async def test_sqlite_store_satisfies_the_store_protocol(store: SqliteStore) -> None:
    typed: Store = store
    assert await typed.latest_session() is None


# --- sessions --------------------------------------------------------------------------------------


async def test_session_crud(store: SqliteStore) -> None:
    untitled = await store.create_session()
    assert untitled.id.startswith("sess_") and untitled.title == DEFAULT_TITLE
    assert untitled.created_at == untitled.updated_at
    titled = await store.create_session("  Build the thing ")
    assert titled.title == "Build the thing"
    assert await store.get_session(titled.id) == titled
    assert await store.get_session("sess_missing") is None

    renamed = await store.rename_session(untitled.id, "Fix the bug")
    assert renamed.title == "Fix the bug" and renamed.id == untitled.id
    assert (await store.rename_session(untitled.id, "   ")).title == DEFAULT_TITLE
    with pytest.raises(SessionNotFoundError):
        await store.rename_session("sess_missing", "x")

    await store.append_message(titled.id, "user", (TextBlock("hi"),))
    assert await store.delete_session(titled.id) is True
    assert await store.delete_session(titled.id) is False
    assert await store.get_session(titled.id) is None
    assert await store.load_messages(titled.id) == []
    assert [s.session.id for s in await store.list_sessions()] == [untitled.id]


async def test_sessions_are_listed_most_recently_active_first(store: SqliteStore) -> None:
    first = await store.create_session("first")
    second = await store.create_session("second")
    assert [s.session.id for s in await store.list_sessions()] == [second.id, first.id]
    assert await store.latest_session() == second

    message = await store.append_message(first.id, "user", (TextBlock("back to the first"),))
    latest = await store.latest_session()
    assert latest is not None and latest.id == first.id
    assert latest.updated_at == message.created_at
    assert [s.session.id for s in await store.list_sessions()] == [first.id, second.id]


# --- messages --------------------------------------------------------------------------------------


async def test_messages_round_trip_every_block_type(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session()
    turn = await store.begin_turn(session.id)
    contents = [
        ("user", (TextBlock("list files — ünïcödé ✓"),)),
        (
            "assistant",
            (
                ReasoningBlock("anthropic", "text", "Let me look.", signature="EqQBCkgIARAB+/=", model="claude-x"),
                ReasoningBlock("anthropic", "encrypted", data="EmwKAhgBEgy3va+/=\x00\u2028opaque"),
                ReasoningBlock(
                    "openrouter", "summary", "Plan.", id="rs_1", format="openai-responses-v1", index=0, model="o/g"
                ),
                TextBlock("Sure."),
                ToolUseBlock("call_1", "run_shell_command", {"command": "ls -la", "nested": {"a": [1, 2.5, None]}}),
                ToolUseBlock("call_2", "run_shell_command", {}, raw_arguments='{"command": ', arguments_error="bad"),
            ),
        ),
        (
            "user",
            (
                ToolResultBlock("call_1", "exit code: 0\nstdout:\nfile.txt"),
                ToolResultBlock("call_2", "invalid arguments", is_error=True),
            ),
        ),
        ("assistant", ()),
    ]
    written = [
        await store.append_message(session.id, role, content, model="openrouter/x", turn_id=turn, status=None)  # type: ignore[arg-type]
        for role, content in contents
    ]
    partial = await store.append_message(session.id, "assistant", (TextBlock("half"),), status="partial")

    loaded = await store.load_messages(session.id)
    assert loaded == [*written, partial]
    assert await store.load_recent_messages(session.id, 10) == loaded  # the tail comes as one JSON row: same result
    assert [m.position for m in loaded] == [0, 1, 2, 3, 4]
    assert [(m.role, m.content) for m in loaded[:4]] == contents
    assert loaded[1].model == "openrouter/x" and loaded[1].turn_id == turn
    assert loaded[4].status == "partial" and loaded[4].model is None
    assert all(m.id.startswith("msg_") for m in loaded)
    stored_json = raw(db_path, "SELECT content FROM messages WHERE id = ?", (written[0].id,))[0][0]
    assert stored_json == '[{"type":"text","text":"list files — ünïcödé ✓"}]'


async def test_appending_to_a_missing_session_is_an_error(store: SqliteStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.append_message("sess_missing", "user", (TextBlock("hi"),))
    with pytest.raises(SessionNotFoundError):
        await store.begin_turn("sess_missing")


async def test_concurrent_appends_get_distinct_consecutive_positions(store: SqliteStore) -> None:
    session = await store.create_session()
    await asyncio.gather(*(store.append_message(session.id, "user", (TextBlock(str(i)),)) for i in range(40)))
    positions = [m.position for m in await store.load_messages(session.id)]
    assert positions == list(range(40))


async def test_two_store_objects_share_one_file(store: SqliteStore, db_path: Path) -> None:
    other = await SqliteStore.open(db_path)
    try:
        session = await store.create_session("shared")
        assert await other.get_session(session.id) == session
        writes = [
            (store if i % 2 else other).append_message(session.id, "user", (TextBlock(f"m{i}"),)) for i in range(30)
        ]
        await asyncio.gather(*writes)
        for reader in (store, other):
            loaded = await reader.load_messages(session.id)
            assert [m.position for m in loaded] == list(range(30))
            assert sorted(m.content[0].text for m in loaded if isinstance(m.content[0], TextBlock)) == sorted(
                f"m{i}" for i in range(30)
            )
        await other.set_cooldown("openrouter:a/b", time.time() + 60, "rate limited")
        cooldown = await store.get_cooldown("openrouter:a/b")
        assert cooldown is not None and cooldown.reason == "rate limited"
    finally:
        await other.close()


async def test_recent_messages_are_the_sessions_tail_in_order(store: SqliteStore) -> None:
    session = await store.create_session()
    other = await store.create_session()
    for i in range(12):
        await store.append_message(session.id, "user" if i % 2 == 0 else "assistant", (TextBlock(f"m{i}"),))
    await store.append_message(other.id, "user", (TextBlock("elsewhere"),))
    everything = await store.load_messages(session.id)

    assert await store.load_recent_messages(session.id, 5) == everything[-5:]
    assert [m.position for m in await store.load_recent_messages(session.id, 5)] == [7, 8, 9, 10, 11]
    assert await store.load_recent_messages(session.id, 100) == everything
    assert await store.load_recent_messages(session.id, 0) == []
    assert await store.load_recent_messages(session.id, -1) == []  # not SQLite's "no limit"
    assert await store.load_recent_messages("sess_unknown", 5) == []
    assert await store.get_session_with_recent_messages(session.id, 3) == (
        await store.get_session(session.id),
        everything[-3:],
    )
    empty = await store.create_session()
    assert await store.get_session_with_recent_messages(empty.id, 3) == (empty, [])
    assert await store.get_session_with_recent_messages("sess_unknown", 3) is None


# --- usage -----------------------------------------------------------------------------------------


async def test_list_sessions_sums_messages_tokens_and_cost(store: SqliteStore, db_path: Path) -> None:
    costly = await store.create_session("costly")
    free = await store.create_session("free")
    empty = await store.create_session("empty")
    reply = await store.append_message(costly.id, "assistant", (TextBlock("a"),))
    await store.append_message(costly.id, "user", (TextBlock("b"),))
    await store.record_usage(UsageRecord(costly.id, reply.id, "openrouter", "a/b", usage(100, 20, 0.25), 812.5))
    await store.record_usage(UsageRecord(costly.id, None, "anthropic", "claude", usage(50, 5, 0.5), 100.0))
    await store.append_message(free.id, "assistant", (TextBlock("c"),))
    await store.record_usage(UsageRecord(free.id, None, "openai_compatible", "local", usage(7, 3), 5.0))
    await store.record_usage(UsageRecord(None, None, "openrouter", "a/b", usage(1000, 1000, 9.0), 1.0))

    summaries = {s.session.id: s for s in await store.list_sessions()}
    assert (summaries[costly.id].message_count, summaries[costly.id].input_tokens) == (2, 150)
    assert summaries[costly.id].output_tokens == 25
    assert summaries[costly.id].cost == pytest.approx(0.75)
    assert (summaries[free.id].input_tokens, summaries[free.id].output_tokens, summaries[free.id].cost) == (7, 3, None)
    assert (summaries[empty.id].message_count, summaries[empty.id].input_tokens, summaries[empty.id].cost) == (
        0,
        0,
        None,
    )


async def test_usage_rows_keep_unknown_counts_as_null_and_survive_session_deletion(
    store: SqliteStore, db_path: Path
) -> None:
    session = await store.create_session()
    message = await store.append_message(session.id, "assistant", (TextBlock("a"),))
    full = ProviderUsage(10, 2, cache_read_tokens=4, cache_creation_tokens=3, reasoning_tokens=1, cost=0.01)
    await store.record_usage(UsageRecord(session.id, message.id, "anthropic", "claude", full, 42.0))
    await store.record_usage(UsageRecord(session.id, None, "openrouter", "a/b", usage(1, 1), 7.0))
    columns = "provider, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, reasoning_tokens, cost"
    rows = raw(db_path, f"SELECT {columns}, latency_ms, message_id FROM usage_log ORDER BY id")
    assert rows == [
        ("anthropic", 10, 2, 4, 3, 1, 0.01, 42.0, message.id),
        ("openrouter", 1, 1, None, None, None, None, 7.0, None),
    ]
    assert await store.delete_session(session.id)
    assert raw(db_path, "SELECT session_id, message_id FROM usage_log") == [(None, None), (None, None)]


# --- cooldowns -------------------------------------------------------------------------------------


async def test_cooldown_set_get_expiry_and_clear(store: SqliteStore) -> None:
    assert await store.get_cooldown("openrouter:a/b") is None
    until = time.time() + 3600
    await store.set_cooldown("openrouter:a/b", until, "429 rate limited")
    cooldown = await store.get_cooldown("openrouter:a/b")
    assert cooldown is not None
    assert (cooldown.model_key, cooldown.until, cooldown.reason) == ("openrouter:a/b", until, "429 rate limited")
    assert await store.get_cooldown("openrouter:c/d") is None

    await store.set_cooldown("openrouter:a/b", time.time() - 1, "expired")
    assert await store.get_cooldown("openrouter:a/b") is None

    await store.set_cooldown("openrouter:a/b", until, "again")
    await store.clear_cooldown("openrouter:a/b")
    assert await store.get_cooldown("openrouter:a/b") is None
    await store.clear_cooldown("never-set")


# --- turns and recovery ----------------------------------------------------------------------------


async def test_turns_are_recorded_and_finished(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session()
    turn = await store.begin_turn(session.id)
    assert turn.startswith("turn_")
    assert raw(db_path, "SELECT status, owner_pid FROM turns WHERE id = ?", (turn,)) == [("running", os.getpid())]
    await store.finish_turn(turn, "done", "end_turn")
    assert raw(db_path, "SELECT status, stop_reason FROM turns WHERE id = ?", (turn,)) == [("done", "end_turn")]
    await store.finish_turn("turn_unknown", "failed")


async def test_a_turn_begins_with_its_user_message_in_one_call(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session()
    await store.append_message(session.id, "user", (TextBlock("earlier"),))

    turn, message = await store.begin_turn_with_message(session.id, (TextBlock("now"),))

    assert raw(db_path, "SELECT status FROM turns WHERE id = ?", (turn,)) == [("running",)]
    assert (message.role, message.position, message.turn_id, message.content) == ("user", 1, turn, (TextBlock("now"),))
    assert (await store.load_messages(session.id))[-1] == message
    with pytest.raises(SessionNotFoundError):
        await store.begin_turn_with_message("sess_missing", (TextBlock("hi"),))
    assert raw(db_path, "SELECT count(*) FROM turns") == [(1,)]


async def test_recovery_leaves_turns_of_live_processes_alone(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session()
    turn = await store.begin_turn(session.id)
    assert await store.recover_interrupted_turns() == 0
    assert raw(db_path, "SELECT status FROM turns WHERE id = ?", (turn,)) == [("running",)]


async def test_recovery_marks_a_dead_process_turn_interrupted(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session()
    await store.append_message(session.id, "user", (TextBlock("do it"),))
    child = run_python(
        db_path,
        """
        async def main():
            store = await SqliteStore.open(Path(sys.argv[1]))
            session = await store.latest_session()
            print(await store.begin_turn(session.id))
            await store.close()
        asyncio.run(main())
        """,
    )
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    turn = out.strip()

    assert await store.recover_interrupted_turns() == 1
    assert raw(db_path, "SELECT status, stop_reason FROM turns WHERE id = ?", (turn,)) == [
        ("interrupted", "interrupted")
    ]
    note = (await store.load_messages(session.id))[-1]
    assert (note.role, note.status, note.turn_id, note.position) == ("assistant", "interrupted", turn, 1)
    assert note.content == (TextBlock(INTERRUPTED_NOTE),)
    assert await store.recover_interrupted_turns() == 0


async def test_a_process_killed_mid_write_leaves_a_consistent_file(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session("victim")
    writer = run_python(
        db_path,
        f"""
        async def main():
            store = await SqliteStore.open(Path(sys.argv[1]))
            turn = await store.begin_turn({session.id!r})
            for i in range(1_000_000):
                await store.append_message({session.id!r}, "user", (TextBlock("x" * 2000 + str(i)),), turn_id=turn)
                print(i, flush=True)
        asyncio.run(main())
        """,
    )
    assert writer.stdout is not None
    acknowledged = -1
    while acknowledged < 50:
        line = writer.stdout.readline()
        assert line, writer.stderr.read() if writer.stderr else "writer exited"
        acknowledged = int(line)
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert raw(db_path, "PRAGMA foreign_key_check") == []
    messages = await store.load_messages(session.id)
    assert len(messages) >= acknowledged + 1  # every acknowledged (committed) write survived
    assert [m.position for m in messages] == list(range(len(messages)))

    assert await store.recover_interrupted_turns() == 1
    last = (await store.load_messages(session.id))[-1]
    assert (last.status, last.content) == ("interrupted", (TextBlock(INTERRUPTED_NOTE),))
    await store.close()
    reopened = await SqliteStore.open(db_path)
    assert len(await reopened.load_messages(session.id)) == len(messages) + 1
    await reopened.close()


async def test_a_step_stores_the_assistant_message_and_its_usage_row_together(
    store: SqliteStore, db_path: Path
) -> None:
    session = await store.create_session("steps")
    await store.append_message(session.id, "user", (TextBlock("hi"),))
    record = UsageRecord(None, None, "openrouter", "test/model", usage(10, 3, 0.5), 12.5)

    stored = await store.append_step(session.id, (TextBlock("hello"),), record, model="test/model")

    assert stored.position == 1 and stored.role == "assistant"
    rows = raw(db_path, "SELECT session_id, message_id, model, input_tokens, output_tokens, cost FROM usage_log")
    assert rows == [(session.id, stored.id, "test/model", 10, 3, 0.5)]
    await store.record_usage_many([record, record])
    assert raw(db_path, "SELECT count(*) FROM usage_log") == [(3,)]


async def test_a_last_step_also_records_its_turn_as_done(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session()
    turn, _ = await store.begin_turn_with_message(session.id, (TextBlock("hi"),))
    record = UsageRecord(None, None, "openrouter", "test/model", usage(1, 1), 1.0)

    await store.append_step(session.id, (TextBlock("calling"),), record, turn_id=turn)
    assert raw(db_path, "SELECT status FROM turns WHERE id = ?", (turn,)) == [("running",)]
    last = await store.append_step(
        session.id, (TextBlock("done"),), record, turn_id=turn, finishes=True, stop_reason="stop"
    )

    assert raw(db_path, "SELECT status, stop_reason FROM turns WHERE id = ?", (turn,)) == [("done", "stop")]
    assert (await store.load_messages(session.id))[-1] == last


async def test_a_usage_batch_is_written_whole_in_order_with_every_column(store: SqliteStore, db_path: Path) -> None:
    session = await store.create_session()
    full = ProviderUsage(10, 2, cache_read_tokens=4, cache_creation_tokens=3, reasoning_tokens=1, cost=0.01)
    batch = [UsageRecord(None, None, "openrouter", "a/b", usage(i, i + 1), 1.5 * i) for i in range(200)] + [
        UsageRecord(session.id, None, "anthropic", "claude ✓", full, 42.0)
    ]

    await store.record_usage_many(batch)
    await store.record_usage_many([])

    columns = "session_id, message_id, provider, model, input_tokens, output_tokens, cache_read_tokens, "
    columns += "cache_creation_tokens, reasoning_tokens, cost, latency_ms, typeof(latency_ms), typeof(created)"
    rows = raw(db_path, f"SELECT {columns} FROM usage_log ORDER BY id")
    assert len(rows) == 201
    assert rows[7] == (None, None, "openrouter", "a/b", 7, 8, None, None, None, None, 10.5, "real", "real")
    assert rows[-1] == (session.id, None, "anthropic", "claude ✓", 10, 2, 4, 3, 1, 0.01, 42.0, "real", "real")
    assert [row[4] for row in rows[:200]] == list(range(200))
    with pytest.raises(sqlite3.IntegrityError):  # one statement: a bad row leaves none of its batch
        await store.record_usage_many([batch[0], UsageRecord("sess_missing", None, "x", "y", usage(1, 1), 1.0)])
    assert raw(db_path, "SELECT count(*) FROM usage_log") == [(201,)]


async def test_the_database_and_its_wal_files_are_private_from_the_start(tmp_path: Path) -> None:
    """Another local user must not read messages from the WAL: the file is 0600 before SQLite creates -wal/-shm."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "fresh" / "koma.sqlite3"
        store = await SqliteStore.open(path)
        session = await store.create_session("secret talk")
        await store.append_message(session.id, "user", (TextBlock("a private message"),))
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), path.parent)
        }
        await store.close()
    finally:
        os.umask(previous)

    assert modes == {"koma.sqlite3": 0o600, "koma.sqlite3-wal": 0o600, "koma.sqlite3-shm": 0o600, "fresh": 0o700}


async def test_database_files_an_older_version_left_open_are_tightened(db_path: Path) -> None:
    store = await SqliteStore.open(db_path)
    await store.create_session("x")
    await store.close()
    companions = [db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")]
    for path in companions:
        path.touch()
        path.chmod(0o644)

    reopened = await SqliteStore.open(db_path)
    await reopened.close()

    left = [path for path in companions if path.exists()]
    assert db_path in left
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in left} == dict.fromkeys(
        (path.name for path in left), 0o600
    )
