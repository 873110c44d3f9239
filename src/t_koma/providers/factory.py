"""Model references → provider specs → provider clients and catalogs.

`ModelResolver` is the one place that turns what a user typed (`-m`, a chain entry, a WebSocket
`select_provider`, a `/v1` `model`) into a `ProviderSpec` (docs/CONTRACTS.md, "Model references"), and that
builds, caches and closes the provider clients and model catalogs made from those specs.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from t_koma.config.model import DEFAULT_KEY_ENV, Config, ModelConfig
from t_koma.errors import ConfigError, InvalidModelError, MissingKeyError
from t_koma.providers.base import Provider, ProviderKind, ProviderSpec

if TYPE_CHECKING:
    from t_koma.providers.catalog import ModelCatalog

_PROVIDER_NAMES: Mapping[str, ProviderKind] = {
    "openrouter": "openrouter",
    "open_router": "openrouter",
    "open-router": "openrouter",
    "anthropic": "anthropic",
    "openai_compatible": "openai_compatible",
    "openai-compatible": "openai_compatible",
    "openaicompatible": "openai_compatible",
    "open_ai_compatible": "openai_compatible",
}
_PROVIDER_CLASSES: Mapping[ProviderKind, tuple[str, str]] = {
    "openrouter": ("t_koma.providers.openrouter", "OpenRouterProvider"),
    "anthropic": ("t_koma.providers.anthropic", "AnthropicProvider"),
    "openai_compatible": ("t_koma.providers.openai_compatible", "OpenAICompatibleProvider"),
}
_DISPLAY = {"openrouter": "OpenRouter", "anthropic": "Anthropic", "openai_compatible": "OpenAI-compatible"}
_MAX_MODEL_ID_LENGTH = 256
_BAD_MODEL_ID_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def normalize_provider_name(name: str) -> ProviderKind:
    """`OpenRouter`, `open_router`, `openai-compatible`, … → the canonical provider kind."""
    kind = _PROVIDER_NAMES.get(name.strip().lower())
    if kind is None:
        raise ConfigError(f"unknown provider {name!r}: use openrouter, anthropic or openai_compatible")
    return kind


class ModelResolver:
    """Resolves model references for one `Config`, and owns the provider clients and catalogs it builds."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._providers: dict[ProviderSpec, Provider] = {}
        self._catalogs: dict[str, ModelCatalog] = {}

    def default_chain(self) -> tuple[str, ...]:
        return self.config.default_chain

    def resolve(self, ref: str, provider: str | None = None) -> ProviderSpec:
        """The spec for an alias or model ID (optionally of a given provider). Raises `ConfigError` for an
        unknown reference, `MissingKeyError` when the key variable is unset, `InvalidModelError` for a
        malformed ID."""
        model, alias = self._lookup(ref, provider)
        try:
            _check_model_id(model.provider, model.model)
        except InvalidModelError as exc:
            if alias is None:
                raise
            raise InvalidModelError(f"model alias '{alias}' in config.toml: {exc.message}") from None
        needed_by = f"model alias '{alias}'" if alias else f"{_DISPLAY[model.provider]} model '{model.model}'"
        return self._spec(model, alias, needed_by)

    def provider(self, ref: str, provider: str | None = None) -> Provider:
        """A client for the reference; one per distinct spec, reused until `aclose`."""
        return self.provider_for(self.resolve(ref, provider))

    def provider_for(self, spec: ProviderSpec) -> Provider:
        """A client for a spec built by `resolve` (cached per spec)."""
        cached = self._providers.get(spec)
        if cached is None:
            module_name, class_name = _PROVIDER_CLASSES[spec.kind]
            cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
            cached = self._providers[spec] = cls(spec)
        return cached

    def catalog(self, kind: str) -> ModelCatalog:
        """The model catalog of a provider (`kind` may also be the alias of an openai_compatible model, to
        pick which server). Cached on disk in `<data dir>/cache/` for `catalog_ttl_seconds`."""
        from t_koma.providers.catalog import ModelCatalog

        spec, cache_name = self._catalog_spec(kind)
        catalog = self._catalogs.get(cache_name)
        if catalog is None:
            cache_file = self.config.data_dir / "cache" / cache_name
            catalog = ModelCatalog(self.provider_for(spec), cache_file, self.config.openrouter.catalog_ttl_seconds)
            self._catalogs[cache_name] = catalog
        return catalog

    async def validate(self, ref: str, provider: str | None = None) -> ProviderSpec:
        """`resolve`, then for OpenRouter check the ID against the live (cached) catalog."""
        spec = self.resolve(ref, provider)
        if spec.kind == "openrouter":
            await self.catalog("openrouter").validate(spec.model)
        return spec

    async def aclose(self) -> None:
        providers = list(self._providers.values())
        self._providers.clear()
        self._catalogs.clear()
        for client in providers:
            await client.aclose()

    # --- lookup ------------------------------------------------------------------------------------------

    def _lookup(self, ref: str, provider: str | None) -> tuple[ModelConfig, str | None]:
        ref = ref.strip()
        if not ref:
            raise ConfigError(
                "empty model reference: use an alias from config.toml or an OpenRouter ID like author/slug"
            )
        configured = self.config.models.get(ref)
        if provider is None:
            if configured is not None:
                return configured, ref
            return self._by_id(ref), None
        kind, server = self._provider_kind(provider)
        if configured is not None and configured.provider == kind and server is None:
            return configured, ref
        if kind == "openrouter":
            parts = ref.split("/")
            model_id = "/".join(parts[1:]) if parts[0] == "openrouter" and len(parts) >= 3 else ref
            return _direct("openrouter", model_id), None
        if kind == "anthropic":
            return _direct("anthropic", ref.removeprefix("anthropic/")), None
        server = server or self._first_openai_compatible()
        return ModelConfig(
            alias=server.alias,
            provider="openai_compatible",
            model=ref,
            base_url=server.base_url,
            api_key_env=server.api_key_env,
        ), None

    def _by_id(self, ref: str) -> ModelConfig:
        parts = ref.split("/")
        if parts[0] == "openrouter" and len(parts) >= 3:
            return _direct("openrouter", "/".join(parts[1:]))
        if parts[0] == "anthropic" and len(parts) == 2 and parts[1]:
            return _direct("anthropic", parts[1])
        if len(parts) >= 2:
            return _direct("openrouter", ref)
        raise ConfigError(
            f"unknown model alias '{ref}' (known: {', '.join(self.config.models)}); "
            "use an alias from config.toml or an OpenRouter ID like author/slug"
        )

    def _provider_kind(self, provider: str) -> tuple[ProviderKind, ModelConfig | None]:
        """A provider name, or the alias of an openai_compatible model whose server (base_url, key) to use."""
        try:
            return normalize_provider_name(provider), None
        except ConfigError:
            server = self.config.models.get(provider.strip())
            if server is not None and server.provider == "openai_compatible":
                return "openai_compatible", server
            raise ConfigError(
                f"unknown provider {provider!r}: use openrouter, anthropic, openai_compatible "
                "or the alias of a configured openai_compatible model"
            ) from None

    def _first_openai_compatible(self) -> ModelConfig:
        for model in self.config.models.values():
            if model.provider == "openai_compatible":
                return model
        raise ConfigError(
            "no openai_compatible server is configured: add a [models.<alias>] table with "
            'provider = "openai_compatible" and base_url to config.toml'
        )

    # --- specs -------------------------------------------------------------------------------------------

    def _spec(self, model: ModelConfig, alias: str | None, needed_by: str) -> ProviderSpec:
        config = self.config
        key = config.secrets.get(model.key_env)
        if key is None and model.key_required:
            raise MissingKeyError(
                f"{model.key_env} is not set: export it or add it to .env (needed by {needed_by})",
                variable=model.key_env,
            )
        if model.provider == "openrouter":
            return ProviderSpec(
                kind="openrouter",
                model=model.model,
                base_url=model.base_url or config.openrouter.base_url,
                alias=alias,
                api_key=key,
                api_key_env=model.key_env,
                routing=tuple(slug.strip() for slug in model.routing if slug.strip()),
                allow_fallbacks=model.allow_fallbacks,
                max_tokens=model.max_tokens,
                context_window=model.context_window,
                reasoning=model.reasoning,
                http_referer=config.openrouter.http_referer,
                app_name=config.openrouter.app_name,
            )
        base_url = model.base_url or (config.anthropic.base_url if model.provider == "anthropic" else None)
        if base_url is None:
            raise ConfigError(
                f"model alias '{model.alias}' has no base_url: add one to its [models.{model.alias}] table"
            )
        return ProviderSpec(
            kind=model.provider,
            model=model.model,
            base_url=base_url,
            alias=alias,
            api_key=key,
            api_key_env=model.key_env,
            max_tokens=model.max_tokens,
            context_window=model.context_window,
            reasoning=model.reasoning,
        )

    def _catalog_spec(self, name: str) -> tuple[ProviderSpec, str]:
        kind, server = self._provider_kind(name)
        if kind == "openai_compatible":
            server = server or self._first_openai_compatible()
            spec = self._spec(server, server.alias, f"model alias '{server.alias}'")
            return spec, f"models-openai_compatible-{_UNSAFE_FILE_CHARS.sub('_', server.alias)}.json"
        model_id = next((m.model for m in self.config.models.values() if m.provider == kind), "")
        if kind == "anthropic":
            return self._spec(_direct(kind, model_id), None, "listing Anthropic models"), "models-anthropic.json"
        settings = self.config.openrouter
        # The OpenRouter catalog is public: it can be listed without a key.
        spec = ProviderSpec(
            kind="openrouter",
            model=model_id,
            base_url=settings.base_url,
            api_key=self.config.secrets.get(DEFAULT_KEY_ENV["openrouter"]),
            api_key_env=DEFAULT_KEY_ENV["openrouter"],
            http_referer=settings.http_referer,
            app_name=settings.app_name,
        )
        return spec, "models-openrouter.json"


def _direct(kind: ProviderKind, model_id: str) -> ModelConfig:
    """A model named by its ID rather than by an alias."""
    return ModelConfig(alias="", provider=kind, model=model_id)


def _check_model_id(kind: ProviderKind, model_id: str) -> None:
    if kind == "openrouter":
        from t_koma.providers.catalog import check_model_id_syntax

        check_model_id_syntax(model_id)
        return
    if not model_id or len(model_id) > _MAX_MODEL_ID_LENGTH or _BAD_MODEL_ID_CHARS.search(model_id):
        raise InvalidModelError(
            f"invalid {_DISPLAY[kind]} model ID {model_id!r}: it must be 1-{_MAX_MODEL_ID_LENGTH} characters "
            "without spaces or control characters"
        )
