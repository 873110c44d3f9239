"""Reasoning across providers: how a `ReasoningConfig` becomes each upstream's request field, and which stored
reasoning goes back to which model.

Sending reasoning back is what keeps a tool loop alive on Gemini 3 (OpenRouter `reasoning_details`) and on
Claude with thinking (signed `thinking` blocks), and what keeps GPT-5-class models from re-reasoning every step.
Reasoning is only sent where it can be verified (docs/reasoning.md, "Which reasoning goes back"):

- `openrouter` items go back to OpenRouter models of the same author (`google/…` items to `google/…` models);
- `anthropic` blocks (their signatures are Anthropic's) go back only to the native Anthropic API, same model;
- `openai` text (`reasoning_content`) goes back only to an OpenAI-compatible server, same model, and only on
  assistant messages with tool calls (DeepSeek requires it there and ignores it elsewhere).

Anything else is dropped from the request (never from the store), so foreign reasoning never fails a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from t_koma.messages import (
    JSONObject,
    Message,
    ReasoningBlock,
    ReasoningConfig,
    ReasoningEffort,
    ReasoningKind,
    ReasoningOrigin,
)
from t_koma.providers.base import ProviderKind

ANTHROPIC_BUDGETS: Mapping[ReasoningEffort, int] = {
    "minimal": 1024,
    "low": 4096,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
}
"""Anthropic `budget_tokens` for each effort level (`none` turns thinking off)."""
DEFAULT_ANTHROPIC_BUDGET = ANTHROPIC_BUDGETS["medium"]
"""The budget for `enabled = true` with neither effort nor max_tokens."""
MIN_ANTHROPIC_BUDGET = 1024
ANSWER_ROOM_TOKENS = 4096
"""When the request's `max_tokens` is not above the thinking budget, it becomes budget + this (room to answer)."""

_ORIGIN_OF_KIND: Mapping[ProviderKind, ReasoningOrigin] = {
    "openrouter": "openrouter",
    "anthropic": "anthropic",
    "openai_compatible": "openai",
}


def effective_reasoning(configured: ReasoningConfig | None, override: ReasoningConfig | None) -> ReasoningConfig:
    """The model's configured reasoning with a request's one-off override on top."""
    return (configured or ReasoningConfig()).overridden_by(override)


# --- request fields --------------------------------------------------------------------------------------


def openrouter_reasoning(config: ReasoningConfig) -> JSONObject | None:
    """OpenRouter's unified `reasoning` object with exactly what is configured (None when nothing is)."""
    out = _present(
        effort=config.effort,
        max_tokens=config.max_tokens if config.effort is None else None,  # one of the two, effort first
        exclude=config.exclude,
        enabled=config.enabled,
    )
    return out or None


def openai_reasoning_effort(config: ReasoningConfig) -> ReasoningEffort | None:
    """`reasoning_effort` for an OpenAI-compatible server: the configured effort (`none` included), `none` when
    reasoning is turned off with `enabled = false`; a bare budget has no equivalent there (config refuses it)."""
    if config.effort is not None:
        return config.effort
    if config.enabled is False:
        return "none"
    return None


def anthropic_budget(config: ReasoningConfig) -> int | None:
    """Anthropic's `thinking.budget_tokens`, or None when thinking stays off (not asked for, or turned off)."""
    if not config.on:
        return None
    if config.max_tokens is not None:
        return max(MIN_ANTHROPIC_BUDGET, config.max_tokens)
    if config.effort is not None and config.effort != "none":
        return ANTHROPIC_BUDGETS[config.effort]
    return DEFAULT_ANTHROPIC_BUDGET


def max_tokens_with_budget(max_tokens: int, budget: int) -> int:
    """The API wants `max_tokens` above the thinking budget: raised to budget + `ANSWER_ROOM_TOKENS` when not."""
    return max_tokens if max_tokens > budget else budget + ANSWER_ROOM_TOKENS


# --- what goes back where --------------------------------------------------------------------------------


def verifiable_by(kind: ProviderKind, model: str, blocks: Iterable[ReasoningBlock]) -> list[ReasoningBlock]:
    """The blocks a `kind`/`model` target can verify, in their order (see the module docstring)."""
    origin = _ORIGIN_OF_KIND[kind]
    return [block for block in blocks if block.origin == origin and _same_source(kind, block.model, model)]


def _same_source(kind: ProviderKind, produced_by: str | None, target: str) -> bool:
    if produced_by is None:  # sent by a /v1 caller: it knows where its reasoning came from
        return True
    if kind == "openrouter":
        return model_author(produced_by) == model_author(target)
    return produced_by == target


def model_author(model: str) -> str:
    """`google/gemini-3-pro-preview` → `google` (OpenRouter IDs are `author/slug[:variant]`)."""
    return model.split("/", 1)[0].lstrip("~").lower() if "/" in model else model.lower()


def tool_loop_keeps_thinking(messages: Sequence[Message], model: str) -> bool:
    """Whether Anthropic thinking may stay on for a request: when the conversation ends inside a tool loop, the
    assistant message holding its calls must start with a thinking block this model signed. A loop that another
    model started (a fallback, a `/model` switch) has none, and Anthropic would refuse the request with 400."""
    if not messages or messages[-1].role != "user" or not messages[-1].tool_results:
        return True
    for message in reversed(messages[:-1]):
        if message.role == "assistant":
            if not message.tool_uses:
                return True
            first = message.content[0] if message.content else None
            return isinstance(first, ReasoningBlock) and bool(verifiable_by("anthropic", model, (first,)))
    return True


def reasoning_detail(block: ReasoningBlock) -> JSONObject:
    """An OpenRouter `reasoning_details` item from a stored block, field for field as it arrived."""
    item: JSONObject = {"type": f"reasoning.{block.kind}"}
    if block.kind == "summary":
        item["summary"] = block.text
    elif block.kind == "text":
        item["text"] = block.text
    item.update(
        _present(data=block.data, signature=block.signature, id=block.id, format=block.format, index=block.index)
    )
    return item


def _present(**fields: Any) -> JSONObject:
    """The fields that have a value (None means "not said" and is left out of the wire object)."""
    return {name: value for name, value in fields.items() if value is not None}


_DETAIL_KINDS: Mapping[str, ReasoningKind] = {
    "reasoning.text": "text",
    "reasoning.summary": "summary",
    "reasoning.encrypted": "encrypted",
}


def block_from_detail(item: Any, model: str | None) -> ReasoningBlock | None:
    """A complete OpenRouter `reasoning_details` item → a block (None for an item that is not an object or of an
    unknown type). `model` is the model that produced it (None when a `/v1` caller sent it back)."""
    if not isinstance(item, Mapping):
        return None
    kind = _DETAIL_KINDS.get(str(item.get("type")))
    if kind is None:
        return None
    readable = item.get("summary") if kind == "summary" else item.get("text")
    index = item.get("index")
    return ReasoningBlock(
        origin="openrouter",
        kind=kind,
        text=readable if isinstance(readable, str) else "",
        signature=_str(item.get("signature")),
        data=_str(item.get("data")),
        id=_str(item.get("id")),
        format=_str(item.get("format")),
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        model=model,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
