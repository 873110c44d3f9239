"""`t-koma gateway`: run the gateway (WebSocket `/ws`, `/logs`, the OpenAI-compatible `/v1` API, `/health`)."""

from __future__ import annotations

import click

from t_koma.config.loader import load_config


@click.command("gateway")
@click.option("--host", default=None, help="Address to bind (default: [gateway] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: [gateway] port, 3000).")
def gateway(host: str | None, port: int | None) -> None:
    """Run the gateway until Ctrl-C or SIGTERM; turns in flight are let finish."""
    from t_koma.gateway.instance import data_dir_lock
    from t_koma.gateway.server import run

    config = load_config()
    with data_dir_lock(config.data_dir, config.gateway.port if port is None else port):
        run(config, host, port)
