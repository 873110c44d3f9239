"""The model catalog: TTL cache file, stale fallback, "top N", and model-ID validation (reference §C11)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from t_koma.errors import InvalidModelError, ProviderError
from t_koma.messages import ModelInfo
from t_koma.providers.base import ProviderSpec
from t_koma.providers.catalog import ModelCatalog, check_model_id_syntax, strip_routing_variant, top_models
from t_koma.providers.openrouter import OpenRouterProvider
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import error_reply, garbage_reply


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def provider(fake_openrouter: FakeUpstream) -> AsyncIterator[OpenRouterProvider]:
    spec = ProviderSpec(
        kind="openrouter", model="openai/gpt-4o-mini", base_url=fake_openrouter.base_url, api_key=TEST_KEY
    )
    client = OpenRouterProvider(spec)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(provider: OpenRouterProvider, tmp_path: Path, clock: Clock) -> ModelCatalog:
    return ModelCatalog(provider, tmp_path / "cache" / "openrouter-models.json", ttl_seconds=3600, clock=clock)


def model_fetches(fake: FakeUpstream) -> int:
    return sum(request.path.endswith("/models") for request in fake.app.requests)


async def test_fetches_once_then_uses_the_cache_within_the_ttl(
    fake_openrouter: FakeUpstream, catalog: ModelCatalog, provider: OpenRouterProvider, tmp_path: Path, clock: Clock
) -> None:
    first = await catalog.models()
    assert first[0].id == "openai/gpt-4o-mini" and model_fetches(fake_openrouter) == 1
    assert catalog.cache_file.exists() and catalog.fetched_at == clock.now and not catalog.stale
    clock.now += 3599
    # a new catalog object (a new process) reads the file instead of fetching
    again = ModelCatalog(provider, catalog.cache_file, ttl_seconds=3600, clock=clock)
    assert await again.models() == first and model_fetches(fake_openrouter) == 1


async def test_refetches_after_the_ttl_and_on_refresh(
    fake_openrouter: FakeUpstream, catalog: ModelCatalog, clock: Clock
) -> None:
    await catalog.models()
    clock.now += 3601
    fake_openrouter.app.models = fake_openrouter.app.models[:2]
    assert len(await catalog.models()) == 2 and model_fetches(fake_openrouter) == 2
    assert len(await catalog.models(refresh=True)) == 2 and model_fetches(fake_openrouter) == 3
    assert len(orjson.loads(catalog.cache_file.read_bytes())["models"]) == 2


async def test_stale_cache_is_used_and_flagged_when_the_refetch_fails(
    fake_openrouter: FakeUpstream, catalog: ModelCatalog, clock: Clock
) -> None:
    fresh = await catalog.models()
    clock.now += 7200
    fake_openrouter.app.enqueue_models(error_reply(503, "catalog unavailable"))
    assert await catalog.models() == fresh
    assert catalog.stale and catalog.stale_reason is not None and "catalog unavailable" in catalog.stale_reason
    clock.now += 1
    assert await catalog.models() == fresh and not catalog.stale  # the next successful fetch clears the flag


async def test_fetch_failure_without_any_cache_raises(fake_openrouter: FakeUpstream, catalog: ModelCatalog) -> None:
    fake_openrouter.app.enqueue_models(garbage_reply("<html>"))
    with pytest.raises(ProviderError):
        await catalog.models()


async def test_a_corrupt_cache_file_is_ignored(fake_openrouter: FakeUpstream, catalog: ModelCatalog) -> None:
    catalog.cache_file.parent.mkdir(parents=True)
    catalog.cache_file.write_text("{not json")
    assert len(await catalog.models()) == len(fake_openrouter.app.models)


def info(model_id: str, tools: bool = True) -> ModelInfo:
    return ModelInfo(model_id, model_id.upper(), supported_parameters=("tools",) if tools else ("temperature",))


def test_top_lists_configured_models_first_then_tool_capable_ones_in_catalog_order() -> None:
    models = [info("a/one"), info("b/no-tools", tools=False), info("c/three"), info("d/four"), info("e/five")]
    top = top_models(models, ["d/four", "x/not-in-catalog", "a/one:nitro"], n=5)
    assert [model.id for model in top] == ["d/four", "x/not-in-catalog", "a/one:nitro", "a/one", "c/three"]
    assert top[2].name == "A/ONE"  # a routing variant borrows its base model's details
    assert len(top_models(models, [], n=2)) == 2


def test_top_keeps_every_model_when_the_catalog_says_nothing_about_tools() -> None:
    bare = [ModelInfo("qwen", "qwen"), ModelInfo("llama", "llama")]
    assert [model.id for model in top_models(bare, [])] == ["qwen", "llama"]


async def test_top_over_the_fake_catalog(catalog: ModelCatalog) -> None:
    top = await catalog.top(["moonshotai/kimi-k2.5"], n=20)
    ids = [model.id for model in top]
    assert ids[0] == "moonshotai/kimi-k2.5" and "mistralai/mistral-7b-instruct" not in ids
    assert "openrouter/auto" not in ids and len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "model_id",
    ["openai/gpt-4o", "meta-llama/llama-3.3-70b-instruct:free", "moonshotai/kimi-k2.5:nitro", "x-ai/grok-4.1-fast"],
)
def test_valid_model_id_syntax(model_id: str) -> None:
    check_model_id_syntax(model_id)


@pytest.mark.parametrize(
    "model_id",
    [
        "",
        "gpt-4o",
        "openai/",
        "/gpt-4o",
        "openai/gpt 4o",
        "openai/gpt-4o\n",
        "open\x00ai/x",
        "a/b:",
        "a/b/c",
        "a/" + "x" * 200,
    ],
)
def test_invalid_model_id_syntax(model_id: str) -> None:
    with pytest.raises(InvalidModelError):
        check_model_id_syntax(model_id)


def test_routing_variants_are_stripped_catalog_variants_kept() -> None:
    assert strip_routing_variant("openai/gpt-4o:nitro") == "openai/gpt-4o"
    assert strip_routing_variant("openai/gpt-4o:floor") == "openai/gpt-4o"
    assert strip_routing_variant("openai/gpt-4o:exacto") == "openai/gpt-4o"
    assert strip_routing_variant("meta-llama/llama-3.3-70b-instruct:free") == "meta-llama/llama-3.3-70b-instruct:free"


async def test_validate_known_ids_including_variants(catalog: ModelCatalog) -> None:
    found = await catalog.validate("openai/gpt-4o-mini")
    assert found is not None and found.id == "openai/gpt-4o-mini"
    nitro = await catalog.validate("openai/gpt-4o-mini:nitro")
    assert nitro is not None and nitro.id == "openai/gpt-4o-mini"
    free = await catalog.validate("meta-llama/llama-3.3-70b-instruct:free")
    assert free is not None and free.id.endswith(":free")


async def test_validate_unknown_id_suggests_the_closest(catalog: ModelCatalog) -> None:
    with pytest.raises(InvalidModelError) as caught:
        await catalog.validate("openai/gpt-4o-mni")
    assert caught.value.suggestions[0] == "openai/gpt-4o-mini" and "openai/gpt-4o-mini" in caught.value.message
    with pytest.raises(InvalidModelError):
        await catalog.validate("meta-llama/llama-3.3-70b-instruct:thinking")  # a catalog variant that does not exist


async def test_validate_checks_syntax_before_any_fetch(fake_openrouter: FakeUpstream, catalog: ModelCatalog) -> None:
    with pytest.raises(InvalidModelError):
        await catalog.validate("not a model")
    assert model_fetches(fake_openrouter) == 0


async def test_validate_is_syntax_only_when_the_catalog_is_unreachable(
    fake_openrouter: FakeUpstream, catalog: ModelCatalog
) -> None:
    fake_openrouter.app.enqueue_models(error_reply(502, "down"))
    assert await catalog.validate("brand-new/model-released-today") is None
