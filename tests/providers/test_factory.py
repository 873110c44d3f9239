"""`ModelResolver`: how model references resolve (docs/CONTRACTS.md "Model references"), the specs it builds,
missing-key reporting, and the provider clients and catalogs it caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from t_koma.config.loader import load_config
from t_koma.config.model import Config
from t_koma.errors import ConfigError, InvalidModelError, MissingKeyError
from t_koma.providers.anthropic import AnthropicProvider
from t_koma.providers.factory import ModelResolver, normalize_provider_name

OPENROUTER_SECRET = "sk-or-v1-SECRET-factory-1111"
ANTHROPIC_SECRET = "sk-ant-SECRET-factory-2222"
LOCAL_SECRET = "local-SECRET-factory-3333"

CONFIG = """
default_model = ["kimi", "claude"]

[models.kimi]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"
routing = ["moonshotai", "groq"]
allow_fallbacks = false
max_tokens = 4000
context_window = 262144

[models.claude]
provider = "anthropic"
model = "claude-opus-4-1"

[models.local]
provider = "openai_compatible"
model = "qwen3:8b"
base_url = "http://127.0.0.1:8080/v1"

[models.secured]
provider = "openai_compatible"
model = "llama-3.3-70b"
base_url = "http://127.0.0.1:9090/v1"
api_key_env = "LOCAL_LLM_KEY"

[models.proxied]
provider = "openrouter"
model = "openai/gpt-5"
base_url = "http://127.0.0.1:7070/api/v1"
api_key_env = "PROXY_KEY"

