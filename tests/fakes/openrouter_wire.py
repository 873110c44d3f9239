"""OpenRouter's wire shapes for the fake server: chunks, completion bodies, error bodies and the catalog, built
from the wire-neutral replies in `tests.fakes.replies`. Shapes follow OpenRouter's docs (streaming, errors,
usage accounting, models) and real captured responses."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from tests.fakes.replies import MidstreamErrorReply, TextReply, Thought, Usage, split_text

KEEPALIVE = b": OPENROUTER PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"
FINISH_REASONS = {"end": "stop", "tool_use": "tool_calls", "max_tokens": "length"}
NATIVE_FINISH_REASONS = {"end": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens"}
GEMINI_REASONING_RAW = (
    "Gemini models require OpenRouter reasoning details to be preserved in each request. Please refer to our docs: "
    "https://openrouter.ai/docs/guides/best-practices/reasoning-tokens#preserving-reasoning-blocks. Upstream error: "
    '{\n  "error": {\n    "code": 400,\n    "message": "Function call is missing a thought_signature in functionCall '
    "parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model "
    'performance.",\n    "status": "INVALID_ARGUMENT"\n  }\n}\n'
)
"""`metadata.raw` of OpenRouter's 400 when a Gemini 3 tool loop comes back without its reasoning details."""


def _model(name: str, model_id: str, context: int, prompt: str, completion: str, tools: bool) -> dict[str, Any]:
    parameters = ["max_tokens", "temperature", "top_p", "stop", "seed"]
    if tools:
        parameters += ["tools", "tool_choice"]
    return {
        "id": model_id,
        "canonical_slug": model_id.split(":")[0],
        "hugging_face_id": "",
        "name": name,
        "created": 1_720_000_000,
        "description": f"{name}, served by the fake upstream.",
        "context_length": context,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0"},
        "top_provider": {"context_length": context, "max_completion_tokens": 16384, "is_moderated": False},
        "per_request_limits": None,
        "supported_parameters": parameters,
    }


DEFAULT_MODELS: tuple[dict[str, Any], ...] = (
    _model("OpenAI: GPT-4o-mini", "openai/gpt-4o-mini", 128000, "0.00000015", "0.0000006", True),
    _model("Anthropic: Claude Sonnet 4.5", "anthropic/claude-sonnet-4.5", 1000000, "0.000003", "0.000015", True),
    _model("Mistral: Mistral 7B Instruct", "mistralai/mistral-7b-instruct", 32768, "0.000000028", "0.000000054", False),
    _model("Google: Gemini 2.5 Flash", "google/gemini-2.5-flash", 1048576, "0.0000003", "0.0000025", True),
    _model("Meta: Llama 3.3 70B Instruct (free)", "meta-llama/llama-3.3-70b-instruct:free", 65536, "0", "0", True),
    _model("MoonshotAI: Kimi K2.5", "moonshotai/kimi-k2.5", 262144, "0.0000006", "0.0000025", True),
    _model("Auto Router", "openrouter/auto", 2000000, "-1", "-1", False),
)


