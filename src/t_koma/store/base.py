"""The store interface. SQLite backs it today (`store.sqlite`); a server database can back it later."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from t_koma.messages import ContentBlock, ProviderUsage, Role

TurnStatus: TypeAlias = Literal["running", "done", "interrupted", "cancelled", "failed"]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    title: str
    created_at: float
    updated_at: float
    """Unix seconds (float, sub-second)."""


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session: SessionInfo
    message_count: int
    input_tokens: int
    output_tokens: int
    cost: float | None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    session_id: str
    position: int
    """Order within the session, starting at 0, no ties."""
    role: Role
    content: tuple[ContentBlock, ...]
    model: str | None
    created_at: float
    turn_id: str | None = None
    status: str | None = None
    """None for a normal message; "interrupted" / "cancelled" / "partial" mark incomplete output."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    session_id: str | None
    message_id: str | None
    provider: str
    model: str
    usage: ProviderUsage
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Cooldown:
    model_key: str
    until: float
    reason: str


class Store(Protocol):
    """Every method commits before it returns, so a killed process loses at most the step in flight."""

    async def create_session(self, title: str | None = None) -> SessionInfo: ...

    async def get_session(self, session_id: str) -> SessionInfo | None: ...

    async def latest_session(self) -> SessionInfo | None: ...

    async def list_sessions(self) -> list[SessionSummary]: ...

    async def rename_session(self, session_id: str, title: str) -> SessionInfo:
        """Set a session's title (a blank title becomes the default); raises `SessionNotFoundError`."""
        ...

    async def delete_session(self, session_id: str) -> bool: ...

    async def append_message(
        self,
        session_id: str,
        role: Role,
        content: tuple[ContentBlock, ...],
        *,
        model: str | None = None,
        turn_id: str | None = None,
        status: str | None = None,
    ) -> StoredMessage: ...

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
        """An assistant message plus the usage row of the call that produced it (`message_id` filled in). With
        `finishes` (the turn's last step) the turn `turn_id` is also recorded as done with `stop_reason`, after the
        message (as `finish_turn` would)."""
        ...

    async def load_messages(self, session_id: str) -> list[StoredMessage]: ...

    async def load_recent_messages(self, session_id: str, limit: int) -> list[StoredMessage]:
        """The session's last `limit` messages, in order (what a turn needs of a long session)."""
        ...

    async def get_session_with_recent_messages(
        self, session_id: str, limit: int
    ) -> tuple[SessionInfo, list[StoredMessage]] | None:
        """`get_session` and `load_recent_messages` in one read; None for an unknown session."""
        ...

    async def begin_turn(self, session_id: str) -> str:
        """Record a turn as running and return its id."""
        ...

    async def begin_turn_with_message(
        self, session_id: str, content: tuple[ContentBlock, ...]
    ) -> tuple[str, StoredMessage]:
        """`begin_turn` and the turn's user message in one go; returns the turn id and the stored message."""
        ...

    async def finish_turn(self, turn_id: str, status: TurnStatus, stop_reason: str | None = None) -> None: ...

    async def save_partial(self, turn_id: str, session_id: str, text: str) -> None:
        """Keep the text a step has streamed so far (replacing what was kept before), so that a killed process
        loses at most what came since; recovery puts it in the interrupted note."""
        ...

    async def discard_partial(self, turn_id: str) -> None:
        """Forget the kept streamed text once its step is stored whole (or the turn ended otherwise)."""
        ...

    async def recover_interrupted_turns(self) -> int:
        """Mark turns still `running` from a dead process as `interrupted` (appending an assistant note to
        their session, after the text they had streamed); returns how many. Called once at start-up."""
        ...

    async def record_usage(self, record: UsageRecord) -> None: ...

    async def record_usage_many(self, records: Sequence[UsageRecord]) -> None:
        """Several usage rows in one transaction."""
        ...

    async def get_cooldown(self, model_key: str) -> Cooldown | None:
        """The active cooldown for a model, or None (expired ones count as none)."""
        ...

    async def set_cooldown(self, model_key: str, until: float, reason: str) -> None: ...

    async def clear_cooldown(self, model_key: str) -> None: ...

    async def close(self) -> None: ...
