"""`t-koma chat`: the terminal chat. The terminal UI loads only when the command runs."""

from __future__ import annotations

import click


@click.command("chat")
@click.option("-m", "--model", metavar="ALIAS_OR_ID", help="Use this model; skips the menus.")
@click.option("-p", "--provider", metavar="NAME", help="anthropic, openrouter or openai_compatible; skips the menu.")
@click.option("-s", "--session", metavar="ID|last", help="Continue a stored session (ID, ID prefix, or `last`).")
@click.option("--no-autostart", is_flag=True, help="Do not start a gateway when none is running.")
def chat(model: str | None, provider: str | None, session: str | None, no_autostart: bool) -> None:
    """Interactive terminal chat through the gateway (started in the background when needed)."""
    from t_koma.client.launch import launch

    launch(model=model, provider=provider, session=session, autostart=not no_autostart)
