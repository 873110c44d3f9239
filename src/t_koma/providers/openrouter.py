"""The OpenRouter client: OpenAI chat completions plus OpenRouter's attribution headers, per-model
`provider.order` / `allow_fallbacks` routing, prompt-cache breakpoints for the upstreams that need them, and the
`GET /models` catalog."""

from __future__ import annotations

from t_koma.messages import ConversationRequest, JSONObject
from t_koma.providers.base import ProviderSpec
from t_koma.providers.openai_chat import OpenAIChatProvider

# Upstreams that cache only at explicit `cache_control` breakpoints when reached through OpenRouter.
_EXPLICIT_CACHE_PREFIXES = ("anthropic/", "google/gemini")


class OpenRouterProvider(OpenAIChatProvider):
    """`POST {base}/chat/completions` and `GET {base}/models` on OpenRouter (or anything at `spec.base_url`)."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec, base_url=spec.base_url, headers=attribution_headers(spec))
        self.cache_breakpoints = needs_cache_breakpoints(spec.model)
        self._routing = routing_object(spec)

    def request_body(self, request: ConversationRequest, *, stream: bool) -> JSONObject:
        body = super().request_body(request, stream=stream)
        if self._routing:
            passed = body.get("provider")
            body["provider"] = {**passed, **self._routing} if isinstance(passed, dict) else dict(self._routing)
        return body


def needs_cache_breakpoints(model: str) -> bool:
    return model.startswith(_EXPLICIT_CACHE_PREFIXES)


def routing_object(spec: ProviderSpec) -> JSONObject:
    """`{order, allow_fallbacks}` with only what is configured (trimmed, blank slugs dropped)."""
    routing: JSONObject = {}
    order = [slug.strip() for slug in spec.routing if slug.strip()]
    if order:
        routing["order"] = order
    if spec.allow_fallbacks is not None:
        routing["allow_fallbacks"] = spec.allow_fallbacks
    return routing


def attribution_headers(spec: ProviderSpec) -> dict[str, str]:
    """`HTTP-Referer` and the app title (`X-OpenRouter-Title`, and the legacy `X-Title`) when configured.
    Values that cannot be sent as a header (control characters) are left out rather than failing every call."""
    headers: dict[str, str] = {}
    if _header_safe(spec.http_referer):
        headers["HTTP-Referer"] = str(spec.http_referer).strip()
    if _header_safe(spec.app_name):
        title = str(spec.app_name).strip()
        headers["X-OpenRouter-Title"] = title
        headers["X-Title"] = title
    return headers


def _header_safe(value: str | None) -> bool:
    return bool(value and value.strip()) and not any(ord(ch) < 32 or ord(ch) == 127 for ch in str(value))
