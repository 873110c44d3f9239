"""What the gateway's routes share: config, engine, the access checks, the log hub and the registry of turns
in flight (one per session, across all connections; the shutdown drain waits on it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from t_koma.config.model import Config
from t_koma.engine.engine import Engine
from t_koma.gateway.auth import OriginPolicy, TokenAuth
from t_koma.gateway.frames import ProviderStatus, provider_statuses
from t_koma.gateway.logs import LogHub
from t_koma.providers.factory import ModelResolver

if TYPE_CHECKING:
    from t_koma.gateway.turns import RunningTurn

log = logging.getLogger(__name__)


class TurnRegistry:
    """Running WebSocket turns by session ID."""

    def __init__(self) -> None:
        self._turns: dict[str, RunningTurn] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._turns)

    def get(self, session_id: str) -> RunningTurn | None:
        return self._turns.get(session_id)

    def busy(self, session_id: str) -> bool:
        return session_id in self._turns

    def add(self, turn: RunningTurn) -> None:
        self._turns[turn.session_id] = turn
        self._idle.clear()

    def remove(self, turn: RunningTurn) -> None:
        if self._turns.get(turn.session_id) is turn:
            del self._turns[turn.session_id]
        if not self._turns:
            self._idle.set()

    def cancel_all(self) -> None:
        for turn in list(self._turns.values()):
            turn.cancel()

    async def drain(self, grace_seconds: float) -> int:
        """Let running turns finish for up to `grace_seconds`, then cancel the rest; returns how many were cancelled."""
        if self._turns:
            log.info("waiting up to %.0f s for %d turn(s) in flight", grace_seconds, len(self._turns))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_seconds)
        left = list(self._turns.values())
        self.cancel_all()
        for turn in left:
            await turn.wait()
        if left:
            log.warning("cancelled %d turn(s) still running after %.0f s", len(left), grace_seconds)
        return len(left)


@dataclass(eq=False)
class GatewayState:
    config: Config
    engine: Engine
    auth: TokenAuth
    origins: OriginPolicy
    logs: LogHub
    turns: TurnRegistry = field(default_factory=TurnRegistry)
    draining: bool = False
    v1_streams: int = 0
    """`/v1` streams in flight."""
    providers: tuple[ProviderStatus, ...] = ()
    resolver: ModelResolver = field(init=False)

    def __post_init__(self) -> None:
        self.providers = provider_statuses(self.config)
        resolver = self.engine.resolver
        # Catalogs and model validation need the full resolver; an engine built on another source gets one here.
        self.resolver = resolver if isinstance(resolver, ModelResolver) else ModelResolver(self.config)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (*self.config.secrets.all_values(), self.auth.secret)

    async def drain(self) -> None:
        """Refuse new turns, let those in flight finish (bounded by `shutdown_grace_seconds`)."""
        self.draining = True
        await self.turns.drain(self.config.gateway.shutdown_grace_seconds)
