"""`bench/RESULTS.md` from a run's `Results`: the machine, the verdict against issue 7's targets (same-run ratios
against the LiteLLM proxy), then every table, the component benchmarks verbatim and the soak."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from bench.results import Results, SoakResult
from bench.side_by_side import HttpRow

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
DIRECT, TKOMA, LITELLM = "direct", "t-koma", "LiteLLM"
FLAT_MB_PER_MIN = 1.0
"""The soak's RSS counts as flat when it grows by at most this much per minute after the warm-up."""
STARVED = 10.0
"""WebSocket turns count as starved by the `/v1` load when their median is this many times the `/v1` median."""


def _f(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:,.{digits}f}"


def _row(rows: list[HttpRow], target: str, mode: str, concurrency: int) -> HttpRow | None:
    return next((r for r in rows if (r.target, r.mode, r.concurrency) == (target, mode, concurrency)), None)


def added(rows: list[HttpRow], target: str, mode: str, concurrency: int, attr: str = "p50_ms") -> float | None:
    row, direct = _row(rows, target, mode, concurrency), _row(rows, DIRECT, mode, concurrency)
    if row is None or direct is None or getattr(row, attr) is None or getattr(direct, attr) is None:
        return None
    return float(getattr(row, attr) - getattr(direct, attr))


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**MISSED**")


def verdicts(results: Results) -> list[str]:
    rows = results.http
    lines = ["| target | measured (same run) | result |", "|---|---|---|"]
    for mode in ("json", "stream"):
        for concurrency in sorted({r.concurrency for r in rows if r.mode == mode}):
            ours, theirs = added(rows, TKOMA, mode, concurrency), added(rows, LITELLM, mode, concurrency)
            if ours is None or theirs is None:
                continue
            ratio = theirs / ours if ours > 0 else math.inf
            lines.append(
                f"| median added latency ≤ 1/8 of LiteLLM's ({mode}, c={concurrency}) | t-koma {_f(ours, 2, True)} ms "
                f"vs LiteLLM {_f(theirs, 2, True)} ms → 1/{_f(ratio, 1)} | {_verdict(ratio >= 8)} |"
            )
    for mode in ("json", "stream"):
        ours_row, theirs_row = _row(rows, TKOMA, mode, 200), _row(rows, LITELLM, mode, 200)
        if ours_row is None or theirs_row is None:
            continue
        ratio = ours_row.rps / theirs_row.rps if theirs_row.rps else math.inf
        lines.append(
            f"| ≥ 5× LiteLLM's requests/s at 200 concurrent, 0 errors ({mode}) | {_f(ours_row.rps, 0)} vs "
            f"{_f(theirs_row.rps, 0)} req/s → {_f(ratio, 1)}×; errors {ours_row.errors} vs {theirs_row.errors} "
            f"| {_verdict(ratio >= 5 and ours_row.errors == 0)} |"
        )
    ttft = added(rows, TKOMA, "stream", 1, "ttft_p50_ms")
    if ttft is not None:
        lines.append(
            f"| streaming adds ≤ 1 ms to time-to-first-token (c=1, p50) | {_f(ttft, 2, True)} ms "
            f"(LiteLLM {_f(added(rows, LITELLM, 'stream', 1, 'ttft_p50_ms'), 2, True)} ms) | {_verdict(ttft <= 1.0)} |"
        )
    if results.idle is not None:
        idle = results.idle
        lines.append(
            f"| {idle.connections:,} idle WebSocket connections ≤ 100 MB | "
            f"gateway RSS {_f(idle.rss_with_idle_mb, 1)} MB "
            f"({_f(idle.rss_before_mb, 1)} MB before, {_f(idle.kb_per_connection, 1)} KB per connection) "
            f"| {_verdict(idle.rss_with_idle_mb <= 100)} |"
        )
    if results.soak is not None:
        soak = results.soak
        flat = abs(soak.slope_mb_per_min) <= FLAT_MB_PER_MIN
        lines.append(
            f"| soak: {soak.clients} concurrent streaming chats for {soak.seconds:.0f} s, 0 errors, RSS flat "
            f"(≤ {FLAT_MB_PER_MIN:g} MB/min after warm-up) | {soak.errors} errors in {soak.turns:,} turns; RSS slope "
            f"after {soak.warmup_s:.0f} s warm-up {_f(soak.slope_mb_per_min, 2, True)} MB/min "
            f"| {_verdict(soak.errors == 0 and flat)} |"
        )
    return lines


