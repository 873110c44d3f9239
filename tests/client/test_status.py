"""The status bar's text: pure functions of the chat's state."""

from __future__ import annotations

from t_koma.client.frames import Usage
from t_koma.client.status import (
    StatusState,
    cache_hit_percent,
    format_cache,
    format_cost,
    format_tokens,
    status_segments,
    status_text,
    turn_summary,
)


def test_token_counts_are_compact() -> None:
    assert [format_tokens(n) for n in (0, 950, 1000, 1234, 9999, 15_400, 999_999, 1_234_567)] == [
        "0",
        "950",
        "1.0k",
        "1.2k",
        "10.0k",
        "15k",
        "999k",
        "1.2M",
    ]


def test_costs_show_fractions_of_a_cent_and_unknown() -> None:
    assert format_cost(0.0) == "$0.0000"
    assert format_cost(0.00123) == "$0.0012"
    assert format_cost(0.000012) == "$0.000012"  # a cheap model's turn does not read as free
    assert format_cost(0.0000834) == "$0.000083"
    assert format_cost(0.5) == "$0.5000"
    assert format_cost(12.345) == "$12.35"
    assert format_cost(None) == "$?"


def test_cache_hit_when_input_includes_the_cached_part() -> None:
    # OpenAI / OpenRouter count cached tokens inside the prompt tokens.
    assert cache_hit_percent(Usage(input_tokens=1200, cache_read_tokens=1000, cache_creation_tokens=0)) == 1000 / 12


def test_cache_hit_when_input_excludes_the_cached_part() -> None:
    # Anthropic reports uncached input only; read > input can only mean that.
    usage = Usage(input_tokens=100, cache_read_tokens=800, cache_creation_tokens=100)
    assert cache_hit_percent(usage) == 80.0


def test_no_cache_figures_means_no_percentage() -> None:
    assert cache_hit_percent(Usage(input_tokens=100)) is None
    assert format_cache(Usage(input_tokens=100)) == "cache –"
    assert cache_hit_percent(Usage(cache_read_tokens=0)) is None


def test_cache_segment() -> None:
    assert format_cache(Usage(input_tokens=12_000, cache_read_tokens=9_000, cache_creation_tokens=1_000)) == (
        "cache r9.0k w1.0k 75%"
    )


def test_status_bar_with_everything() -> None:
    state = StatusState(
        provider="openrouter",
        model="anthropic/claude-sonnet-4",
        session_id="3f2a9c1e-77aa-4bcd",
        turn=Usage(1200, 340, 1000, 0, cost=0.0021),
        session=Usage(15_000, 2_100, 12_000, 1_000, cost=0.0123),
    )
    assert status_text(state) == (
        "OpenRouter · anthropic/claude-sonnet-4 │ session 3f2a9c1e │ turn ↑1.2k ↓340 │ session ↑15k ↓2.1k │ "
        "cache r12k w1.0k 80% │ $0.0123"
    )


def test_a_narrow_terminal_drops_the_least_useful_parts_first() -> None:
    state = StatusState(
        provider="openrouter",
        model="moonshotai/kimi-k2.5",
        session_id="sess_5c530b6d",
        turn=Usage(1500, 40, 1000, 0, cost=0.0021),
        session=Usage(1500, 40, 1000, 0, cost=0.0021),
    )
    full = status_text(state)
    assert status_text(state, width=len(full) + 1) == full
    assert status_text(state, width=102) == (
        "OpenRouter · moonshotai/kimi-k2.5 │ turn ↑1.5k ↓40 │ session ↑1.5k ↓40 │ cache r1.0k w0 67% │ $0.0021"
    )
    assert status_text(state, width=64) == "OpenRouter · moonshotai/kimi-k2.5 │ session ↑1.5k ↓40 │ $0.0021"
    assert status_text(state, width=40) == "…imi-k2.5 │ session ↑1.5k ↓40 │ $0.0021"
    assert all(len(status_text(state, width=w)) < w for w in range(45, 130))


def test_status_bar_before_anything_happened() -> None:
    assert status_text(StatusState()) == "default model │ new session │ turn ↑0 ↓0 │ session ↑0 ↓0 │ cache – │ $0.0000"


def test_status_bar_warns_while_reconnecting_and_shows_notices() -> None:
    segments = status_segments(StatusState(connection="reconnecting", notice="press Ctrl+C again to quit"))
    assert segments[0] == ("class:status.warning", "⚠ reconnecting")
    assert segments[-1] == ("class:status.notice", "press Ctrl+C again to quit")


def test_session_ids_are_shown_short_without_their_prefix() -> None:
    assert status_text(StatusState(session_id="sess_4db957167aa3493d")).split(" │ ")[1] == "session 4db95716"


def test_turn_summary_line() -> None:
    turn = Usage(1200, 34, 1000, 0, cost=0.0012)
    assert (
        turn_summary(turn, turn + turn) == "tokens 1,200 in / 34 out · cache r1.0k w0 83% · $0.0012 (session $0.0024)"
    )
    assert turn_summary(Usage(5, 6), Usage(5, 6)) == "tokens 5 in / 6 out · $? (session $?)"


def test_reasoning_tokens_in_the_session_segment_and_the_turn_summary() -> None:
    turn = Usage(1200, 340, reasoning_tokens=1234, cost=0.0021)
    state = StatusState(provider="openrouter", model="openai/gpt-5", turn=turn, session=turn + Usage(10, 5))
    assert "│ session ↑1.2k ↓345 · 1.2k reasoning │" in status_text(state)
    assert turn_summary(turn, turn) == "tokens 1,200 in / 340 out · 1,234 reasoning · $0.0021 (session $0.0021)"
    assert "reasoning" not in status_text(StatusState(session=Usage(10, 5)))  # the upstream did not say
    assert "0 reasoning" in turn_summary(Usage(1, 2, reasoning_tokens=0), Usage())  # it said: none


def test_a_reasoning_level_override_is_shown_after_the_model() -> None:
    state = StatusState(provider="anthropic", model="claude-sonnet-4-5", reasoning="high")
    assert status_segments(state)[:2] == [
        ("class:status.model", "Anthropic · claude-sonnet-4-5"),
        ("class:status.reasoning", "reasoning high"),
    ]
    assert all(style != "class:status.reasoning" for style, _ in status_segments(StatusState()))
