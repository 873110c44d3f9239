"""`t-koma models`: list the models a provider offers (configured ones first, then tool-capable catalog
models in catalog order), as a table or as JSON for scripts."""

from __future__ import annotations

import asyncio

import click
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from t_koma.cli.output import fail_json, print_json
from t_koma.client.sanitize import terminal_safe
from t_koma.config.loader import load_config
from t_koma.config.model import Config
from t_koma.errors import TKomaError
from t_koma.messages import ModelInfo
from t_koma.providers.catalog import top_models
from t_koma.providers.factory import ModelResolver

_MIN_NAME_WIDTH = 12


@click.command("models")
@click.option(
    "--provider",
    "provider_name",
    metavar="NAME",
    help="openrouter, anthropic or openai_compatible (or the alias of an openai_compatible model). "
    "Default: DEFAULT_PROVIDER, else the provider of the default model.",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many models to show.")
@click.option("--refresh", is_flag=True, help="Fetch the catalog again instead of using the cached copy.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print a JSON list of {"id","name","description","context_length"}.'
)
def models(provider_name: str | None, limit: int, refresh: bool, as_json: bool) -> None:
    """List the models a provider offers: configured models first, then catalog models that support tools."""
    try:
        listed = asyncio.run(_list_models(provider_name, limit, refresh))
    except TKomaError as exc:
        if as_json:
            fail_json(exc)
        raise
    if as_json:
        print_json([model.to_dict() for model in listed])
    else:
        _print_table(listed)


async def _list_models(provider_name: str | None, limit: int, refresh: bool) -> list[ModelInfo]:
    config = load_config()
    name = provider_name.strip() if provider_name else _default_provider_name(config)
    resolver = ModelResolver(config)
    try:
        catalog = resolver.catalog(name)
        kind = catalog.provider.spec.kind
        configured = [model.model for model in config.models.values() if model.provider == kind]
        return top_models(await catalog.models(refresh=refresh), configured, limit)
    finally:
        await resolver.aclose()


def _default_provider_name(config: Config) -> str:
    """DEFAULT_PROVIDER, else the first default model's provider (its alias, for an openai_compatible server)."""
    if config.default_provider is not None:
        return config.default_provider
    first = config.models[config.default_chain[0]]
    return first.alias if first.provider == "openai_compatible" else first.provider


def _print_table(listed: list[ModelInfo]) -> None:
    """IDs and numbers are never cut (IDs get copied into `-m`); only names are shortened to fit the terminal."""
    rows = [
        (
            terminal_safe(model.id),  # both come from the upstream catalog
            terminal_safe(model.name),
            f"{model.context_length:,}" if model.context_length else "-",
            _price(model.prompt_price),
            _price(model.completion_price),
        )
        for model in listed
    ]
    headers = ("ID", "Name", "Context", "$/M in", "$/M out")
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    console = Console()
    fixed = sum(widths) - widths[1] + 2 * (len(headers) - 1)
    name_width = min(widths[1], max(_MIN_NAME_WIDTH, console.width - fixed))
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for index, header in enumerate(headers):
        width = name_width if index == 1 else widths[index]
        justify: JustifyMethod = "left" if index < 2 else "right"
        table.add_column(header, no_wrap=True, overflow="ellipsis", width=width, justify=justify)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # names are shown as written, never as markup
    Console(width=max(console.width, fixed + name_width)).print(table)


def _price(per_token: float | None) -> str:
    """USD per million tokens; OpenRouter marks variable prices (routers) with a negative number."""
    if per_token is None:
        return "-"
    if per_token < 0:
        return "varies"
    return f"{per_token * 1_000_000:.4f}".rstrip("0").rstrip(".")