def http_table(rows: list[HttpRow], mode: str) -> list[str]:
    stream = mode == "stream"
    head = "| c | target | p50 ms | p99 ms | added p50 | added p99 |"
    head += " TTFT p50 | TTFT p99 | added TTFT p50 |" if stream else ""
    head += " req/s | errors | CPU ms/req | RSS MB (peak) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in [r for r in rows if r.mode == mode]:
        c = row.concurrency
        line = (
            f"| {c} | {row.target} | {_f(row.p50_ms)} | {_f(row.p99_ms)} | "
            f"{_f(added(rows, row.target, mode, c), 2, True) if row.target != DIRECT else ''} | "
            f"{_f(added(rows, row.target, mode, c, 'p99_ms'), 2, True) if row.target != DIRECT else ''} |"
        )
        if stream:
            ttft_added = added(rows, row.target, mode, c, "ttft_p50_ms") if row.target != DIRECT else None
            line += f" {_f(row.ttft_p50_ms)} | {_f(row.ttft_p99_ms)} | {_f(ttft_added, 2, True)} |"
        rss = f"{_f(row.rss_mb, 1)} ({_f(row.peak_rss_mb, 1)})" if row.rss_mb is not None else "–"
        line += f" {_f(row.rps, 0)} | {row.errors} | {_f(row.cpu_ms_per_request)} | {rss} |"
        lines.append(line)
    return lines


def _section(title: str, lines: Iterable[str]) -> list[str]:
    return ["", f"## {title}", "", *lines]


def soak_lines(soak: SoakResult) -> list[str]:
    return [
        f"`python -m bench.soak` on {soak.date}: {soak.clients} clients ({soak.ws_clients} WebSocket chat sessions, "
        f"{soak.v1_clients} `/v1` streaming clients), each in a loop of streamed turns for {soak.seconds:.0f} s.",
        "",
        "| clients | turns | errors | turns/s | turn p50 ms | turn p99 ms |",
        "|---|---|---|---|---|---|",
        f"| all {soak.clients} | {soak.turns:,} | {soak.errors} | {_f(soak.turns_per_s, 0)} | {_f(soak.turn_p50_ms)} | "
        f"{_f(soak.turn_p99_ms)} |",
        f"| {soak.ws_clients} WebSocket | {soak.ws_turns:,} | | | {_f(soak.ws_turn_p50_ms)} | "
        f"{_f(soak.ws_turn_p99_ms)} |",
        f"| {soak.v1_clients} `/v1` stream | {soak.v1_turns:,} | | | {_f(soak.v1_turn_p50_ms)} | "
        f"{_f(soak.v1_turn_p99_ms)} |",
        "",
        f"Gateway RSS: {_f(soak.rss_start_mb, 1)} MB at the start → {_f(soak.rss_end_mb, 1)} MB at the end (max "
        f"{_f(soak.rss_max_mb, 1)} MB), sampled every second; slope after the {soak.warmup_s:.0f} s warm-up, by least "
        f"squares over {soak.seconds - soak.warmup_s:.0f} s: **{_f(soak.slope_mb_per_min, 2, True)} MB/min**.",
        *starvation(soak),
        *([f"\nErrors (first ones): {'; '.join(soak.error_examples)}"] if soak.error_examples else []),
    ]


def starvation(soak: SoakResult) -> list[str]:
    """A warning when the WebSocket chat turns were starved by the `/v1` streams of the same soak."""
    if not (soak.ws_turns and soak.v1_turns) or soak.ws_turn_p50_ms < STARVED * soak.v1_turn_p50_ms:
        return []
    return [
        "",
        f"**Unfair under mixed load:** the WebSocket agent turns took {_f(soak.ws_turn_p50_ms / 1000, 1)} s "
        f"(median) while the `/v1` streams took {_f(soak.v1_turn_p50_ms, 0)} ms, and made "
        f"{soak.ws_turns / max(1, soak.turns):.1%} of the turns — the pass-through load starves the agent path.",
    ]


