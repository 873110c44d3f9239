"""A provider's model catalog, cached as a JSON file with a TTL, plus model-ID validation and the "top N" list.

The cache is used within its TTL and refetched after; when a refetch fails and an old copy exists, the old copy
is used and `stale` says so. OpenRouter routing variants (`:nitro`, `:floor`, `:exacto`) are valid on any model
but never listed in `/models`, so they are stripped before an ID is looked up; catalog variants such as `:free`
are separate catalog entries and are kept."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from t_koma.errors import InvalidModelError, ProviderError
from t_koma.files import ensure_private_dir, ensure_private_file
from t_koma.messages import ModelInfo
from t_koma.providers.base import Provider

MAX_MODEL_ID_LENGTH = 200
ROUTING_VARIANTS = frozenset({"nitro", "floor", "exacto", "online"})
_MODEL_ID = re.compile(r"[^\s/:]+/[^\s/:]+(?::[^\s/:]+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CACHE_VERSION = 1


def check_model_id_syntax(model_id: str) -> None:
    """Raise `InvalidModelError` unless `model_id` looks like `author/slug[:variant]`: no whitespace or control
    characters, at most `MAX_MODEL_ID_LENGTH` characters."""
    shown = _CONTROL.sub("?", model_id[:80])
    if not model_id:
        raise InvalidModelError("empty model ID: use an OpenRouter ID like author/slug")
    if len(model_id) > MAX_MODEL_ID_LENGTH:
        raise InvalidModelError(f"model ID {shown!r}… is longer than {MAX_MODEL_ID_LENGTH} characters")
    if _CONTROL.search(model_id) or any(ch.isspace() for ch in model_id):
        raise InvalidModelError(f"model ID {shown!r} contains whitespace or control characters")
    if not _MODEL_ID.fullmatch(model_id):
        raise InvalidModelError(f"model ID {shown!r} is not of the form author/slug[:variant] (e.g. openai/gpt-4o)")


def strip_routing_variant(model_id: str) -> str:
    """`author/slug:nitro` → `author/slug`; catalog variants (`:free`, `:thinking` …) are kept."""
    base, sep, variant = model_id.rpartition(":")
    return base if sep and variant in ROUTING_VARIANTS else model_id


def top_models(models: Sequence[ModelInfo], configured_ids: Sequence[str], n: int = 20) -> list[ModelInfo]:
    """Configured models first (in the given order), then catalog models that support tools, in catalog order;
    at most `n`. When no catalog entry lists its supported parameters (plain OpenAI-compatible servers), tool
    support is unknown and every model qualifies."""
    by_id = {model.id: model for model in models}
    chosen: list[ModelInfo] = []
    seen: set[str] = set()
    for model_id in configured_ids:
        if model_id in seen:
            continue
        seen.add(model_id)
        known = by_id.get(model_id) or by_id.get(strip_routing_variant(model_id))
        chosen.append(known if known is not None and known.id == model_id else _configured_entry(model_id, known))
    tools_known = any(model.supported_parameters for model in models)
    for model in models:
        if model.id not in seen and (model.supports_tools or not tools_known):
            seen.add(model.id)
            chosen.append(model)
    return chosen[: max(0, n)]


def _configured_entry(model_id: str, known: ModelInfo | None) -> ModelInfo:
    if known is None:
        return ModelInfo(id=model_id, name=model_id)
    return ModelInfo(
        id=model_id,
        name=known.name,
        description=known.description,
        context_length=known.context_length,
        prompt_price=known.prompt_price,
        completion_price=known.completion_price,
        supported_parameters=known.supported_parameters,
    )


class ModelCatalog:
    """The catalog of one provider, fetched with `provider.list_models()` and cached in `cache_file`.

    After `models()`, `stale` is True when the list came from an expired cache because the refetch failed
    (`stale_reason` says why), and `fetched_at` is when the list was fetched (epoch seconds)."""

    def __init__(
        self,
        provider: Provider,
        cache_file: Path,
        ttl_seconds: float = 3600,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.cache_file = Path(cache_file)
        self.ttl_seconds = ttl_seconds
        self.stale = False
        self.stale_reason: str | None = None
        self.fetched_at: float | None = None
        self._clock = clock
        self._models: list[ModelInfo] | None = None
        self._lock = asyncio.Lock()

    async def models(self, refresh: bool = False) -> list[ModelInfo]:
        """The catalog: from memory or the cache file within the TTL, else fetched (and cached)."""
        async with self._lock:
            if not refresh and self._fresh_in_memory():
                return list(self._models or ())
            cached = self._read_cache()
            if cached is None and self._models is not None and self.fetched_at is not None:
                cached = (self.fetched_at, self._models)
            if not refresh and cached is not None and self._is_fresh(cached[0]):
                self._use(cached[1], cached[0], stale_reason=None)
                return list(cached[1])
            try:
                fetched = await self.provider.list_models()
            except ProviderError as exc:
                if cached is None:
                    raise
                self._use(cached[1], cached[0], stale_reason=exc.message)
                return list(cached[1])
            now = self._clock()
            self._write_cache(fetched, now)
            self._use(fetched, now, stale_reason=None)
            return list(fetched)

    async def top(self, configured_ids: Sequence[str], n: int = 20) -> list[ModelInfo]:
        """`top_models` over this catalog."""
        return top_models(await self.models(), configured_ids, n)

    async def validate(self, model_id: str) -> ModelInfo | None:
        """Check the syntax, then look the ID up in the catalog (routing variants stripped). Returns the catalog
        entry, or None when the catalog cannot be had (syntax checked only). Unknown IDs raise
        `InvalidModelError` naming the closest known IDs."""
        check_model_id_syntax(model_id)
        try:
            models = await self.models()
        except ProviderError:
            return None
        wanted = strip_routing_variant(model_id)
        for model in models:
            if model.id == wanted:
                return model
        ids = [model.id for model in models]
        suggestions = tuple(difflib.get_close_matches(wanted, ids, n=3, cutoff=0.5))
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else "; run `t-koma models` to list them"
        raise InvalidModelError(
            f"model {model_id!r} is not in the {self.provider.name} catalog{hint}", suggestions=suggestions
        )

    def _fresh_in_memory(self) -> bool:
        return self._models is not None and self.fetched_at is not None and self._is_fresh(self.fetched_at)

    def _is_fresh(self, fetched_at: float) -> bool:
        return 0 <= self._clock() - fetched_at < self.ttl_seconds

    def _use(self, models: list[ModelInfo], fetched_at: float, *, stale_reason: str | None) -> None:
        self._models = list(models)
        self.fetched_at = fetched_at
        self.stale = stale_reason is not None
        self.stale_reason = stale_reason

    def _read_cache(self) -> tuple[float, list[ModelInfo]] | None:
        try:
            data = orjson.loads(self.cache_file.read_bytes())
            if data.get("version") != _CACHE_VERSION:
                return None
            return float(data["fetched_at"]), [_model_from_json(entry) for entry in data["models"]]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None  # no cache, or one we cannot read: fetch instead

    def _write_cache(self, models: list[ModelInfo], fetched_at: float) -> None:
        data = {"version": _CACHE_VERSION, "fetched_at": fetched_at, "models": [_model_to_json(m) for m in models]}
        temporary = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.tmp")
        try:
            ensure_private_dir(self.cache_file.parent)
            ensure_private_file(temporary).write_bytes(orjson.dumps(data))
            os.replace(temporary, self.cache_file)
        except OSError:  # a cache we cannot write only costs a refetch next time
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def _model_to_json(model: ModelInfo) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "description": model.description,
        "context_length": model.context_length,
        "prompt_price": model.prompt_price,
        "completion_price": model.completion_price,
        "supported_parameters": list(model.supported_parameters),
    }


def _model_from_json(entry: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        id=str(entry["id"]),
        name=str(entry["name"]),
        description=str(entry.get("description") or ""),
        context_length=entry.get("context_length"),
        prompt_price=entry.get("prompt_price"),
        completion_price=entry.get("completion_price"),
        supported_parameters=tuple(entry.get("supported_parameters") or ()),
    )
