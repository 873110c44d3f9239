"""Helpers shared by the engine tests: a config file with test aliases, an engine on the test data dir, and an
event sink that records what the engine emitted."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from t_koma.config.loader import load_config
from t_koma.engine.engine import Engine
from t_koma.engine.events import EngineEvent, TextDeltaEvent

E = TypeVar("E")

MODELS = """
default_model = ["alpha", "beta"]

[models.alpha]
provider = "openrouter"
model = "test/alpha"

[models.beta]
provider = "openrouter"
model = "test/beta"

[models.claude]
provider = "anthropic"
model = "claude-sonnet-4-5"
"""


def write_config(approval: str = "auto", extra: str = "") -> Path:
    """config.toml in the test's config dir: aliases alpha, beta (OpenRouter) and claude (Anthropic)."""
    path = Path(os.environ["T_KOMA_CONFIG_DIR"]) / "config.toml"
    path.write_text(f'{MODELS}\n[tools.shell]\napproval = "{approval}"\n{extra}')
    return path


async def open_engine(approval: str = "auto", extra: str = "", **options: Any) -> Engine:
    write_config(approval, extra)
    return await Engine.open(load_config(), **options)


async def no_sleep(seconds: float) -> None:
    """Backoff without waiting (the delay is what the tests check, not the clock)."""


class Events:
    """An engine sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    @property
    def text(self) -> str:
        return "".join(event.text for event in self.of(TextDeltaEvent))


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def query(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the database file directly, as another process would."""
    with sqlite3.connect(database) as conn:
        return list(conn.execute(sql, params))