[openrouter]
http_referer = "https://t-koma.example"
app_name = "t-koma tests"
catalog_ttl_seconds = 120
"""

ALL_KEYS = {
    "OPENROUTER_API_KEY": OPENROUTER_SECRET,
    "ANTHROPIC_API_KEY": ANTHROPIC_SECRET,
    "LOCAL_LLM_KEY": LOCAL_SECRET,
    "PROXY_KEY": OPENROUTER_SECRET,
}


def make_config(tmp_path: Path, toml: str | None = CONFIG, **env: str) -> Config:
    config_dir = tmp_path / "resolver-config"
    config_dir.mkdir(exist_ok=True)
    if toml is not None:
        (config_dir / "config.toml").write_text(toml)
    environ = {"T_KOMA_CONFIG_DIR": str(config_dir), "T_KOMA_DATA_DIR": str(tmp_path / "resolver-data"), **env}
    return load_config(environ, cwd=tmp_path)


@pytest.fixture
def resolver(tmp_path: Path) -> ModelResolver:
    return ModelResolver(make_config(tmp_path, **ALL_KEYS))


# --- provider names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("openrouter", "openrouter"),
        ("OpenRouter", "openrouter"),
        ("open_router", "openrouter"),
        ("ANTHROPIC", "anthropic"),
        ("openai_compatible", "openai_compatible"),
        ("openai-compatible", "openai_compatible"),
        ("OpenAICompatible", "openai_compatible"),
        ("open_ai_compatible", "openai_compatible"),
    ],
)
def test_provider_names_are_accepted_in_any_spelling(name: str, kind: str) -> None:
    assert normalize_provider_name(name) == kind


def test_unknown_provider_name() -> None:
    with pytest.raises(
        ConfigError, match=r"^unknown provider 'gemini': use openrouter, anthropic or openai_compatible$"
    ):
        normalize_provider_name("gemini")


# --- specs built from aliases ---------------------------------------------------------------------------


def test_openrouter_alias_spec_carries_routing_attribution_and_key(resolver: ModelResolver) -> None:
    spec = resolver.resolve("kimi")

    assert (spec.kind, spec.model, spec.alias, spec.label) == ("openrouter", "moonshotai/kimi-k2.5", "kimi", "kimi")
    assert spec.base_url == "https://openrouter.ai/api/v1"
    assert spec.routing == ("moonshotai", "groq")
    assert spec.allow_fallbacks is False
    assert (spec.max_tokens, spec.context_window) == (4000, 262144)
    assert (spec.http_referer, spec.app_name) == ("https://t-koma.example", "t-koma tests")
    assert (spec.api_key, spec.api_key_env) == (OPENROUTER_SECRET, "OPENROUTER_API_KEY")
    assert OPENROUTER_SECRET not in repr(spec)


def test_model_base_url_and_key_variable_win_over_provider_defaults(resolver: ModelResolver) -> None:
    spec = resolver.resolve("proxied")

    assert spec.base_url == "http://127.0.0.1:7070/api/v1"
    assert spec.api_key_env == "PROXY_KEY"


def test_base_url_variables_reach_the_specs(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, OPENROUTER_BASE_URL="http://127.0.0.1:1/api/v1", ANTHROPIC_BASE_URL="http://127.0.0.1:2", **ALL_KEYS
    )
    resolver = ModelResolver(config)

    assert resolver.resolve("kimi").base_url == "http://127.0.0.1:1/api/v1"
    assert resolver.resolve("claude").base_url == "http://127.0.0.1:2"


def test_anthropic_alias_spec(resolver: ModelResolver) -> None:
    spec = resolver.resolve("claude")

    assert (spec.kind, spec.model, spec.base_url) == ("anthropic", "claude-opus-4-1", "https://api.anthropic.com")
    assert spec.api_key == ANTHROPIC_SECRET
    assert (spec.routing, spec.http_referer) == ((), None)


def test_openai_compatible_key_is_optional_unless_named(tmp_path: Path) -> None:
    resolver = ModelResolver(make_config(tmp_path))

    local = resolver.resolve("local")
    assert (local.kind, local.base_url, local.api_key) == ("openai_compatible", "http://127.0.0.1:8080/v1", None)
    with pytest.raises(MissingKeyError) as caught:
        resolver.resolve("secured")
    assert caught.value.message == (
        "LOCAL_LLM_KEY is not set: export it or add it to .env (needed by model alias 'secured')"
    )
    assert caught.value.variable == "LOCAL_LLM_KEY"


def test_openai_compatible_uses_openai_api_key_when_set(tmp_path: Path) -> None:
    resolver = ModelResolver(make_config(tmp_path, OPENAI_API_KEY="sk-openai-SECRET"))

    assert resolver.resolve("local").api_key == "sk-openai-SECRET"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("kimi", "OPENROUTER_API_KEY is not set: export it or add it to .env (needed by model alias 'kimi')"),
        ("claude", "ANTHROPIC_API_KEY is not set: export it or add it to .env (needed by model alias 'claude')"),
        (
            "openrouter/x-ai/grok-4",
            "OPENROUTER_API_KEY is not set: export it or add it to .env (needed by OpenRouter model 'x-ai/grok-4')",
        ),
        ("proxied", "PROXY_KEY is not set: export it or add it to .env (needed by model alias 'proxied')"),
    ],
)
def test_missing_key_is_reported_when_a_model_is_used(tmp_path: Path, ref: str, message: str) -> None:
    resolver = ModelResolver(make_config(tmp_path))

    with pytest.raises(MissingKeyError) as caught:
        resolver.resolve(ref)

    assert caught.value.message == message
    assert caught.value.exit_code == 2


def test_blank_key_counts_as_missing_and_errors_never_hold_keys(tmp_path: Path) -> None:
    resolver = ModelResolver(make_config(tmp_path, OPENROUTER_API_KEY="  ", ANTHROPIC_API_KEY=ANTHROPIC_SECRET))

    with pytest.raises(MissingKeyError) as caught:
        resolver.resolve("kimi")

    assert ANTHROPIC_SECRET not in str(caught.value)
    assert resolver.resolve("claude").api_key == ANTHROPIC_SECRET


def test_no_config_file_resolves_builtin_aliases(tmp_path: Path) -> None:
    resolver = ModelResolver(make_config(tmp_path, None, **ALL_KEYS))

    assert resolver.default_chain() == ("anthropic",)
    assert (resolver.resolve("openrouter").kind, resolver.resolve("openrouter").model) == (
        "openrouter",
        "anthropic/claude-sonnet-4.5",
    )
    assert resolver.resolve("anthropic").model == "claude-sonnet-4-5"


def test_default_chain_comes_from_config(resolver: ModelResolver) -> None:
    assert resolver.default_chain() == ("kimi", "claude")


# --- references that are not aliases --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "kind", "model"),
    [
        ("openrouter/anthropic/claude-sonnet-4.5", "openrouter", "anthropic/claude-sonnet-4.5"),
        ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        ("moonshotai/kimi-k2.5", "openrouter", "moonshotai/kimi-k2.5"),
        ("deepseek/deepseek-r1:nitro", "openrouter", "deepseek/deepseek-r1:nitro"),
        ("openrouter/auto", "openrouter", "openrouter/auto"),
        ("  openai/gpt-5  ", "openrouter", "openai/gpt-5"),
    ],
)
def test_model_ids_resolve_by_prefix(resolver: ModelResolver, ref: str, kind: str, model: str) -> None:
    spec = resolver.resolve(ref)

    assert (spec.kind, spec.model, spec.alias) == (kind, model, None)
    assert spec.label == f"{kind}/{model}"
    assert spec.routing == ()


def test_unknown_alias_lists_the_known_ones(resolver: ModelResolver) -> None:
    with pytest.raises(ConfigError) as caught:
        resolver.resolve("fast")

    assert caught.value.message == (
        "unknown model alias 'fast' (known: kimi, claude, local, secured, proxied, openrouter, anthropic); "
        "use an alias from config.toml or an OpenRouter ID like author/slug"
    )


def test_empty_reference(resolver: ModelResolver) -> None:
    with pytest.raises(ConfigError, match=r"^empty model reference"):
        resolver.resolve("  ")


@pytest.mark.parametrize("ref", ["openai/gpt 5", "a//b", "author/slug/extra", "openai/gpt-5\x00"])
def test_malformed_openrouter_ids_are_rejected(resolver: ModelResolver, ref: str) -> None:
    with pytest.raises(InvalidModelError):
        resolver.resolve(ref)


@pytest.mark.parametrize("model", ["claude opus", "x" * 300, "claude\tx"])
def test_malformed_ids_of_other_providers_are_rejected(resolver: ModelResolver, model: str) -> None:
    with pytest.raises(InvalidModelError, match="invalid Anthropic model ID"):
        resolver.resolve(model, provider="anthropic")


# --- an explicit provider ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "provider", "kind", "model", "base_url"),
    [
        ("openai/gpt-5", "open_router", "openrouter", "openai/gpt-5", "https://openrouter.ai/api/v1"),
        ("openrouter/openai/gpt-5", "openrouter", "openrouter", "openai/gpt-5", "https://openrouter.ai/api/v1"),
        ("claude-haiku-4-5", "Anthropic", "anthropic", "claude-haiku-4-5", "https://api.anthropic.com"),
        ("anthropic/claude-haiku-4-5", "anthropic", "anthropic", "claude-haiku-4-5", "https://api.anthropic.com"),
        ("gpt-oss:20b", "openai-compatible", "openai_compatible", "gpt-oss:20b", "http://127.0.0.1:8080/v1"),
        ("gpt-oss:20b", "secured", "openai_compatible", "gpt-oss:20b", "http://127.0.0.1:9090/v1"),
    ],
)
def test_with_a_provider_the_reference_is_that_providers_model_id(
    resolver: ModelResolver, ref: str, provider: str, kind: str, model: str, base_url: str
) -> None:
    spec = resolver.resolve(ref, provider=provider)

    assert (spec.kind, spec.model, spec.base_url, spec.alias) == (kind, model, base_url, None)


def test_server_alias_as_provider_reuses_its_key(resolver: ModelResolver) -> None:
    spec = resolver.resolve("other-model", provider="secured")

    assert (spec.api_key, spec.api_key_env) == (LOCAL_SECRET, "LOCAL_LLM_KEY")


def test_an_alias_of_the_given_provider_is_still_an_alias(resolver: ModelResolver) -> None:
    assert resolver.resolve("kimi", provider="openrouter").routing == ("moonshotai", "groq")
    assert resolver.resolve("local", provider="openai_compatible").model == "qwen3:8b"


def test_an_alias_of_another_provider_is_read_as_a_model_id(resolver: ModelResolver) -> None:
    spec = resolver.resolve("claude", provider="openai_compatible")

    assert (spec.kind, spec.model) == ("openai_compatible", "claude")


def test_unknown_provider_in_resolve(resolver: ModelResolver) -> None:
    with pytest.raises(ConfigError, match=r"^unknown provider 'kimi': use openrouter, anthropic, openai_compatible or"):
        resolver.resolve("x/y", provider="kimi")


def test_openai_compatible_without_a_configured_server(tmp_path: Path) -> None:
    resolver = ModelResolver(make_config(tmp_path, None))

    with pytest.raises(ConfigError, match=r"^no openai_compatible server is configured: add a"):
        resolver.resolve("llama", provider="openai_compatible")


# --- clients and catalogs ---------------------------------------------------------------------------------


async def test_provider_clients_are_cached_per_spec_and_closed(resolver: ModelResolver) -> None:
    first = resolver.provider("claude")
    assert isinstance(first, AnthropicProvider)
    assert first.spec == resolver.resolve("claude")
    assert resolver.provider("claude") is first
    assert resolver.provider("anthropic/claude-opus-4-1") is not first, "a different spec (no alias) is a new client"

    await resolver.aclose()

    assert resolver.provider("claude") is not first
    await resolver.aclose()


async def test_catalogs_live_in_the_data_dir_cache(resolver: ModelResolver, tmp_path: Path) -> None:
    catalog = resolver.catalog("OpenRouter")

    assert resolver.catalog("openrouter") is catalog
    assert catalog.cache_file == tmp_path / "resolver-data" / "cache" / "models-openrouter.json"
    assert catalog.ttl_seconds == 120.0
    assert resolver.catalog("secured").cache_file.name == "models-openai_compatible-secured.json"
    assert resolver.catalog("anthropic").cache_file.name == "models-anthropic.json"
    await resolver.aclose()


async def test_openrouter_catalog_needs_no_key_but_anthropic_does(tmp_path: Path) -> None:
    resolver = ModelResolver(make_config(tmp_path, None))

    assert resolver.catalog("openrouter").cache_file.name == "models-openrouter.json"
    with pytest.raises(
        MissingKeyError, match=r"^ANTHROPIC_API_KEY is not set: .*\(needed by listing Anthropic models\)$"
    ):
        resolver.catalog("anthropic")
    await resolver.aclose()


def test_each_provider_kind_gets_its_client_class(resolver: ModelResolver) -> None:
    from t_koma.providers.openai_compatible import OpenAICompatibleProvider
    from t_koma.providers.openrouter import OpenRouterProvider

    assert isinstance(resolver.provider("kimi"), OpenRouterProvider)
    assert isinstance(resolver.provider("local"), OpenAICompatibleProvider)
    assert isinstance(resolver.provider("claude"), AnthropicProvider)


# --- validation against the live catalog ------------------------------------------------------------------


async def test_validate_checks_openrouter_ids_against_the_catalog(fake_openrouter: Any, tmp_path: Path) -> None:
    resolver = ModelResolver(load_config(cwd=tmp_path))
    try:
        spec = await resolver.validate("moonshotai/kimi-k2.5:nitro")
        assert (spec.kind, spec.model) == ("openrouter", "moonshotai/kimi-k2.5:nitro")
        assert (await resolver.validate("openrouter")).model == "anthropic/claude-sonnet-4.5"

        with pytest.raises(InvalidModelError) as caught:
            await resolver.validate("moonshotai/kimi-k2.6")
        assert "moonshotai/kimi-k2.5" in caught.value.suggestions
        assert caught.value.exit_code == 4
    finally:
        await resolver.aclose()
    catalog_calls = [r for r in fake_openrouter.app.requests if r.path.endswith("/models")]
    assert len(catalog_calls) == 1, "the catalog is fetched once and reused"


async def test_validate_does_not_fetch_a_catalog_for_other_providers(fake_openrouter: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, CONFIG, ANTHROPIC_API_KEY=ANTHROPIC_SECRET, ANTHROPIC_BASE_URL="http://127.0.0.1:9")
    resolver = ModelResolver(config)

    assert (await resolver.validate("claude")).model == "claude-opus-4-1"
    assert (await resolver.validate("anything", provider="local")).model == "anything"
    assert fake_openrouter.app.requests == []
    await resolver.aclose()


def test_a_malformed_configured_id_names_its_alias(tmp_path: Path) -> None:
    toml = '[models.bad]\nprovider = "openrouter"\nmodel = "gpt-4o"\n'
    resolver = ModelResolver(make_config(tmp_path, toml, OPENROUTER_API_KEY=OPENROUTER_SECRET))

    with pytest.raises(InvalidModelError, match=r"^model alias 'bad' in config.toml: model ID 'gpt-4o' is not of the"):
        resolver.resolve("bad")
