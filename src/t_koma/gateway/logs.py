"""Live gateway logs: a `logging.Handler` that turns records into scrubbed JSON lines, keeps the last few and
fans them out to `/logs` WebSocket subscribers through bounded queues (a slow reader loses lines, nobody
waits for it)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import logging.handlers
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from t_koma.errors import scrub
from t_koma.files import ensure_private_file
from t_koma.providers.http import redact_userinfo

LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
"""Size at which gateway.log is rotated."""
LOG_FILE_BACKUPS = 3
"""How many rotated files are kept (gateway.log.1 … .3)."""

MAX_LINE_CHARS = 16 * 1024
"""Longest message a `/logs` line carries (the rest is cut, with a note), so that the backlog and each
subscriber's queue stay bounded in bytes as well as in lines (`log_bodies` can log whole request bodies)."""

LOGGERS = ("t_koma", "uvicorn.error")
REFUSAL_LOGGERS = ("t_koma.gateway.access", "t_koma.gateway.http_protocol", "uvicorn.error")
"""Loggers whose lines a stranger can cause at will (refused WebSocket attempts and connections, uvicorn's
"Invalid HTTP request received."): rate-limited."""


def scrub_line(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret and every URL's `user:password@` masked."""
    return redact_userinfo(scrub(text, secrets))


class ScrubFilter(logging.Filter):
    """Rewrites a record's message with every secret and URL credential masked, for every handler that sees it
    (uvicorn logs request paths, and a browser's `?token=` is part of the path)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub_line(message, self._secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_line(logging.Formatter().formatException(record.exc_info), self._secrets)
        return True


class RateLimitFilter(logging.Filter):
    """Lets through the first `burst` records per logger in each `window` seconds and drops the rest; the first
    record of the next window says how many were dropped. A web page retrying a refused WebSocket cannot fill
    the log."""

    def __init__(self, *, burst: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._burst = burst
        self._window = window
        self._clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # logger -> (window start, passed, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        start, passed, dropped = self._windows.get(record.name, (now, 0, 0))
        if now - start >= self._window:
            if dropped:
                record.msg, record.args = (
                    f"{record.getMessage()} ({dropped} similar lines dropped in the previous {self._window:.0f} s)",
                    None,
                )
            start, passed, dropped = now, 0, 0
        if passed >= self._burst:
            self._windows[record.name] = (start, passed, dropped + 1)
            return False
        self._windows[record.name] = (start, passed + 1, dropped)
        return True


class RotatingLogFile(logging.handlers.RotatingFileHandler):
    """A private log file rotated by size into `<name>.1` … `<name>.N`. The file descriptors in `follow` (the
    stdout and stderr an autostarted gateway inherits, opened on the same file) are moved to the new file at each
    rotation, so that stray output and tracebacks follow it instead of growing a rotated file."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int | None = None,
        backups: int | None = None,
        follow: Iterable[int] = (),
    ) -> None:
        self._follow = tuple(follow)
        super().__init__(
            path,
            maxBytes=LOG_FILE_MAX_BYTES if max_bytes is None else max_bytes,
            backupCount=LOG_FILE_BACKUPS if backups is None else backups,
            encoding="utf-8",
        )

    def _open(self) -> io.TextIOWrapper:
        ensure_private_file(Path(self.baseFilename))  # created 0600, never open to others in between
        return super()._open()

    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is not None:
            for fd in self._follow:
                os.dup2(self.stream.fileno(), fd)


def fds_writing_to(path: Path, fds: Iterable[int] = (1, 2)) -> tuple[int, ...]:
    """Those of `fds` that are open on the file at `path` itself."""
    try:
        target = path.stat()
    except OSError:
        return ()
    found = []
    for fd in fds:
        try:
            info = os.fstat(fd)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
            found.append(fd)
    return tuple(found)


class Subscriber:
    """One `/logs` client: a bounded queue of lines and how many were dropped since it last caught up."""

    __slots__ = ("dropped", "loop", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, line: str) -> None:
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1


class LogHub(logging.Handler):
    """Formats every record once (secrets scrubbed) and hands it to the backlog and each subscriber."""

    def __init__(self, secrets: Iterable[str], *, backlog: int = 200, queue_size: int = 1000) -> None:
        super().__init__(logging.DEBUG)
        self._secrets = tuple(secrets)
        self._backlog: deque[str] = deque(maxlen=backlog)
        self._subscribers: set[Subscriber] = set()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._attached: list[logging.Logger] = []
        self.scrubber = ScrubFilter(self._secrets)
        self.rate_limit = RateLimitFilter()

    def attach(self, names: Iterable[str] = LOGGERS) -> None:
        """Handle records of `names`; records logged on those loggers themselves are also scrubbed in place,
        and those of `REFUSAL_LOGGERS` rate-limited."""
        for name in names:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            logger.addFilter(self.scrubber)
            self._attached.append(logger)
        for name in REFUSAL_LOGGERS:
            logging.getLogger(name).addFilter(self.rate_limit)

    def detach(self) -> None:
        for logger in self._attached:
            logger.removeHandler(self)
            logger.removeFilter(self.scrubber)
        self._attached.clear()
        for name in REFUSAL_LOGGERS:
            logging.getLogger(name).removeFilter(self.rate_limit)

    def format_line(self, record: logging.LogRecord) -> str:
        entry = {
            "type": "log",
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": _cut(scrub_line(record.getMessage(), self._secrets)),
        }
        if record.exc_info:
            entry["exception"] = scrub_line(logging.Formatter().formatException(record.exc_info), self._secrets)
        return orjson.dumps(entry).decode()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format_line(record)
        except Exception:
            self.handleError(record)
            return
        with self._lock:
            self._backlog.append(line)
            subscribers = tuple(self._subscribers)
        for subscriber in subscribers:
            if _in_loop_thread(subscriber.loop):
                subscriber.offer(line)
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    subscriber.loop.call_soon_threadsafe(subscriber.offer, line)

    def subscribe(self) -> tuple[Subscriber, list[str]]:
        """A new subscriber and the backlog to send it first."""
        subscriber = Subscriber(asyncio.get_running_loop(), self._queue_size)
        with self._lock:
            self._subscribers.add(subscriber)
            backlog = list(self._backlog)
        return subscriber, backlog

    def backlog(self) -> list[str]:
        with self._lock:
            return list(self._backlog)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)


def _cut(message: str) -> str:
    if len(message) <= MAX_LINE_CHARS:
        return message
    return f"{message[:MAX_LINE_CHARS]}… ({len(message) - MAX_LINE_CHARS} more characters cut)"


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def stream_logs(websocket: WebSocket, hub: LogHub) -> None:
    """Send the backlog, then new lines, until the client goes away."""
    subscriber, backlog = hub.subscribe()
    reader = asyncio.create_task(_wait_for_disconnect(websocket))
    try:
        for line in backlog:
            await websocket.send_text(line)
        while not reader.done():
            getter = asyncio.ensure_future(subscriber.queue.get())
            await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            if subscriber.dropped:
                await websocket.send_text(orjson.dumps({"type": "dropped", "count": subscriber.dropped}).decode())
                subscriber.dropped = 0
            await websocket.send_text(getter.result())
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        hub.unsubscribe(subscriber)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await reader


async def _wait_for_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
