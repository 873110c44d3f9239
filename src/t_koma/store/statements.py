"""The SQL text of the SQLite store (`store.sqlite`): constant strings, so that sqlite3's statement cache keeps
them prepared."""

from __future__ import annotations

SESSION_COLUMNS = "id, title, created, updated"
MESSAGE_COLUMNS = "id, session_id, position, role, content, model, created, turn_id, status"

INSERT_SESSION = "INSERT INTO sessions (id, title, created, updated) VALUES (?, ?, ?, ?)"
GET_SESSION = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
LATEST_SESSION = f"SELECT {SESSION_COLUMNS} FROM sessions ORDER BY updated DESC, rowid DESC LIMIT 1"
RENAME_SESSION = f"UPDATE sessions SET title = ? WHERE id = ? RETURNING {SESSION_COLUMNS}"
DELETE_SESSION = "DELETE FROM sessions WHERE id = ?"
LIST_SESSIONS = """
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
INSERT_MESSAGE = """
INSERT INTO messages (id, session_id, position, role, content, model, turn_id, status, created)
VALUES (?1, ?2, (SELECT coalesce(max(position) + 1, 0) FROM messages WHERE session_id = ?2), ?3, ?4, ?5, ?6, ?7, ?8)
RETURNING position
"""
LOAD_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY position"
# The tail as ONE row (a JSON array of [id, session_id, position, role, content, ...] arrays, content embedded as
# JSON): sqlite3 gives up the GIL for every row it steps, and the database thread waits for it again each time (up
# to the 5 ms switch interval while the event loop is busy), so a 60-message tail row by row took 60 waits.
# `created` goes as text with all 17 digits (JSON numbers from SQLite keep only 15).
_RECENT_AS_JSON = f"""
SELECT json_group_array(
    json_array(id, session_id, position, role, json(content), model, printf('%!.17g', created), turn_id, status)
)
FROM (
    SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?1 ORDER BY position DESC LIMIT ?2)
    ORDER BY position
)
"""
LOAD_RECENT_MESSAGES = _RECENT_AS_JSON
# A session and its tail in one row (no row for an unknown session).
GET_SESSION_WITH_RECENT = f"SELECT {SESSION_COLUMNS}, ({_RECENT_AS_JSON}) FROM sessions WHERE id = ?1"
INSERT_TURN = """
INSERT INTO turns (id, session_id, status, owner_pid, owner_started, started) VALUES (?, ?, 'running', ?, ?, ?)
"""
FINISH_TURN = "UPDATE turns SET status = ?, stop_reason = ?, finished = ? WHERE id = ?"
RUNNING_TURNS = "SELECT id, session_id, owner_pid, owner_started FROM turns WHERE status = 'running'"
INTERRUPT_TURN = """
UPDATE turns SET status = 'interrupted', stop_reason = 'interrupted', finished = ? WHERE id = ? AND status = 'running'
"""
INSERT_USAGE = """
INSERT INTO usage_log (session_id, message_id, provider, model, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens, reasoning_tokens, cost, latency_ms, created)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# A whole batch in one statement (atomic without an explicit transaction): the rows travel as one JSON array.
INSERT_USAGE_MANY = f"""
INSERT INTO usage_log (session_id, message_id, provider, model, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens, reasoning_tokens, cost, latency_ms, created)
SELECT {", ".join(f"json_extract(value, '$[{column}]')" for column in range(12))} FROM json_each(?)
"""
GET_COOLDOWN = "SELECT model_key, until, reason FROM cooldowns WHERE model_key = ? AND until > ?"
SET_COOLDOWN = """
INSERT INTO cooldowns (model_key, until, reason) VALUES (?, ?, ?)
ON CONFLICT (model_key) DO UPDATE SET until = excluded.until, reason = excluded.reason
"""
CLEAR_COOLDOWN = "DELETE FROM cooldowns WHERE model_key = ?"

SAVE_PARTIAL = """
INSERT INTO partial_steps (turn_id, session_id, text, updated) VALUES (?, ?, ?, ?)
ON CONFLICT (turn_id) DO UPDATE SET text = excluded.text, updated = excluded.updated
"""

DISCARD_PARTIAL = "DELETE FROM partial_steps WHERE turn_id = ?"

PARTIAL_TEXT = "SELECT text FROM partial_steps WHERE turn_id = ?"
