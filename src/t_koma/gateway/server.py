"""Running the gateway: uvicorn, programmatically, with uvloop and httptools (the fastest pair measured here
for a pass-through proxy, docs/dependencies.md) and websockets-sansio (it enforces the frame size limit before
buffering a frame). Prints one start-up line; on SIGINT/SIGTERM it stops accepting, lets turns in flight finish
(bounded by `shutdown_grace_seconds`; a second signal cuts it short), then closes the engine and its store."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from t_koma import __version__
from t_koma.config.loader import is_loopback_host
from t_koma.config.model import Config
from t_koma.engine.engine import Engine
from t_koma.gateway.app import close_app, create_app, gateway_state
from t_koma.gateway.http_protocol import (
    DenialAwareWebSocketProtocol,
    GatewayUvicornConfig,
    HeadCoalescingHttpToolsProtocol,
)
from t_koma.gateway.logs import RotatingLogFile, fds_writing_to
from t_koma.gateway.state import GatewayState

log = logging.getLogger(__name__)

LOG_FILE_NAME = "gateway.log"
"""The log file in the data dir (an autostarted gateway's stdout and stderr)."""


is_loopback = is_loopback_host


def uvicorn_config(app: Any, config: Config, host: str, port: int) -> uvicorn.Config:
    settings = config.gateway
    return GatewayUvicornConfig(
        app,
        max_connections=settings.max_connections,
        host=host,
        port=port,
        http=HeadCoalescingHttpToolsProtocol,  # httptools, one write per response head + first body bytes
        ws=DenialAwareWebSocketProtocol,  # websockets-sansio
        ws_max_size=settings.max_frame_bytes,
        # Deltas are small: compressing them costs CPU per frame and zlib state per connection for little gain.
        ws_per_message_deflate=False,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds + 0.999)),
    )


class GatewayServer(uvicorn.Server):
    """uvicorn's server with the start-up line and a drain of turns in flight before connections close."""

    def __init__(self, config: uvicorn.Config, state: GatewayState, announce: Callable[[str], None]) -> None:
        super().__init__(config)
        self.state = state
        self.announce = announce
        self.url: str | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        self.announce(
            f"t-koma gateway {__version__} listening on {self.url} "
            f"(WebSocket {self.url.replace('http', 'ws', 1)}/ws, OpenAI API {self.url}/v1, "
            f"token in {self.state.config.token_path})"
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the signal after shutting down; a drained, clean stop exits 0 instead.
            self._captured_signals.clear()

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        """Replaced by the one start-up line of `startup`."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        drain = asyncio.ensure_future(self.state.drain())
        while not drain.done():
            await asyncio.wait({drain}, timeout=0.1)
            if self.force_exit:
                self.state.turns.cancel_all()
        await drain
        await super().shutdown(sockets)


def _announce(line: str) -> None:
    print(line, flush=True)


def _configure_logging(level: str, log_file: Path | None = None) -> None:
    """Log lines go to stderr; when stderr (or stdout) is `log_file` itself (an autostarted gateway: the client
    points both at `<data dir>/gateway.log`), the gateway writes and rotates that file itself."""
    follow = fds_writing_to(log_file) if log_file is not None else ()
    handler: logging.Handler
    if log_file is not None and follow:
        handler = RotatingLogFile(log_file, follow=follow)
    else:
        handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(
        level=level.upper(), handlers=[handler], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level != "debug":
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start/stop lines repeat ours


async def serve(
    config: Config, host: str | None = None, port: int | None = None, *, announce: Callable[[str], None] = _announce
) -> None:
    """Open the engine, serve until a signal, then drain and close everything."""
    host = host or config.gateway.host
    port = config.gateway.port if port is None else port
    if not is_loopback(host):
        print(
            f"warning: binding {host} exposes the gateway beyond this machine; anyone with the token in "
            f"{config.token_path} can run shell commands through it",
            file=sys.stderr,
            flush=True,
        )
    engine = await Engine.open(config)
    try:
        app = create_app(config, engine)
        server = GatewayServer(uvicorn_config(app, config, host, port), gateway_state(app), announce)
        for handler in logging.getLogger().handlers:
            handler.addFilter(gateway_state(app).logs.scrubber)
        try:
            await server.serve()
        finally:
            close_app(app)
    finally:
        await engine.close()
        log.info("gateway stopped")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # uvloop has no Windows build
        return None
    return uvloop.new_event_loop


# The provider clients are imported on first use elsewhere; a long-running gateway takes them at start-up.
_PROVIDER_MODULES = ("t_koma.providers.openrouter", "t_koma.providers.anthropic", "t_koma.providers.openai_compatible")
# The open-file limit asked for when the hard limit is unlimited (Linux refuses RLIM_INFINITY for it).
_FILE_LIMIT_CEILING = 1 << 20
# Young-generation GC threshold for the gateway process (CPython's default is 700).
_GC_GEN0_THRESHOLD = 7000
# How long a thread waiting for the GIL lets the running one go on before asking it to yield (CPython: 5 ms).
_SWITCH_INTERVAL_SECONDS = 0.001


def raise_file_limit() -> int | None:
    """Raise the soft open-file limit to the hard one (each connection costs a descriptor; the usual soft 1024
    ran out at ~1,000 idle connections). Returns the soft limit in force (None where there is no such limit)."""
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _FILE_LIMIT_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft
        return target
    return soft


def prepare_process() -> None:
    """Tune a process that will serve requests for a long time (measured with bench/gateway.py):
    - raise the soft open-file limit to the hard one (`raise_file_limit`);
    - import the provider clients now: aiohttp's import cost ~0.25 s, which the first request used to pay;
    - `gc.freeze()` what start-up made (~45k objects of modules and config): a full collection used to walk them
      all, every ~1,000 requests at 50 concurrent (tens of ms each, straight into p99);
    - collect the young generation after 7,000 net allocations instead of 700: a request's garbage is freed by
      reference counting, so the GC found little, but ran every ~10 requests and promoted in-flight requests'
      objects to older generations (GC time per request dropped by ~10x);
    - a 1 ms GIL switch interval instead of 5 ms: the store's database thread gives up the GIL inside every SQLite
      call and, while the event loop is busy, waited up to 5 ms each time to get it back. Under mixed load
      (bench.soak) that thread was saturated by those waits and WebSocket turns (a few store round trips each)
      queued behind it: 1 ms gave them ~60% more turns and a ~40% lower median. Nothing changes while no other
      thread wants the GIL (`/v1` alone)."""
    raise_file_limit()
    for module in _PROVIDER_MODULES:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_GEN0_THRESHOLD, older, oldest)
    sys.setswitchinterval(_SWITCH_INTERVAL_SECONDS)


def run(config: Config, host: str | None = None, port: int | None = None) -> None:
    _configure_logging(config.logging.level, config.data_dir / LOG_FILE_NAME)
    prepare_process()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(config, host, port))
