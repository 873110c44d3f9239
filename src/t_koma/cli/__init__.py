"""The `t-koma` command. Subcommands load lazily so that `t-koma --help` stays fast and commands that do not
need the gateway or the terminal UI never import them."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from t_koma import __version__
from t_koma.errors import TKomaError

# name -> (module, attribute, one-line help shown by `t-koma --help` without importing the module)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "chat": ("t_koma.cli.chat_cmd", "chat", "Interactive terminal chat through the gateway (the default)."),
    "ask": ("t_koma.cli.ask_cmd", "ask", "Run one turn and print the answer."),
    "models": ("t_koma.cli.models_cmd", "models", "List the models a provider offers."),
    "sessions": ("t_koma.cli.sessions_cmd", "sessions", "List stored sessions."),
    "history": ("t_koma.cli.sessions_cmd", "history", "Print one session's messages."),
    "gateway": ("t_koma.cli.gateway_cmd", "gateway", "Run the gateway (WebSocket, /v1 API, /health, /logs)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, _, help_text) in _COMMANDS.items()])


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="t-koma")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """t-koma: talk to any model — OpenRouter, Anthropic or an OpenAI-compatible server — with tools.

    With no command, starts the terminal chat."""
    if ctx.invoked_subcommand is None:
        chat_command = cli.get_command(ctx, "chat")
        assert chat_command is not None
        ctx.invoke(chat_command)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: user errors become one line on stderr and an exit code, never a traceback."""
    from t_koma.cli.process import protect_process

    protect_process()
    try:
        return cli.main(args=argv, prog_name="t-koma", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except TKomaError as exc:
        from t_koma.client.sanitize import terminal_safe  # messages can quote upstream text: keep it inert

        click.echo(f"t-koma: {terminal_safe(exc.message)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
