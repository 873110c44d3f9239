"""The status bar: pure functions from the chat's state to text (no terminal, no I/O), so they are unit-tested.

The bar reads, for example::

    OpenRouter · anthropic/claude-sonnet-4 │ reasoning high │ session 3f2a9c1e │ turn ↑1.2k ↓340 │
    session ↑15k ↓2.1k · 1.2k reasoning │ cache r12k w1.0k 81% │ $0.0123

Cache hit % is `cache read / prompt tokens`. Providers report prompt tokens either including the cached part
(OpenAI / OpenRouter) or excluding it (Anthropic); when the read count exceeds the input count the figures can
only be of the second kind, and the prompt total becomes input + read + write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from t_koma.client.frames import Usage
from t_koma.client.sanitize import terminal_safe

ConnectionState: TypeAlias = Literal["connected", "reconnecting", "disconnected"]

PROVIDER_LABELS = {"anthropic": "Anthropic", "openrouter": "OpenRouter", "openai_compatible": "OpenAI-compatible"}


@dataclass(frozen=True, slots=True)
class StatusState:
    """Everything the status bar shows. `provider`/`model` are None while the default model chain is used."""

    provider: str | None = None
    model: str | None = None
    default_label: str = "default model"
    session_id: str | None = None
    turn: Usage | None = None
    session: Usage = field(default_factory=Usage)
    connection: ConnectionState = "connected"
    busy: bool = False
    notice: str | None = None
    reasoning: str | None = None
    """The `/reasoning` level sent with every message; None = each model's configured one."""


def format_tokens(count: int) -> str:
    """Compact token counts: 950, 1.2k, 15k, 1.2M."""
    if count < 1000:
        return str(count)
    if count < 10_000:
        return f"{count / 1000:.1f}k"
    if count < 1_000_000:
        return f"{count // 1000}k"
    return f"{count / 1_000_000:.1f}M"


def format_cost(cost: float | None) -> str:
    """Dollars: four decimals under $1 (typical turns cost fractions of a cent), two above; below a hundredth of
    a cent, two significant digits so that a cheap model's cost does not read as zero; `$?` when unknown."""
    if cost is None:
        return "$?"
    if 0 < cost < 0.0001:
        return "<$0.000001" if cost < 1e-6 else f"${cost:.6f}".rstrip("0")
    if cost < 1:
        return f"${cost:.4f}"
    return f"${cost:,.2f}"


def cache_hit_percent(usage: Usage) -> float | None:
    """Share of the prompt served from the cache, in percent; None when the provider reported no cache figures."""
    read = usage.cache_read_tokens
    if read is None:
        return None
    write = usage.cache_creation_tokens or 0
    prompt = usage.input_tokens if read + write <= usage.input_tokens else usage.input_tokens + read + write
    if prompt <= 0:
        return None
    return 100.0 * read / prompt


def format_cache(usage: Usage) -> str:
    """`cache r12k w1.0k 81%`, or `cache –` when the provider reported nothing about caching."""
    if usage.cache_read_tokens is None and usage.cache_creation_tokens is None:
        return "cache –"
    read = format_tokens(usage.cache_read_tokens or 0)
    write = format_tokens(usage.cache_creation_tokens or 0)
    hit = cache_hit_percent(usage)
    percent = f" {hit:.0f}%" if hit is not None else ""
    return f"cache r{read} w{write}{percent}"


def format_io(usage: Usage | None) -> str:
    if usage is None:
        return "↑0 ↓0"
    return f"↑{format_tokens(usage.input_tokens)} ↓{format_tokens(usage.output_tokens)}"


def format_reasoning(usage: Usage) -> str | None:
    """`1.2k reasoning`: the reasoning tokens among the output tokens; None when the upstream did not say."""
    if usage.reasoning_tokens is None:
        return None
    return f"{format_tokens(usage.reasoning_tokens)} reasoning"


def model_label(state: StatusState) -> str:
    if state.model is None:
        return state.default_label
    provider = PROVIDER_LABELS.get(state.provider or "", state.provider or "")
    return terminal_safe(f"{provider} · {state.model}" if provider else state.model)  # the upstream names it


def short_id(session_id: str) -> str:
    """The first 8 characters of an ID after its kind prefix (`sess_4db95716…` → `4db95716`)."""
    return session_id.rpartition("_")[2][:8] or session_id[:8]


def session_label(session_id: str | None) -> str:
    return f"session {short_id(session_id)}" if session_id else "new session"


SEPARATOR = " │ "

# Dropped in this order when the bar is wider than the terminal (a wrapped bar is unreadable).
_DROP_ORDER = ("class:status.session", "class:status.turn", "class:status.cache", "class:status.notice")


def status_segments(state: StatusState, width: int | None = None) -> list[tuple[str, str]]:
    """(style class, text) pairs of the bar, in order; the prompt's bottom toolbar styles them. With `width`,
    the least useful parts are left out until the bar fits, and a long model name is shortened last."""
    reasoned = format_reasoning(state.session)
    segments = [
        ("class:status.model", model_label(state)),
        ("class:status.session", session_label(state.session_id)),
        ("class:status.turn", f"turn {format_io(state.turn)}"),
        ("class:status.total", f"session {format_io(state.session)}" + (f" · {reasoned}" if reasoned else "")),
        ("class:status.cache", format_cache(state.session)),
        ("class:status.cost", format_cost(0.0 if state.session == Usage() else state.session.cost)),
    ]
    if state.reasoning is not None:
        segments.insert(1, ("class:status.reasoning", f"reasoning {state.reasoning}"))
    if state.connection != "connected":
        segments.insert(0, ("class:status.warning", f"⚠ {state.connection}"))
    if state.notice:
        segments.append(("class:status.notice", state.notice))
    if width is None:
        return segments
    for style in _DROP_ORDER:
        if _length(segments) < width:
            break
        segments = [segment for segment in segments if segment[0] != style]
    excess = _length(segments) - width + 1
    if excess > 0:
        segments = [
            (style, _shorten(text, excess) if style == "class:status.model" else text) for style, text in segments
        ]
    return segments


def _length(segments: list[tuple[str, str]]) -> int:
    return sum(len(text) for _, text in segments) + len(SEPARATOR) * (len(segments) - 1)


def _shorten(text: str, excess: int) -> str:
    return "…" + text[excess + 1 :] if excess + 1 < len(text) else "…"


def status_text(state: StatusState, width: int | None = None) -> str:
    """The bar as one plain line."""
    return SEPARATOR.join(text for _, text in status_segments(state, width))


def turn_summary(turn: Usage, session: Usage) -> str:
    """The one line printed after each answer: this turn's figures, then the session's cost."""
    parts = [f"{turn.input_tokens:,} in / {turn.output_tokens:,} out"]
    if turn.reasoning_tokens is not None:
        parts.append(f"{turn.reasoning_tokens:,} reasoning")
    if turn.cache_read_tokens is not None or turn.cache_creation_tokens is not None:
        parts.append(format_cache(turn))
    parts.append(f"{format_cost(turn.cost)} (session {format_cost(session.cost)})")
    return "tokens " + " · ".join(parts)
