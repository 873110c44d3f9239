"""`python -m bench`: the side-by-side benchmark suite (t-koma gateway vs the same fake called directly vs the LiteLLM
proxy), writing bench/RESULTS.md and bench/latency.png. About 4–6 minutes on 2 cores; `--quick` about 1."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator

from bench.run_all import SECTIONS, Options, run


@contextlib.contextmanager
def event_loop_runner() -> Iterator[asyncio.Runner]:
    """The load client runs on uvloop when it is there, as the gateway does (less client noise in the numbers)."""
    try:
        import uvloop
    except ImportError:
        runner = asyncio.Runner()
    else:
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner:
        yield runner


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests, fewer sessions and runs")
    parser.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"comma-separated subset of {','.join(SECTIONS)} (the others keep their previous numbers)",
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy even when installed")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fake upstream: delay before each answer")
    parser.add_argument("--chunks", type=int, default=10, help="fake upstream: content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="fake upstream: pause between chunks")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per level (default 2, quick 1)")
    parser.add_argument("--ws-sessions", type=int, default=None, help="concurrent WebSocket chat sessions")
    parser.add_argument("--ws-turns", type=int, default=None, help="streamed turns per WebSocket session")
    parser.add_argument("--idle", type=int, default=1000, help="idle WebSocket connections to hold")
    parser.add_argument("--soak", action="store_true", help="also run the 60 s soak (python -m bench.soak)")
    args = parser.parse_args(argv)
    sections = tuple(SECTIONS)
    if args.only:
        sections = tuple(name.strip() for name in args.only.split(",") if name.strip())
        unknown = [name for name in sections if name not in SECTIONS]
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return Options(
        quick=args.quick,
        sections=sections,
        litellm=not args.no_litellm,
        latency_ms=args.latency_ms,
        chunks=args.chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        rounds=args.rounds,
        ws_sessions=args.ws_sessions,
        ws_turns=args.ws_turns,
        idle=args.idle,
        soak=args.soak,
    )


def main(argv: list[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    with event_loop_runner() as runner:
        runner.run(run(options))


if __name__ == "__main__":
    main()