def markdown(results: Results) -> str:
    m, s = results.machine, results.settings
    out = [
        "# Benchmarks: t-koma side by side with the LiteLLM proxy",
        "",
        f"Generated by `python -m bench{' --quick' if s.quick else ''}` on {m.date} in {results.duration_s:.0f} s "
        f"(commit `{m.commit}`). Machine: {m.cpu}, {m.cores} cores, {m.memory_gb} GB RAM, {m.kernel}, "
        f"Python {m.python}. Versions: " + ", ".join(f"{k} {v}" for k, v in m.versions.items()) + ", LiteLLM "
        f"{results.litellm_version or 'not run'}.",
        "",
        "Every number below comes from one run on this machine: the same fake upstream, the same aiohttp load "
        "client, interleaved rounds (direct → t-koma → LiteLLM) after a warm-up of each. *Added* = the target's "
        "percentile minus the direct call's. The load client, the fake upstream and the proxy under test share the "
        "machine's cores, so absolute numbers are pessimistic; the ratios are what the targets are about.",
    ]
    out += [f"\n> {note}" for note in results.notes]
    out += _section("Verdict against the targets (issue 7)", verdicts(results))
    for mode, title in (("json", "non-streaming"), ("stream", "streaming")):
        if any(r.mode == mode for r in results.http):
            out += _section(f"`POST /v1/chat/completions`, {title}", http_table(results.http, mode))
    out += _section("How it was measured", settings_lines(results))
    if results.ws is not None:
        ws = results.ws
        out += _section(
            "WebSocket chat sessions (t-koma only)",
            [
                f"{ws.sessions} connections at once, each running {ws.turns_per_session} streamed chat turns in its "
                "own session (a real agent turn: SQLite writes, history, the fallback chain).",
                "",
                "| turns | errors | first text_delta p50 / p99 ms | turn p50 / p99 ms | turns/s | RSS MB (peak) |",
                "|---|---|---|---|---|---|",
                f"| {ws.turns:,} | {ws.errors} | {_f(ws.first_delta_p50_ms)} / {_f(ws.first_delta_p99_ms)} | "
                f"{_f(ws.turn_p50_ms)} / {_f(ws.turn_p99_ms)} | {_f(ws.turns_per_s, 0)} | {_f(ws.rss_mb, 1)} "
                f"({_f(ws.peak_rss_mb, 1)}) |",
            ],
        )
    if results.idle is not None:
        idle = results.idle
        out += _section(
            "Idle WebSocket connections",
            [
                f"{idle.connections:,} connections opened (hello received) and held: gateway RSS "
                f"{_f(idle.rss_before_mb, 1)} MB → {_f(idle.rss_with_idle_mb, 1)} MB, "
                f"{_f(idle.kb_per_connection, 1)} KB per connection."
            ],
        )
    if results.startup is not None:
        out += _section("CLI start-up", startup_lines(results))
    if results.soak is not None:
        out += _section("Soak", soak_lines(results.soak))
    for run in results.components:
        out += _section(
            f"Component benchmark: {run.name}",
            [f"`{run.command}` (exit {run.returncode}, {run.seconds:.1f} s):", "", "```", run.output.rstrip(), "```"],
        )
    return "\n".join(out) + "\n"


def settings_lines(results: Results) -> list[str]:
    s = results.settings
    ready = f", ready after {results.litellm_ready_s:.1f} s" if results.litellm_ready_s is not None else ""
    return [
        f"- Fake upstream: `bench/fake_upstream.py --latency-ms {s.latency_ms:g} --chunks {s.chunks} "
        f"--chunk-delay-ms {s.chunk_delay_ms:g}` (aiohttp + uvloop, pre-rendered replies), its own process.",
        "- t-koma: `t-koma gateway` (uvicorn + httptools + uvloop, one process), model alias `bench` → the fake "
        "as an OpenRouter model; started by `bench/gateway.py`'s `start_gateway`.",
        f"- LiteLLM {results.litellm_version or '(not run)'}: `litellm --host 127.0.0.1 --model openai/fake "
        f"--api_base <fake>/v1 --num_workers 1`, offline (`LITELLM_LOCAL_MODEL_COST_MAP=True`, "
        f"`LITELLM_OFFLINE_MODE=true`){ready}; from the throwaway venv of `bench/litellm_env.sh`.",
        f"- Requests per target, level and round: 100 / 500 / 1,000 at c = 1 / 50 / 200"
        f"{' (÷4 with --quick)' if s.quick else ''}; {s.rounds} interleaved round(s) after a warm-up of a quarter.",
        "- TTFT: time until the first `data:` chunk with non-empty `delta.content` reaches the client. CPU ms/req: "
        "user+system CPU of the serving process tree per request (/proc); RSS: its resident memory after the level.",
    ]


def startup_lines(results: Results) -> list[str]:
    st = results.startup
    assert st is not None
    lines = [
        "| command | median ms | notes |",
        "|---|---|---|",
        f"| `python -c pass` (the interpreter's floor) | {_f(st.python_p50_ms, 0)} | {st.runs} runs |",
        f"| `t-koma --help` | {_f(st.help_p50_ms, 0)} | min {_f(st.help_min_ms, 0)} ms; target ≤ 150 ms |",
    ]
    if st.chat_first_screen_p50_ms is not None:
        lines.append(
            f"| `t-koma chat` until its first screen ({st.chat_screen!r}) | {_f(st.chat_first_screen_p50_ms, 0)} | "
            f"max {_f(st.chat_first_screen_max_ms, 0)} ms over {st.chat_runs} runs in a pty; target ≤ 1 s |"
        )
    if st.chat_note:
        lines.append(f"\n{st.chat_note}")
    return lines


def write(results: Results, path: Path = RESULTS_MD) -> Path:
    path.write_text(markdown(results))
    return path
