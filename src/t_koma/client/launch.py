"""Start-up of `t-koma chat`: read the config, find or start the gateway, connect, and run the chat."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from prompt_toolkit.application import create_app_session
from prompt_toolkit.output import Output, create_output
from prompt_toolkit.output.vt100 import Vt100_Output
from rich.console import Console

from t_koma.client.app import ChatApp, ChatOptions
from t_koma.client.autostart import ensure_gateway, read_token
from t_koma.client.connection import GatewayConnection
from t_koma.client.frames import GatewayError
from t_koma.config.loader import load_config
from t_koma.config.model import GatewaySettings
from t_koma.errors import InvalidModelError, SessionNotFoundError, TKomaError

_ANY_ADDRESS = ("0.0.0.0", "::", "")


def client_urls(gateway: GatewaySettings) -> tuple[str, str]:
    """(http URL, WebSocket URL) to reach the gateway; a wildcard bind address is reached on loopback."""
    host = "127.0.0.1" if gateway.host in _ANY_ADDRESS else gateway.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{gateway.port}", f"ws://{host}:{gateway.port}/ws"


def launch(*, model: str | None, provider: str | None, session: str | None, autostart: bool) -> None:
    config = load_config()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    history_file = config.data_dir / "chat_history"
    history_file.touch(mode=0o600, exist_ok=True)  # what you type stays yours
    http_url, ws_url = client_urls(config.gateway)
    ensure_gateway(
        http_url, config.data_dir / "gateway.log", config.token_path, autostart=autostart, console=Console(stderr=True)
    )
    options = ChatOptions(
        model=model,
        provider=provider,
        session=session,
        aliases={alias: entry.provider for alias, entry in config.models.items()},
        history_file=history_file,
        http_url=http_url,
    )
    asyncio.run(chat(ws_url, config.token_path, Console(), options))


async def chat(ws_url: str, token_path: Path, console: Console, options: ChatOptions) -> None:
    """Connect and run the chat until the user quits; errors at start-up become the matching t-koma error."""
    connection = GatewayConnection(ws_url, lambda: read_token(token_path))
    await connection.connect()
    try:
        with create_app_session(output=terminal_output()):
            await ChatApp(connection, console, options, token=read_token(token_path)).run()
    except GatewayError as exc:
        error = local_error(exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        await connection.close()


class ChatOutput(Vt100_Output):
    """A VT100 output that never asks the terminal where the cursor is (CPR).

    A pty driven by a program (pexpect, a CI log) cannot answer that query, and prompt_toolkit would wait and
    then print a warning. Without the answer prompt_toolkit does not know the rows below the cursor and would
    hide the bottom toolbar; claiming one row lets it draw the prompt and the status bar in exactly the rows
    they need, right below the transcript.
    """

    def get_rows_below_cursor_position(self) -> int:
        return 1


def terminal_output() -> Output:
    if sys.platform == "win32" or not sys.stdout.isatty():
        return create_output()
    output = ChatOutput.from_pty(sys.stdout, term=os.environ.get("TERM"))
    output.enable_cpr = False
    return output


def local_error(exc: GatewayError) -> TKomaError:
    """A start-up refusal as the error class (and exit code) it would have had locally."""
    if exc.type == "invalid_model":
        return InvalidModelError(exc.message, suggestions=exc.suggestions)
    if exc.type == "session_not_found":
        return SessionNotFoundError(exc.message)
    return exc
