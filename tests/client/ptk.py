"""Run prompt_toolkit applications under prompt_toolkit's own test harness: keys through a pipe input, the
screen rendered to an in-memory VT100 output (or a DummyOutput)."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput, create_pipe_input

from t_koma.client.launch import ChatOutput

T = TypeVar("T")

ESC = "\x1b"
UP = "\x1b[A"
DOWN = "\x1b[B"
ENTER = "\r"
CTRL_C = "\x03"
BACKSPACE = "\x7f"


class Screen(io.StringIO):
    """What the application wrote: `getvalue()` with escape sequences, `text` without them."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return False

    @property
    def text(self) -> str:
        return _ESCAPES.sub("", self.getvalue())


_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@contextmanager
def terminal(columns: int = 100, rows: int = 40) -> Iterator[tuple[PipeInput, Screen]]:
    screen = Screen()
    output = ChatOutput(screen, lambda: Size(rows=rows, columns=columns), term="xterm", enable_cpr=False)
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=output):
        yield pipe, screen


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` (letting the event loop run) until it holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def run_app(coro: Awaitable[T], pipe: PipeInput, *keys: str) -> T:
    task = asyncio.ensure_future(coro)
    for key in keys:
        pipe.send_text(key)
    return await asyncio.wait_for(task, 10)
