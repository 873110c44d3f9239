"""Provider client cost: (1) overhead of one non-streaming `OpenRouterProvider.complete` over a bare aiohttp call
to the same loopback fake OpenRouter, and (2) SSE decoding + chunk assembly throughput on one core, for a plain
stream and, side by side, for a stream whose first half is reasoning (`delta.reasoning` + `reasoning_details`
pieces, as OpenRouter sends Gemini 3's thoughts).

Run: `python bench/providers.py [--calls N] [--chunks N] [--uvloop] [--parse-only]`. The fake runs in a subprocess
so that the client's process has its core to itself. Targets: overhead median ≤ 0.3 ms; ≥ 50,000 chunks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from t_koma.messages import ConversationRequest, Message, SystemBlock  # noqa: E402
from t_koma.providers.base import ProviderSpec  # noqa: E402
from t_koma.providers.openai_format import build_body  # noqa: E402
from t_koma.providers.openai_stream import StreamAssembler  # noqa: E402
from t_koma.providers.openrouter import OpenRouterProvider  # noqa: E402
from t_koma.providers.sse import SSEDecoder  # noqa: E402
from tests.fakes.openrouter_wire import KEEPALIVE, stream_events  # noqa: E402
from tests.fakes.replies import Thought, Usage, text_reply  # noqa: E402

KEY = "sk-or-bench-0000"
SERVER = """
import socket, sys, uvicorn
from tests.fakes.openrouter import FakeOpenRouter
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(128)
print(sock.getsockname()[1], flush=True)
app = FakeOpenRouter()
app.requests = type("Discard", (list,), {"append": lambda self, item: None})()  # keep memory flat
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)).run(sockets=[sock])
"""


def start_fake() -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


def ms(samples_ns: list[int]) -> tuple[float, float]:
    """(median, p99) in milliseconds."""
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return statistics.median(samples_ns) / 1e6, cuts[98] / 1e6


def request() -> ConversationRequest:
    return ConversationRequest(
        system=(SystemBlock("You are t-koma, a helpful agent."),),
        messages=(Message.user("Say hello."),),
    )


async def overhead(url: str, calls: int, warmup: int) -> dict[str, tuple[float, float]]:
    base = url + "/api/v1"
    provider = OpenRouterProvider(
        ProviderSpec(kind="openrouter", model="openai/gpt-4o-mini", base_url=base, api_key=KEY)
    )
    payload = orjson.dumps(build_body(request(), kind="openrouter", model="openai/gpt-4o-mini", stream=False))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bare: list[int] = []
    ours: list[int] = []
    async with aiohttp.ClientSession() as session:
        for i in range(warmup + calls):
            t0 = time.perf_counter_ns()
            async with session.post(base + "/chat/completions", data=payload, headers=headers) as response:
                body = orjson.loads((await response.read()).strip())
            t1 = time.perf_counter_ns()
            result = await provider.complete(request())
            t2 = time.perf_counter_ns()
            assert body["choices"][0]["message"]["content"] == result.text
            if i >= warmup:
                bare.append(t1 - t0)
                ours.append(t2 - t1)
    await provider.aclose()
    diffs = [b - a for a, b in zip(sorted(bare), sorted(ours), strict=True)]
    return {
        "bare aiohttp call": ms(bare),
        "OpenRouterProvider.complete": ms(ours),
        "overhead (quantile diff)": ms(diffs),
    }


def sse_stream(chunks: int, *, reasoning: bool = False) -> tuple[bytes, int]:
    """A real-shaped OpenRouter stream with about `chunks` data chunks (half of them reasoning pieces when
    `reasoning`: readable text repeated in `delta.reasoning` and a `reasoning_details` piece), and its number of
    data events."""
    usage = Usage(cache_read_tokens=100, reasoning_tokens=chunks // 2 if reasoning else None, cost=0.001)
    if reasoning:
        thought = Thought("idea " * (chunks // 2), signature="c2lnbmF0dXJl" * 20)
        reply = text_reply("word " * (chunks // 2), chunk_size=5, usage=usage, reasoning=[thought])
    else:
        reply = text_reply("word " * chunks, chunk_size=5, usage=usage)
    events = list(stream_events(reply, "gen-bench", "google/gemini-3-pro-preview"))
    data_events = sum(event.startswith(b"data:") for event in events)
    return KEEPALIVE + b"".join(events), data_events


def parse_throughput(chunks: int, rounds: int, *, reasoning: bool = False) -> dict[str, float]:
    raw, count = sse_stream(chunks, reasoning=reasoning)
    pieces = [raw[i : i + 4096] for i in range(0, len(raw), 4096)]  # network-sized reads
    best_decode = best_total = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        decoder = SSEDecoder()
        decoded = [event for piece in pieces for event in decoder.feed(piece)]
        t1 = time.perf_counter()
        assembler = StreamAssembler(provider="openrouter", requested_model="google/gemini-3-pro-preview")
        for event in decoded:
            assembler.feed(event.data)
        t2 = time.perf_counter()
        assert assembler.done and len(decoded) == count
        assert bool(assembler.response().reasoning) is reasoning
        best_decode = min(best_decode, t1 - t0)
        best_total = min(best_total, t2 - t0)
    return {
        "SSE decode only": count / best_decode,
        "SSE decode + chunk assembly": count / best_total,
        "chunk assembly only": count / (best_total - best_decode),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--parse-only", action="store_true", help="only the streaming parse throughput")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    if not args.parse_only:
        print_overhead(args.calls, args.warmup)
    print_throughput(args.chunks, args.rounds)


def print_overhead(calls: int, warmup: int) -> None:
    process, url = start_fake()
    try:
        results = asyncio.run(overhead(url, calls, warmup))
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(f"non-streaming call over loopback ({calls} calls, fake OpenRouter in a subprocess)")
    print(f"  {'':<30} {'median ms':>10} {'p99 ms':>10}")
    for label, (median, p99) in results.items():
        print(f"  {label:<30} {median:>10.3f} {p99:>10.3f}")
    verdict = "ok" if results["overhead (quantile diff)"][0] <= 0.3 else "MISSED"
    print(f"  target: overhead median <= 0.300 ms -> {verdict}\n")


def print_throughput(chunks: int, rounds: int) -> None:
    print(f"streaming parse throughput (one core, {chunks} data chunks, best of {rounds})")
    plain = parse_throughput(chunks, rounds)
    thinking = parse_throughput(chunks, rounds, reasoning=True)
    print(f"  {'chunks/s':<30} {'plain':>12} {'half reasoning':>15}")
    for label, rate in plain.items():
        print(f"  {label:<30} {rate:>12,.0f} {thinking[label]:>15,.0f}")
    worst = min(plain["SSE decode + chunk assembly"], thinking["SSE decode + chunk assembly"])
    print(f"  target: >= 50,000 chunks/s -> {'ok' if worst >= 50_000 else 'MISSED'}")


if __name__ == "__main__":
    main()
