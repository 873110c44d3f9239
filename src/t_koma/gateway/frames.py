"""Gateway → client WebSocket frames (docs/protocol.md): typed inputs in, one JSON object out. Every frame
that answers a client message echoes that message's `id`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from t_koma import __version__
from t_koma.config.model import DEFAULT_KEY_ENV, Config
from t_koma.engine.events import TurnResult
from t_koma.errors import InvalidModelError, MissingKeyError, TKomaError
from t_koma.gateway.protocol import RequestId
from t_koma.messages import JSONObject, ModelInfo, ProviderUsage, TextBlock, block_to_dict
from t_koma.providers.base import PROVIDER_KINDS, ProviderKind
from t_koma.store.base import SessionInfo, SessionSummary, StoredMessage

PROTOCOL_VERSION = 1

_LABELS: dict[ProviderKind, str] = {
    "anthropic": "Anthropic (Claude)",
    "openrouter": "OpenRouter",
    "openai_compatible": "OpenAI-compatible server",
}


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """Whether a provider can be used: its key variable (name only) and whether it is set."""

    name: ProviderKind
    label: str
    configured: bool
    key_env: str

    def to_dict(self) -> JSONObject:
        return {"name": self.name, "label": self.label, "configured": self.configured, "key_env": self.key_env}


def provider_statuses(config: Config) -> tuple[ProviderStatus, ...]:
    """openai_compatible counts as configured when a server is configured and its key (if it needs one) is set."""
    statuses = []
    for kind in PROVIDER_KINDS:
        key_env = DEFAULT_KEY_ENV[kind]
        if kind == "openai_compatible":
            servers = [m for m in config.models.values() if m.provider == kind]
            if servers:
                key_env = servers[0].key_env
            configured = any(not m.key_required or config.secrets.has(m.key_env) for m in servers)
        else:
            configured = config.secrets.has(key_env)
        statuses.append(ProviderStatus(kind, _LABELS[kind], configured, key_env))
    return tuple(statuses)


def frame(frame_type: str, request_id: RequestId = None, **fields: Any) -> JSONObject:
    out: JSONObject = {"type": frame_type}
    if request_id is not None:
        out["id"] = request_id
    out.update(fields)
    return out


def hello(
    *,
    session_id: str | None,
    provider: str | None,
    model: str | None,
    chain: Iterable[str],
    max_frame_bytes: int,
    providers: Iterable[ProviderStatus],
) -> JSONObject:
    return frame(
        "hello",
        version=__version__,
        protocol=PROTOCOL_VERSION,
        session_id=session_id,
        provider=provider,
        model=model,
        chain=list(chain),
        max_frame_bytes=max_frame_bytes,
        providers=[p.to_dict() for p in providers],
    )


def error(
    message: str, error_type: str, request_id: RequestId = None, *, session_id: str | None = None, **details: Any
) -> JSONObject:
    body: JSONObject = {"message": message, "type": error_type, **details}
    if session_id is not None:
        return frame("error", request_id, session_id=session_id, error=body)
    return frame("error", request_id, error=body)


def error_from(exc: TKomaError, request_id: RequestId = None, *, session_id: str | None = None) -> JSONObject:
    """The exception's own `{"error": {...}}` body (already free of keys) inside an `error` frame."""
    body = exc.to_dict()["error"]
    if isinstance(exc, MissingKeyError):
        body["key_env"] = exc.variable
    if isinstance(exc, InvalidModelError) and exc.suggestions:
        body["suggestions"] = list(exc.suggestions)
    if session_id is not None:
        return frame("error", request_id, session_id=session_id, error=body)
    return frame("error", request_id, error=body)


def available_models(request_id: RequestId, provider: str, models: Iterable[ModelInfo]) -> JSONObject:
    return frame("available_models", request_id, provider=provider, models=[model_entry(m) for m in models])


def model_entry(model: ModelInfo) -> JSONObject:
    """The spec's four fields, plus `pricing` (USD per token, OpenRouter's convention) when the catalog has it."""
    entry = model.to_dict()
    if model.prompt_price is not None or model.completion_price is not None:
        entry["pricing"] = {"prompt": model.prompt_price, "completion": model.completion_price}
    return entry


def session_entry(summary: SessionSummary, *, active: bool, busy: bool) -> JSONObject:
    info = summary.session
    return {
        "id": info.id,
        "title": info.title,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "message_count": summary.message_count,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost": summary.cost,
        "is_active": active,
        "busy": busy,
    }


def session_created(request_id: RequestId, info: SessionInfo) -> JSONObject:
    return frame("session_created", request_id, session_id=info.id, title=info.title)


def history(request_id: RequestId, session_id: str, messages: Iterable[StoredMessage]) -> JSONObject:
    return frame(
        "history",
        request_id,
        session_id=session_id,
        messages=[
            {
                "id": m.id,
                "role": m.role,
                "content": "".join(b.text for b in m.content if isinstance(b, TextBlock)),
                "blocks": [block_to_dict(b) for b in m.content],
                "model": m.model,
                "created_at": m.created_at,
                "status": m.status,
            }
            for m in messages
        ],
    )


def usage_dict(usage: ProviderUsage) -> JSONObject:
    """Every `usage` object of the protocol: the token counts (`reasoning_tokens` included; None = the upstream
    did not say) and the cost."""
    return usage.to_dict()


def response(request_id: RequestId, result: TurnResult) -> JSONObject:
    return frame(
        "response",
        request_id,
        session_id=result.session_id,
        message_id=result.message_id,
        content=result.text,
        provider=result.provider,
        model=result.model,
        stop_reason=result.stop_reason,
        done=True,
        usage=usage_dict(result.usage),
    )


def cancelled_response(
    request_id: RequestId, session_id: str, text: str, provider: str | None, model: str | None, usage: ProviderUsage
) -> JSONObject:
    """The end of a turn stopped by `cancel` when the engine had no result to give."""
    return frame(
        "response",
        request_id,
        session_id=session_id,
        message_id=None,
        content=text,
        provider=provider,
        model=model,
        stop_reason="cancelled",
        done=True,
        usage=usage_dict(usage),
    )
