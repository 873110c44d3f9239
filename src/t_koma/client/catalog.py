"""The whole model catalog of a provider, for the picker's filter.

`list_available_models` answers the spec's top 20. The client first asks it for everything (`"all": true`, an
additive field a gateway may honour); when that brings no more than the top list, it reads the catalog from
the gateway's documented `GET /v1/models` (entries `owned_by` the provider, IDs prefixed with its name).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from t_koma.client.frames import GatewayError, ModelEntry

V1_TIMEOUT = 10.0


def entries_from_v1(payload: Mapping[str, Any], provider: str) -> list[ModelEntry]:
    """The `provider`'s models from a `/v1/models` body, with the `provider/` prefix taken off their IDs."""
    prefix = f"{provider}/"
    out: list[ModelEntry] = []
    for item in payload.get("data") or ():
        if not isinstance(item, Mapping) or item.get("owned_by") != provider:
            continue
        model_id = str(item.get("id", ""))
        model_id = model_id[len(prefix) :] if model_id.startswith(prefix) else model_id
        if not model_id:
            continue
        context = item.get("context_length")
        out.append(
            ModelEntry(
                model_id,
                str(item.get("name") or model_id),
                str(item.get("description") or ""),
                context if isinstance(context, int) and not isinstance(context, bool) else None,
            )
        )
    return out


def _get_v1_models(http_url: str, token: str | None) -> Mapping[str, Any]:
    request = urllib.request.Request(f"{http_url.rstrip('/')}/v1/models")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=V1_TIMEOUT) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError) as exc:
        raise GatewayError(f"cannot read the model catalog from {http_url}/v1/models: {exc}") from exc
    if not isinstance(body, Mapping):
        raise GatewayError("the gateway's /v1/models answer is not a JSON object")
    return body


async def v1_catalog(http_url: str, token: str | None, provider: str) -> list[ModelEntry]:
    payload = await asyncio.to_thread(_get_v1_models, http_url, token)
    return entries_from_v1(payload, provider)


def merge(top: Sequence[ModelEntry], catalog: Sequence[ModelEntry]) -> list[ModelEntry]:
    """The top list first (it has descriptions and prices), then every other catalog model."""
    seen = {model.id for model in top}
    return [*top, *(model for model in catalog if model.id not in seen)]
