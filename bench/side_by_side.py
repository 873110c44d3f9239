"""`/v1/chat/completions` side by side: the fake upstream called directly, through `t-koma gateway` and through
the LiteLLM proxy, with the same client in the same run, non-streaming and streaming, at each concurrency level.
Rounds are interleaved (direct, t-koma, LiteLLM, direct, …) so that drift on the shared machine hits every
target alike; each target is warmed up first. Per target and level: latency p50/p99, TTFT p50/p99 (streams),
requests/s, errors, CPU per request and RSS of the serving process tree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.load import Samples, Target, percentile_ms, run_level
from bench.services import Service, peak_rss_mb, rss_mb, tree_cpu_seconds

LEVELS = (1, 50, 200)
REQUESTS = {1: 100, 50: 500, 200: 1000}
"""Requests per target, level and round (a quarter with --quick)."""


@dataclass
class HttpRow:
    """One target at one mode and concurrency level."""

    target: str
    mode: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rps: float
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    cpu_ms_per_request: float | None = None
    rss_mb: float | None = None
    peak_rss_mb: float | None = None
    error_examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Side:
    """A target and, when it is a process we started, that process (for CPU and memory)."""

    target: Target
    service: Service | None = None


@dataclass
class _Tally:
    samples: Samples = field(default_factory=Samples)
    cpu_s: float = 0.0


async def _measure(
    session: aiohttp.ClientSession, side: Side, stream: bool, concurrency: int, requests: int, tally: _Tally
) -> None:
    pid = side.service.pid if side.service is not None else None
    before = tree_cpu_seconds(pid) if pid is not None else 0.0
    samples = await run_level(session, side.target, stream=stream, concurrency=concurrency, requests=requests)
    if pid is not None:
        tally.cpu_s += tree_cpu_seconds(pid) - before
    tally.samples.extend(samples)


def _row(side: Side, mode: str, concurrency: int, tally: _Tally) -> HttpRow:
    samples = tally.samples
    succeeded = len(samples.latency_ns)
    pid = side.service.pid if side.service is not None else None
    stream = mode == "stream"
    return HttpRow(
        target=side.target.name,
        mode=mode,
        concurrency=concurrency,
        requests=samples.requests,
        errors=samples.errors,
        p50_ms=percentile_ms(samples.latency_ns, 50),
        p99_ms=percentile_ms(samples.latency_ns, 99),
        rps=samples.rps,
        ttft_p50_ms=percentile_ms(samples.ttft_ns, 50) if stream else None,
        ttft_p99_ms=percentile_ms(samples.ttft_ns, 99) if stream else None,
        cpu_ms_per_request=tally.cpu_s * 1000 / succeeded if pid is not None and succeeded else None,
        rss_mb=rss_mb(pid) if pid is not None else None,
        peak_rss_mb=peak_rss_mb(pid) if pid is not None else None,
        error_examples=samples.error_examples,
    )


async def run(
    session: aiohttp.ClientSession,
    sides: list[Side],
    *,
    quick: bool,
    rounds: int,
    levels: tuple[int, ...] = LEVELS,
    modes: tuple[str, ...] = ("json", "stream"),
    report: Callable[[HttpRow], None] = lambda row: None,
) -> list[HttpRow]:
    rows: list[HttpRow] = []
    for mode in modes:
        stream = mode == "stream"
        for concurrency in levels:
            requests = max(concurrency, REQUESTS.get(concurrency, 4 * concurrency) // (4 if quick else 1))
            tallies = {side.target.name: _Tally() for side in sides}
            for side in sides:  # warm-up: connections, caches, lazy imports
                await run_level(session, side.target, stream=stream, concurrency=concurrency, requests=requests // 4)
            for _ in range(rounds):
                for side in sides:
                    await _measure(session, side, stream, concurrency, requests, tallies[side.target.name])
            for side in sides:
                rows.append(_row(side, mode, concurrency, tallies[side.target.name]))
                report(rows[-1])
    return rows


def describe(row: HttpRow) -> str:
    """One progress line."""
    ttft = f"  TTFT {row.ttft_p50_ms:6.2f}/{row.ttft_p99_ms:6.2f}" if row.ttft_p50_ms is not None else ""
    cpu = f"  CPU {row.cpu_ms_per_request:5.2f} ms/req" if row.cpu_ms_per_request is not None else ""
    rss = f"  RSS {row.rss_mb:6.1f} MB" if row.rss_mb is not None else ""
    return (
        f"{row.mode:6} c={row.concurrency:<3} {row.target:14} n={row.requests:<5} p50/p99 {row.p50_ms:7.2f}/"
        f"{row.p99_ms:7.2f} ms{ttft}  {row.rps:7.0f} req/s  errors {row.errors}{cpu}{rss}"
    )
