"""Slash commands of the chat: `/provider`, `/model`, `/new`, `/sessions`, `/switch ID`, `/history`,
`/output [N]`, `/thinking`, `/reasoning [LEVEL]`, `/help`, `/quit`. Each one is a short exchange with the gateway
(or a setting of the chat) and a printed result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from t_koma.client.frames import GatewayError, SessionEntry, Usage
from t_koma.client.menus import QuitRequested
from t_koma.client.status import PROVIDER_LABELS, session_label, short_id
from t_koma.client.views import help_view, history_view, sessions_table
from t_koma.messages import parse_reasoning_level

if TYPE_CHECKING:
    from t_koma.client.app import ChatApp


def resolve_session(reference: str, sessions: Sequence[SessionEntry]) -> SessionEntry | str:
    """The session `reference` names: its number in the list, its ID, or a unique ID prefix; else an error."""
    reference = reference.strip()
    if reference.isdigit() and 1 <= int(reference) <= len(sessions):
        return sessions[int(reference) - 1]
    exact = [entry for entry in sessions if entry.id == reference]
    if exact:
        return exact[0]
    matches = [
        entry for entry in sessions if entry.id.startswith(reference) or short_id(entry.id).startswith(reference)
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        return f"'{reference}' matches {len(matches)} sessions; type more of the ID"
    return f"no session '{reference}' (see /sessions)"


def latest(sessions: Sequence[SessionEntry]) -> SessionEntry | None:
    dated = [entry for entry in sessions if entry.updated_at is not None]
    if dated:
        return max(dated, key=lambda entry: entry.updated_at or 0.0)
    return sessions[0] if sessions else None


class SlashCommands:
    """Parses a `/command args` line and runs it against the chat `app`."""

    def __init__(self, app: ChatApp) -> None:
        self.app = app
        self.listed: list[SessionEntry] = []
        self._handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "/provider": self.provider,
            "/model": self.model,
            "/new": self.new,
            "/sessions": self.sessions,
            "/switch": self.switch,
            "/history": self.history,
            "/output": self.output,
            "/thinking": self.thinking,
            "/reasoning": self.reasoning,
            "/help": self.help,
            "/quit": self.quit,
            "/exit": self.quit,
        }

    async def run(self, line: str) -> None:
        name, _, argument = line.strip().partition(" ")
        handler = self._handlers.get(name.lower())
        if handler is None:
            self.app.renderer.notice(f"✗ unknown command {name}; /help lists them", style="bold red")
            return
        await handler(argument.strip())

    async def provider(self, argument: str) -> None:
        if await self.app.selector.interactive(keep_label="keep the current model"):
            self.app.select_done()
            self._selected()

    async def model(self, argument: str) -> None:
        provider, _ = self.app.current_model()
        provider = provider or "openrouter"
        if await self.app.selector.pick_model(provider, PROVIDER_LABELS.get(provider, provider)):
            self.app.select_done()
            self._selected()

    def _selected(self) -> None:
        selection = self.app.connection.selection
        if selection is not None:
            label = PROVIDER_LABELS.get(selection[0], selection[0])
            self.app.renderer.notice(f"now using {label} · {selection[1]}", style="green")

    async def new(self, argument: str) -> None:
        created = await self.app.connection.create_session(argument or None)
        self.app.session_usage = Usage()
        self.app.turn_usage = None
        self.app.renderer.notice(f"{session_label(created.session_id)} started", style="green")

    async def sessions(self, argument: str) -> None:
        self.listed = list((await self.app.connection.list_sessions()).sessions)
        if not self.listed:
            self.app.renderer.notice("no sessions yet")
            return
        self.app.console.print(sessions_table(self.listed, self.app.connection.session_id))

    async def switch(self, argument: str) -> None:
        if not argument:
            self.app.renderer.notice("usage: /switch ID (or a number from /sessions)", style="yellow")
            return
        entry = await self._find(argument)
        if entry is None:
            return
        await self.join(entry)
        count = f", {entry.message_count} messages" if entry.message_count is not None else ""
        title = f" “{entry.title}”" if entry.title else ""
        self.app.renderer.notice(f"switched to {session_label(entry.id)}{title}{count} · /history shows them", "green")

    async def _find(self, reference: str) -> SessionEntry | None:
        # A number refers to the last /sessions table while it still has that row.
        listed = reference.isdigit() and 1 <= int(reference) <= len(self.listed)
        sessions = self.listed if listed else list((await self.app.connection.list_sessions()).sessions)
        found = resolve_session(reference, sessions)
        if isinstance(found, str):
            self.app.renderer.notice(f"✗ {found}", style="bold red")
            return None
        return found

    async def join(self, entry: SessionEntry) -> None:
        """Make `entry` the current session; the status bar takes its stored token and cost totals."""
        await self.app.connection.switch_session(entry.id)
        self.app.session_usage = entry.usage or Usage()
        self.app.turn_usage = None

    async def join_initial(self, reference: str | None) -> None:
        """`--session ID|last` at start-up; an unknown ID raises `GatewayError` (type `session_not_found`)."""
        if reference is None:
            return
        sessions = list((await self.app.connection.list_sessions()).sessions)
        if reference == "last":
            entry = latest(sessions)
            if entry is None:
                self.app.renderer.notice("no earlier session; starting a new one")
                return
        else:
            found = resolve_session(reference, sessions)
            if isinstance(found, str):
                raise GatewayError(found, remote_type="session_not_found")
            entry = found
        await self.join(entry)

    async def history(self, argument: str) -> None:
        session_id = self.app.connection.session_id
        if session_id is None:
            self.app.renderer.notice("no messages yet in this new session")
            return
        self.app.console.print(history_view(await self.app.connection.history(session_id)))

    async def output(self, argument: str) -> None:
        number = int(argument) if argument.isdigit() else None
        self.app.renderer.full_output(number)

    async def thinking(self, argument: str) -> None:
        self.app.renderer.full_thinking()

    async def reasoning(self, argument: str) -> None:
        """`/reasoning LEVEL` sets the level sent with every following message, `/reasoning default` clears it,
        `/reasoning` alone shows it."""
        level = argument.strip().lower()
        notice = self.app.renderer.notice
        if not level:
            current = self.app.reasoning_level
            if current is None:
                notice("reasoning: as configured for each model (/reasoning LEVEL changes it)")
            else:
                notice(f"reasoning: {current} for every message (/reasoning default goes back to the models' own)")
            return
        if level == "default":
            self.app.reasoning_level = None
            notice("reasoning: as configured for each model", style="green")
            return
        try:
            parse_reasoning_level(level)
        except ValueError as exc:
            notice(f"✗ {exc} (or default)", style="bold red")
            return
        self.app.reasoning_level = level
        notice(f"reasoning: {level} for the next messages", style="green")

    async def help(self, argument: str) -> None:
        self.app.console.print(help_view())

    async def quit(self, argument: str) -> None:
        raise QuitRequested()
