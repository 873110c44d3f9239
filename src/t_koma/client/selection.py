"""Choosing the model: `--model`/`--provider` from the command line, or the provider menu and the model picker.

Whatever is chosen is sent to the gateway as `select_provider`; the gateway validates it (provider, key,
model ID) and a refusal is shown, never silently replaced by another model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from t_koma.client.catalog import merge
from t_koma.client.connection import GatewayConnection
from t_koma.client.frames import GatewayError, ModelEntry, ProviderStatus
from t_koma.client.menus import choose_provider, menu_options
from t_koma.client.picker import ModelPicker
from t_koma.client.render import Renderer

CatalogFetcher = Callable[[str], Awaitable[Sequence[ModelEntry]]]
"""provider name → its whole catalog (used only when `list_available_models` gives no more than the top)."""


def infer_selection(model: str, provider: str | None, aliases: Mapping[str, str]) -> tuple[str, str]:
    """(provider, model) for `select_provider` from `--model` and an optional `--provider`.

    Without a provider, the reference rules of the resolver apply: a configured alias uses its own provider,
    `openrouter/<id>` and `anthropic/<model>` name theirs, and any other `author/slug` is an OpenRouter ID.
    """
    if provider:
        return provider, model
    if model in aliases:
        return aliases[model], model
    head, _, rest = model.partition("/")
    if head.lower() in ("openrouter", "open_router") and "/" in rest:
        return "openrouter", rest
    if head.lower() == "anthropic" and rest and "/" not in rest:
        return "anthropic", rest
    return "openrouter", model


def describe(error: GatewayError) -> str:
    """An error for inline display, with the gateway's suggestions when it has any."""
    if error.suggestions:
        return f"{error.message} — did you mean {', '.join(error.suggestions[:3])}?"
    return error.message


@dataclass(slots=True)
class Selector:
    """Runs the menus against the gateway and records the outcome on the connection (`connection.selection`)."""

    connection: GatewayConnection
    renderer: Renderer
    fetch_catalog: CatalogFetcher | None = None

    def default_label(self) -> str:
        hello = self.connection.hello
        if hello is not None and hello.model:
            return f"default model ({hello.model})"
        return "default model"

    async def providers(self) -> Sequence[ProviderStatus]:
        hello = self.connection.hello
        if hello is not None and hello.providers:
            return hello.providers
        return (await self.connection.list_providers()).providers

    async def fixed(self, model: str, provider: str | None, aliases: Mapping[str, str]) -> None:
        """`--model` (and `--provider`): select it without menus; a refusal raises `GatewayError`."""
        chosen_provider, chosen_model = infer_selection(model, provider, aliases)
        await self.connection.select_provider(chosen_provider, chosen_model)

    async def interactive(self, *, keep_label: str | None = None) -> bool:
        """Provider menu, then the model picker. False when the user kept the default (or current) model."""
        options = menu_options(await self.providers())
        option = await choose_provider(options, keep_label or self.default_label())
        if option is None:
            return False
        return await self.pick_model(option.name, option.label)

    async def pick_model(self, provider: str, label: str) -> bool:
        """The picker for `provider`; True once the gateway accepted a model."""
        try:
            top = (await self.connection.list_models(provider)).models
        except GatewayError as exc:
            self.renderer.notice(f"✗ cannot list {label} models: {exc.message}", style="bold red")
            top = ()

        async def validate(model_id: str) -> str | None:
            try:
                await self.connection.select_provider(provider, model_id)
            except GatewayError as exc:
                return describe(exc)
            return None

        async def load_catalog() -> Sequence[ModelEntry]:
            return await self.catalog(provider, top)

        chosen = await ModelPicker(label, top, validate, load_catalog).run()
        return chosen is not None

    async def catalog(self, provider: str, top: Sequence[ModelEntry]) -> Sequence[ModelEntry]:
        try:
            models = list((await self.connection.list_models(provider, everything=True)).models)
        except GatewayError:
            models = []
        if len(models) <= len(top) and self.fetch_catalog is not None:
            models = list(await self.fetch_catalog(provider))
        return merge(top, models)