def compat_models(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bare shape plain OpenAI-compatible servers return from `/v1/models`."""
    return [{"id": m["id"], "object": "model", "created": m.get("created", 0), "owned_by": "fake"} for m in models]


def error_body(status: int, message: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        error["metadata"] = dict(metadata)
    return {"error": error, "user_id": "user_fake"}


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenRouter's usage object; optional fields the reply leaves None are left off entirely."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if usage.cost is not None:
        out["cost"] = usage.cost
        out["is_byok"] = False
    prompt_details: dict[str, Any] = {}
    if usage.cache_read_tokens is not None:
        prompt_details["cached_tokens"] = usage.cache_read_tokens
    if usage.cache_creation_tokens is not None:
        prompt_details["cache_write_tokens"] = usage.cache_creation_tokens
    if prompt_details:
        out["prompt_tokens_details"] = {**prompt_details, "audio_tokens": 0}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens, "image_tokens": 0}
    return out


def chunk(
    generation_id: str,
    model: str,
    delta: Mapping[str, Any],
    *,
    finish: str | None = None,
    native_finish: str | None = None,
    usage: Usage | None = None,
    provider: str | None = "FakeProvider",
) -> bytes:
    data: dict[str, Any] = {
        "id": generation_id,
        "provider": provider,
        "model": model,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "choices": [
            {
                "index": 0,
                "delta": dict(delta),
                "finish_reason": finish,
                "native_finish_reason": native_finish,
                "logprobs": None,
            }
        ],
    }
    if usage is not None:
        data["usage"] = usage_json(usage)
    return b"data: " + orjson.dumps(data) + b"\n\n"


def text_chunks(
    text: str, size: int, generation_id: str, model: str, provider: str | None = "FakeProvider"
) -> Iterator[bytes]:
    yield chunk(generation_id, model, {"role": "assistant", "content": ""}, provider=provider)
    for piece in split_text(text, size):
        yield chunk(generation_id, model, {"role": "assistant", "content": piece}, provider=provider)


def reasoning_details(thoughts: tuple[Thought, ...], generation_id: str) -> list[dict[str, Any]]:
    """The complete `reasoning_details` items for `thoughts`: a `reasoning.text` item (text, signature) or a
    `reasoning.encrypted` one (data) each, with an id, the format and its index."""
    items: list[dict[str, Any]] = []
    for index, thought in enumerate(thoughts):
        item: dict[str, Any] = {"type": "reasoning.encrypted" if thought.encrypted is not None else "reasoning.text"}
        if thought.encrypted is not None:
            item["data"] = thought.encrypted
        else:
            item["text"] = thought.text
            if thought.signature is not None:
                item["signature"] = thought.signature
        item.update(id=f"rs-{generation_id}-{index}", format=thought.format, index=index)
        items.append(item)
    return items


def detail_pieces(item: Mapping[str, Any], size: int) -> list[dict[str, Any]]:
    """How OpenRouter streams one item: a `reasoning.text` item's text in `size`-character pieces sharing its
    index (the id in the first), then a text-less piece with the signature; any other item whole."""
    if item["type"] != "reasoning.text":
        return [dict(item)]
    common = {"type": item["type"], "format": item["format"], "index": item["index"]}
    pieces = [{**common, "text": text} for text in split_text(item["text"], size)]
    if "signature" in item or not pieces:
        pieces.append({**common, "signature": item["signature"]} if "signature" in item else dict(common))
    pieces[0]["id"] = item["id"]
    return pieces


def reasoning_chunks(reply: TextReply, generation_id: str, model: str) -> Iterator[bytes]:
    """The reply's reasoning, streamed: each piece as `delta.reasoning_details` with its readable text repeated in
    `delta.reasoning` (null for opaque pieces), as OpenRouter does."""
    for item in reasoning_details(reply.reasoning, generation_id):
        for piece in detail_pieces(item, reply.chunk_size):
            delta = {"role": "assistant", "content": "", "reasoning": piece.get("text"), "reasoning_details": [piece]}
            yield chunk(generation_id, model, delta, provider=reply.upstream_provider)


def stream_events(reply: TextReply, generation_id: str, model: str) -> Iterator[bytes]:
    """A whole successful stream: reasoning deltas, text deltas (a keep-alive comment after the first), tool-call
    deltas (id and name only in a call's first delta, arguments in pieces), the finish chunk, then OpenRouter's
    usage chunk that repeats the choice with an empty delta, then `[DONE]`."""
    model = reply.model or model
    provider = reply.upstream_provider
    yield from reasoning_chunks(reply, generation_id, model)
    for number, event in enumerate(text_chunks(reply.text, reply.chunk_size, generation_id, model, provider)):
        yield event
        if number == 1 and reply.keepalive:
            yield KEEPALIVE
    for index, call in enumerate(reply.tool_calls):
        first = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        yield chunk(generation_id, model, {"role": "assistant", "tool_calls": [first]}, provider=provider)
        for piece in split_text(call.arguments, reply.chunk_size):
            more = {"index": index, "function": {"arguments": piece}}
            yield chunk(generation_id, model, {"role": "assistant", "tool_calls": [more]}, provider=provider)
    finish, native = FINISH_REASONS[reply.stop], NATIVE_FINISH_REASONS[reply.stop]
    yield chunk(
        generation_id,
        model,
        {"role": "assistant", "content": ""},
        finish=finish,
        native_finish=native,
        provider=provider,
    )
    if reply.usage is not None:
        yield chunk(
            generation_id,
            model,
            {"role": "assistant", "content": ""},
            finish=finish,
            native_finish=native,
            usage=reply.usage,
            provider=provider,
        )
    yield DONE


def completion_body(reply: TextReply, generation_id: str, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None, "reasoning": None}
    if reply.reasoning:
        message["reasoning"] = "\n\n".join(thought.text for thought in reply.reasoning if thought.text) or None
        message["reasoning_details"] = reasoning_details(reply.reasoning, generation_id)
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "index": index,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    body: dict[str, Any] = {
        "id": generation_id,
        "provider": reply.upstream_provider,
        "model": reply.model or model,
        "object": "chat.completion",
        "created": int(time.time()),
        "choices": [
            {
                "logprobs": None,
                "finish_reason": FINISH_REASONS[reply.stop],
                "native_finish_reason": NATIVE_FINISH_REASONS[reply.stop],
                "index": 0,
                "message": message,
            }
        ],
    }
    if reply.usage is not None:
        body["usage"] = usage_json(reply.usage)
    return body


def midstream_error_body(
    reply: MidstreamErrorReply, generation_id: str, model: str, *, chunk: bool = False
) -> dict[str, Any]:
    """Streaming: the post-commit error chunk (top-level `error`, a choice with `finish_reason: "error"`).
    Non-streaming: a 200 body whose choice carries the partial text, `finish_reason: "error"` and `error`."""
    error: dict[str, Any] = {"code": reply.code, "message": reply.message}
    error["metadata"] = dict(reply.metadata) if reply.metadata is not None else {"error_type": "provider_unavailable"}
    if chunk:
        return {
            "id": generation_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "provider": reply.upstream_provider,
            "error": error,
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": None}],
        }
    return {
        "id": generation_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "provider": reply.upstream_provider,
        "choices": [
            {
                "index": 0,
                "finish_reason": "error",
                "native_finish_reason": None,
                "message": {"role": "assistant", "content": reply.partial_text},
                "error": error,
            }
        ],
    }
