"""Rich views for the slash commands: the session table, a session's history and the help table."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from t_koma.client.frames import History, SessionEntry
from t_koma.client.render import fold, thinking_view
from t_koma.client.sanitize import command_of, terminal_safe
from t_koma.client.status import format_cost, format_tokens, short_id

COMMANDS: tuple[tuple[str, str], ...] = (
    ("/provider", "choose the provider, then the model"),
    ("/model", "choose another model of the current provider"),
    ("/new", "start a new session"),
    ("/sessions", "list the stored sessions"),
    ("/switch ID", "continue another session (its ID, an ID prefix or its number in /sessions)"),
    ("/history", "show this session's messages"),
    ("/output [N]", "show the last turn's tool output in full"),
    ("/thinking", "show the last turn's reasoning in full"),
    ("/reasoning [LEVEL]", "how much the model reasons from now on: none…xhigh, off, on, a token budget or default"),
    ("/help", "this help"),
    ("/quit", "leave the chat (also Ctrl+D)"),
)

KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the message"),
    ("Alt+Enter / Esc Enter", "new line"),
    ("Ctrl+C", "cancel the running turn; clear the input; twice: quit"),
    ("Ctrl+D", "quit (on an empty line)"),
    ("↑ / ↓", "previous / next message"),
    ("Tab", "complete a slash command"),
)


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return ""
    seconds = max((now if now is not None else time.time()) - timestamp, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


def sessions_table(sessions: Sequence[SessionEntry], current: str | None) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("#", "session", "title", "messages", "tokens in/out", "cost", "updated"):
        table.add_column(column, justify="right" if column in ("#", "messages", "cost") else "left")
    for number, entry in enumerate(sessions, start=1):
        usage = entry.usage
        tokens = f"{format_tokens(usage.input_tokens)}/{format_tokens(usage.output_tokens)}" if usage else ""
        table.add_row(
            f"{'▶' if entry.id == current else ''}{number}",
            short_id(entry.id),
            Text(terminal_safe(entry.title or "")),
            "" if entry.message_count is None else str(entry.message_count),
            tokens,
            format_cost(usage.cost) if usage and usage.cost is not None else "",
            ago(entry.updated_at),
            style="bold" if entry.id == current else None,
        )
    return table


def history_view(history: History) -> RenderableType:
    parts: list[RenderableType] = []
    for entry in history.messages:
        marker = f" [{entry.status}]" if entry.status else ""
        text = terminal_safe(entry.text)
        if entry.reasoning.strip():
            parts.append(thinking_view(entry.reasoning, hint=None))
        if entry.role == "user" and text:
            parts.append(Text(f"> {text}{marker}", style="bold"))
        elif text:
            parts.append(Markdown(text))
            if marker:
                parts.append(Text(marker.strip(), style="yellow"))
        for name, arguments in entry.tool_calls:
            parts.append(Text(terminal_safe(f"⚙ {name}: {command_of(name, arguments)}"), style="cyan"))
        for content, is_error in entry.tool_results:
            shown, hidden = fold(terminal_safe(content), 3)
            more = f"\n  │ … {hidden} more lines" if hidden else ""
            body = "\n".join(f"  │ {line}" for line in shown.splitlines())
            parts.append(Text(body + more, style="red" if is_error else "dim"))
    if not parts:
        parts.append(Text("(no messages yet)", style="dim"))
    return Group(*parts)


def help_view() -> RenderableType:
    commands = Table(box=None, show_header=False, pad_edge=False)
    commands.add_column(style="bold cyan")
    commands.add_column()
    for name, text in COMMANDS:
        commands.add_row(name, text)
    keys = Table(box=None, show_header=False, pad_edge=False)
    keys.add_column(style="bold")
    keys.add_column()
    for name, text in KEYS:
        keys.add_row(name, text)
    return Group(
        Text("Commands", style="bold underline"), commands, Text(""), Text("Keys", style="bold underline"), keys
    )
