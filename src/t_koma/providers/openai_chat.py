"""A `Provider` for any server that speaks OpenAI chat completions; OpenRouter and the generic
OpenAI-compatible client are thin subclasses that choose URLs, headers and extra body fields."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from t_koma import __version__
from t_koma.errors import InvalidResponseError, ProviderError
from t_koma.messages import (
    ConversationRequest,
    Finish,
    JSONObject,
    ModelInfo,
    ProviderResponse,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallEvent,
    UsageEvent,
)
from t_koma.providers.base import Provider, ProviderSpec
from t_koma.providers.http import HttpClient
from t_koma.providers.openai_format import build_body, parse_completion, parse_http_error
from t_koma.providers.openai_stream import StreamAssembler

USER_AGENT = f"t-koma/{__version__}"


class OpenAIChatProvider(Provider):
    """`POST {base}{chat_path}` (streaming and not) and `GET {base}{models_path}` over one `HttpClient`."""

    cache_breakpoints: bool = False
    """Whether to mark prompt-cache breakpoints (`cache_control`) in the body."""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        base_url: str,
        headers: Mapping[str, str],
        chat_path: str = "/chat/completions",
        models_path: str = "/models",
    ) -> None:
        super().__init__(spec)
        self._secrets = (spec.api_key,) if spec.api_key else ()
        self._chat_path = chat_path
        self._models_path = models_path
        all_headers = {"User-Agent": USER_AGENT}
        if spec.api_key:
            all_headers["Authorization"] = f"Bearer {spec.api_key}"
        all_headers.update(headers)
        self._http = HttpClient(
            base_url=base_url,
            headers=all_headers,
            timeouts=spec.timeouts,
            provider=spec.kind,
            parse_error=self._parse_error,
            secrets=self._secrets,
        )

    @property
    def chat_url(self) -> str:
        return self._http.base_url + self._chat_path

    def _parse_error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
        return parse_http_error(status, raw, headers, provider=self.name, secrets=self._secrets)

    def request_body(self, request: ConversationRequest, *, stream: bool) -> JSONObject:
        """The JSON body for one call; subclasses add their upstream's own fields."""
        return build_body(
            request,
            kind=self.spec.kind,
            model=self.spec.model,
            stream=stream,
            reasoning=self.spec.reasoning,
            cache_breakpoints=self.cache_breakpoints,
            default_max_tokens=self.spec.max_tokens,
        )

    async def complete(self, request: ConversationRequest) -> ProviderResponse:
        body = self.request_body(request, stream=False)
        async with self._http.request("POST", self._chat_path, body) as response:
            data = await self._http.read_json(response)
        return parse_completion(data, provider=self.name, requested_model=self.spec.model, secrets=self._secrets)

    async def stream(self, request: ConversationRequest) -> AsyncIterator[StreamEvent]:
        body = self.request_body(request, stream=True)
        assembler = StreamAssembler(provider=self.name, requested_model=self.spec.model, secrets=self._secrets)
        try:
            async with self._http.request("POST", self._chat_path, body) as response:
                if response.content_type == "application/json":  # a server that ignored `stream: true`
                    data = await self._http.read_json(response)
                    parsed = parse_completion(
                        data, provider=self.name, requested_model=self.spec.model, secrets=self._secrets
                    )
                    for event in events_of(parsed):
                        yield event
                    return
                # Closed here, not left to the loop's async-generator finaliser: returning at [DONE] would
                # otherwise cost a thread-safe wake-up (two system calls) and a task per stream.
                async with aclosing(self._http.iter_sse(response)) as events:
                    async for sse in events:
                        for event in assembler.feed(sse.data):
                            yield event
                        if assembler.done:
                            break
                if assembler.done:
                    await self._http.finish_body(response)  # keeps the connection for the next call
                    return
                for event in assembler.end():
                    yield event
        except ProviderError as exc:
            if not exc.partial_text:
                exc.partial_text = assembler.partial_text
            raise

    async def list_models(self) -> list[ModelInfo]:
        async with self._http.request("GET", self._models_path) as response:
            data = await self._http.read_json(response)
        return parse_models(data, provider=self.name)

    async def aclose(self) -> None:
        await self._http.aclose()


def events_of(response: ProviderResponse) -> list[StreamEvent]:
    """The events a stream of `response` would have produced (for a non-streamed body): its readable reasoning,
    its text, its tool calls, usage, `Finish`."""
    events: list[StreamEvent] = []
    reasoning = response.reasoning_text
    if reasoning:
        events.append(ReasoningDelta(reasoning))
    if response.text:
        events.append(TextDelta(response.text))
    events.extend(ToolCallEvent(call) for call in response.tool_calls)
    if response.usage is not None:
        events.append(UsageEvent(response.usage))
    events.append(Finish(response))
    return events


def parse_models(body: Any, *, provider: str) -> list[ModelInfo]:
    """`{data: [...]}` from `GET /models` → `ModelInfo`s in upstream order. Understands OpenRouter's entries
    (pricing as strings of USD per token) and the bare `{id}` entries of other OpenAI-compatible servers."""
    entries = body.get("data") if isinstance(body, Mapping) else body
    if not isinstance(entries, list):
        raise InvalidResponseError(f"{provider}: model list has no 'data' array", provider=provider)
    return [model for model in (_model_info(entry) for entry in entries) if model is not None]


def _model_info(entry: Any) -> ModelInfo | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str) or not entry["id"]:
        return None
    pricing = entry.get("pricing")
    pricing = pricing if isinstance(pricing, Mapping) else {}
    top_provider = entry.get("top_provider")
    context = entry.get("context_length") or entry.get("max_model_len")
    if context is None and isinstance(top_provider, Mapping):
        context = top_provider.get("context_length")
    parameters = entry.get("supported_parameters")
    return ModelInfo(
        id=entry["id"],
        name=str(entry.get("name") or entry["id"]),
        description=str(entry.get("description") or ""),
        context_length=context if isinstance(context, int) and not isinstance(context, bool) else None,
        prompt_price=_price(pricing.get("prompt")),
        completion_price=_price(pricing.get("completion")),
        supported_parameters=tuple(str(p) for p in parameters) if isinstance(parameters, list) else (),
    )


def _price(value: Any) -> float | None:
    """USD per token; OpenRouter sends strings, and "-1" for routers whose price varies (→ None)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        price = float(value)
    except ValueError:
        return None
    return price if price >= 0 else None
