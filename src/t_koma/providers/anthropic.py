"""The native Anthropic client: `POST {base}/v1/messages` (streaming and not) and `GET {base}/v1/models`.

Wire details live in `anthropic_wire` (bodies, usage, errors) and `anthropic_stream` (streaming events)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any
from urllib.parse import urlencode

import aiohttp

from t_koma.errors import InvalidResponseError, ProviderError, scrub
from t_koma.messages import ConversationRequest, ModelInfo, ProviderResponse, ReasoningConfig, StreamEvent
from t_koma.providers.anthropic_stream import StreamAssembler, events_for_response
from t_koma.providers.anthropic_wire import (
    API_VERSION,
    UPSTREAM_NAME,
    build_body,
    error_from_body,
    error_from_response,
    parse_message,
    parse_model,
)
from t_koma.providers.base import Provider, ProviderSpec
from t_koma.providers.http import HttpClient
from t_koma.providers.reasoning import effective_reasoning

DEFAULT_BASE_URL = "https://api.anthropic.com"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
MODELS_PAGE_LIMIT = 1000
MAX_MODEL_PAGES = 50


class AnthropicProvider(Provider):
    """A Claude model through the Messages API, authenticated with `x-api-key`."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self._secrets: tuple[str, ...] = (spec.api_key,) if spec.api_key else ()
        headers = {"anthropic-version": API_VERSION}
        if spec.api_key:
            headers["x-api-key"] = spec.api_key
        self._http = HttpClient(
            base_url=api_root(spec.base_url or DEFAULT_BASE_URL),
            headers=headers,
            timeouts=spec.timeouts,
            provider="anthropic",
            parse_error=self._parse_error,
            secrets=self._secrets,
        )

    def _parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        return error_from_response(status, body, headers, self._secrets)

    def _reasoning(self, request: ConversationRequest) -> ReasoningConfig:
        return effective_reasoning(self.spec.reasoning, request.reasoning)

    def _body(self, request: ConversationRequest, reasoning: ReasoningConfig, *, stream: bool) -> dict[str, Any]:
        return build_body(self.spec.model, request, stream=stream, max_tokens=self.spec.max_tokens, reasoning=reasoning)

    async def complete(self, request: ConversationRequest) -> ProviderResponse:
        body = self._body(request, self._reasoning(request), stream=False)
        async with self._http.request("POST", MESSAGES_PATH, body) as response:
            data = await self._http.read_json(response)
        return self._message(data)

    async def stream(self, request: ConversationRequest) -> AsyncIterator[StreamEvent]:
        reasoning = self._reasoning(request)
        exclude = reasoning.exclude is True
        assembler = StreamAssembler(self.spec.model, self._secrets, exclude=exclude)
        async with self._http.request("POST", MESSAGES_PATH, self._body(request, reasoning, stream=True)) as response:
            if not _is_event_stream(response):
                message = self._message(await self._http.read_json(response))
                for event in events_for_response(message, exclude=exclude):
                    yield event
                return
            try:
                async with aclosing(self._http.iter_sse(response)) as events:  # see OpenAIChatProvider.stream
                    async for sse in events:
                        for event in assembler.feed(sse):
                            yield event
                        if assembler.done:
                            break
                if assembler.done:
                    await self._http.finish_body(response)  # keeps the connection for the next call
                    return
            except ProviderError as exc:
                exc.partial_text = exc.partial_text or assembler.text
                raise
        raise assembler.unterminated()

    def _message(self, data: Any) -> ProviderResponse:
        if isinstance(data, Mapping) and data.get("type") == "error":
            raise error_from_body(None, data, secrets=self._secrets)
        try:
            return parse_message(data, model=self.spec.model)
        except ValueError:
            preview = scrub(repr(data)[:200], self._secrets)
            raise InvalidResponseError(
                f"Anthropic returned a body that is not a message: {preview}",
                provider="anthropic",
                upstream_provider=UPSTREAM_NAME,
            ) from None

    async def list_models(self) -> list[ModelInfo]:
        """Every page of `GET /v1/models` (newest first, as the API lists them)."""
        models: dict[str, ModelInfo] = {}
        after: str | None = None
        for _ in range(MAX_MODEL_PAGES):
            query = {"limit": str(MODELS_PAGE_LIMIT)} | ({"after_id": after} if after else {})
            async with self._http.request("GET", f"{MODELS_PATH}?{urlencode(query)}") as response:
                data = await self._http.read_json(response)
            if not isinstance(data, Mapping) or not isinstance(data.get("data"), list):
                raise InvalidResponseError(
                    "Anthropic's model list has no `data` array", provider="anthropic", upstream_provider=UPSTREAM_NAME
                )
            for item in data["data"]:
                info = parse_model(item)
                if info is not None:
                    models.setdefault(info.id, info)
            last = data.get("last_id")
            if not data.get("has_more") or not isinstance(last, str) or last == after:
                break
            after = last
        return list(models.values())

    async def aclose(self) -> None:
        await self._http.aclose()


def api_root(base_url: str) -> str:
    """The API root without a trailing `/v1` (users often copy `https://api.anthropic.com/v1`)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _is_event_stream(response: aiohttp.ClientResponse) -> bool:
    return response.content_type == "text/event-stream"
