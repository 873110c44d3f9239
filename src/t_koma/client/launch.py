"""Start-up of `t-koma chat`: read the config, find or start the gateway, connect, and run the chat."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prompt_toolkit.application import create_app_session
from prompt_toolkit.output import Output, create_output
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
    http_url, ws_url = client_urls(config.gateway)
    ensure_gateway(http_url, config.data_dir / "gateway.log", autostart=autostart, console=Console(stderr=True))
    options = ChatOptions(
        model=model,
        provider=provider,
        session=session,
        aliases={alias: entry.provider for alias, entry in config.models.items()},
        history_file=config.data_dir / "chat_history",
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


def terminal_output() -> Output:
    """stdout without cursor-position requests: a pty driven by a program (pexpect, tmux pipes) cannot answer
    them, and the prompt works without."""
    output = create_output()
    if hasattr(output, "enable_cpr"):
        output.enable_cpr = False
    return output


def local_error(exc: GatewayError) -> TKomaError:
    """A start-up refusal as the error class (and exit code) it would have had locally."""
    if exc.type == "invalid_model":
        return InvalidModelError(exc.message, suggestions=exc.suggestions)
    if exc.type == "session_not_found":
        return SessionNotFoundError(exc.message)
    return exc
