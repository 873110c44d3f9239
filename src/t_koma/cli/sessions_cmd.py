"""`t-koma sessions` and `t-koma history`: read the stored conversations (the SQLite file in the data dir).

Neither command needs a provider key, and neither creates the database when there is none yet. `history` shows an
assistant message's stored reasoning folded to one dim line ("thinking: first line … (N lines)"); `--json` keeps
every block. Stored text is model output: it goes through `terminal_safe` before it is printed."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from t_koma.cli.ask_render import shorten
from t_koma.cli.output import fail_json, print_json
from t_koma.client.sanitize import terminal_safe
from t_koma.client.status import format_cost
from t_koma.config.loader import load_config
from t_koma.errors import SessionNotFoundError, TKomaError
from t_koma.messages import ReasoningBlock, TextBlock, ToolResultBlock, ToolUseBlock, block_to_dict, reasoning_text
from t_koma.store.base import SessionInfo, SessionSummary, StoredMessage
from t_koma.store.sqlite import SqliteStore


@click.command("sessions")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def sessions(as_json: bool) -> None:
    """List stored sessions, most recently active first, with message count, tokens and cost."""
    try:
        summaries = asyncio.run(_list_sessions())
    except TKomaError as exc:
        if as_json:
            fail_json(exc)
        raise
    if as_json:
        print_json([summary_payload(summary) for summary in summaries])
    elif not summaries:
        click.echo("No sessions yet. Start one with: t-koma ask PROMPT")
    else:
        _console().print(_sessions_table(summaries))


@click.command("history")
@click.argument("session_id", metavar="SESSION|last")
@click.option("--json", "as_json", is_flag=True, help="Print the session and its messages as JSON.")
def history(session_id: str, as_json: bool) -> None:
    """Print one session's messages (`last` = the most recently active session)."""
    try:
        session, messages = asyncio.run(_load_history(session_id))
    except TKomaError as exc:
        if as_json:
            fail_json(exc)
        raise
    if as_json:
        print_json({"session": session_payload(session), "messages": [message_payload(m) for m in messages]})
    else:
        _print_history(_console(), session, messages)


async def _open_store() -> SqliteStore | None:
    """The store, or None when no database exists yet (reading must not create one)."""
    path = load_config().database_path
    return await SqliteStore.open(path) if path.exists() else None


async def _list_sessions() -> list[SessionSummary]:
    store = await _open_store()
    if store is None:
        return []
    try:
        return await store.list_sessions()
    finally:
        await store.close()


async def _load_history(wanted: str) -> tuple[SessionInfo, list[StoredMessage]]:
    store = await _open_store()
    if store is None:
        raise SessionNotFoundError("there are no stored sessions yet: start one with `t-koma ask PROMPT`")
    try:
        session = await (store.latest_session() if wanted == "last" else store.get_session(wanted))
        if session is None:
            what = "there are no stored sessions yet" if wanted == "last" else f"no session with id {wanted!r}"
            raise SessionNotFoundError(f"{what}; list them with `t-koma sessions`")
        return session, await store.load_messages(session.id)
    finally:
        await store.close()


# --- JSON ----------------------------------------------------------------------------------------------


def session_payload(session: SessionInfo) -> dict[str, Any]:
    return {
        "id": session.id,
        "title": session.title,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
    }


def summary_payload(summary: SessionSummary) -> dict[str, Any]:
    return session_payload(summary.session) | {
        "message_count": summary.message_count,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost": summary.cost,
    }


def message_payload(message: StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "position": message.position,
        "role": message.role,
        "content": [block_to_dict(block) for block in message.content],
        "model": message.model,
        "created_at": message.created_at,
        "turn_id": message.turn_id,
        "status": message.status,
    }


# --- text ----------------------------------------------------------------------------------------------


def _sessions_table(summaries: list[SessionSummary]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("ID", no_wrap=True)
    table.add_column("Title", no_wrap=True, overflow="ellipsis", min_width=12)
    table.add_column("Updated", no_wrap=True)
    table.add_column("Messages", justify="right", no_wrap=True)
    table.add_column("Tokens", justify="right", no_wrap=True)
    table.add_column("Cost", justify="right", no_wrap=True)
    for summary in summaries:
        tokens = summary.input_tokens + summary.output_tokens
        cost = "-" if summary.cost is None else format_cost(summary.cost)
        table.add_row(
            summary.session.id,
            escape(terminal_safe(summary.session.title)),
            _when(summary.session.updated_at),
            str(summary.message_count),
            f"{tokens:,}",
            cost,
        )
    return table


def _print_history(console: Console, session: SessionInfo, messages: list[StoredMessage]) -> None:
    title = escape(terminal_safe(session.title))
    console.print(f"[bold]{title}[/bold]  {session.id}  (updated {_when(session.updated_at)})")
    for message in messages:
        console.print()
        heading = escape(terminal_safe(_heading(message)))
        console.print(heading, style="bold cyan" if message.role == "user" else "bold green")
        for line, style in _block_lines(message):
            console.print(escape(terminal_safe(line)), style=style, soft_wrap=True)


def _heading(message: StoredMessage) -> str:
    parts: list[str] = [message.role]
    if message.model:
        parts.append(message.model)
    if message.status:
        parts.append(message.status)
    return f"[{' · '.join(parts)}] {_when(message.created_at)}"


def _block_lines(message: StoredMessage) -> list[tuple[str, str | None]]:
    """The message's lines to print, each with its style; its reasoning first, folded to one dim line."""
    lines: list[tuple[str, str | None]] = []
    if any(isinstance(block, ReasoningBlock) for block in message.content):
        lines.append((folded_reasoning(reasoning_text(message.content)), "dim"))
    for block in message.content:
        if isinstance(block, TextBlock):
            lines.append((block.text, None))
        elif isinstance(block, ToolUseBlock):
            arguments = block.raw_arguments if block.arguments_error else json.dumps(block.input, ensure_ascii=False)
            lines.append((f"-> {block.name} {arguments}", None))
        elif isinstance(block, ToolResultBlock):
            label = "error" if block.is_error else "result"
            lines.append((f"<- {label} ({block.tool_use_id}):", None))
            lines.extend((f"   {line}", None) for line in block.content.splitlines() or [""])
    return lines


def folded_reasoning(text: str) -> str:
    """Reasoning as one line: `thinking: <first line> … (N lines)`; opaque reasoning has no readable text."""
    lines = [line.strip() for line in terminal_safe(text).splitlines() if line.strip()]
    if not lines:
        return "thinking: (not readable: encrypted or redacted)"
    more = f" … ({len(lines)} lines)" if len(lines) > 1 else ""
    return f"thinking: {shorten(lines[0])}{more}"


def _console() -> Console:
    """A terminal-width console; piped output gets wide lines instead of rich's 80 columns."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
