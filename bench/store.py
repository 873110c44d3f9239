"""Store write throughput: what the engine pays per step (append_message + record_usage, each committed).

Run: `python bench/store.py [--steps N] [--uvloop] [--db PATH]`. Prints write ops/s and per-op p50/p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from t_koma.messages import ProviderUsage, TextBlock, ToolUseBlock
from t_koma.store.base import UsageRecord
from t_koma.store.sqlite import SqliteStore


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1e6, cuts[98] / 1e6


async def run(path: Path, steps: int, warmup: int) -> None:
    store = await SqliteStore.open(path)
    session = await store.create_session("bench")
    turn = await store.begin_turn(session.id)
    content = (
        TextBlock("Let me look at the files in the workspace first. " * 8),
        ToolUseBlock("call_0", "run_shell_command", {"command": "ls -la && git status"}),
    )
    usage = ProviderUsage(1200, 180, cache_read_tokens=900, cache_creation_tokens=None, reasoning_tokens=40, cost=3e-4)
    appends: list[int] = []
    usages: list[int] = []
    step_times: list[int] = []
    started = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        t0 = time.perf_counter_ns()
        message = await store.append_message(session.id, "assistant", content, model="a/b", turn_id=turn)
        t1 = time.perf_counter_ns()
        await store.record_usage(UsageRecord(session.id, message.id, "openrouter", "a/b", usage, 850.0))
        t2 = time.perf_counter_ns()
        if i >= warmup:
            appends.append(t1 - t0)
            usages.append(t2 - t1)
            step_times.append(t2 - t0)
    elapsed = time.perf_counter() - started
    await store.finish_turn(turn, "done", "end_turn")
    await store.close()

    print(f"store write throughput ({steps} steps, file {path})")
    print(f"  steps/s: {steps / elapsed:,.0f}   write ops/s: {2 * steps / elapsed:,.0f}")
    for label, samples in (("append_message", appends), ("record_usage", usages), ("step (both)", step_times)):
        p50, p99 = percentiles(samples)
        print(f"  {label:<15} p50 {p50:.3f} ms   p99 {p99:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--db", type=Path, default=None, help="database file (default: a fresh temporary file)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the gateway does")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "koma.sqlite3"
        if args.uvloop:
            import uvloop

            uvloop.run(run(path, args.steps, args.warmup))
        else:
            asyncio.run(run(path, args.steps, args.warmup))


if __name__ == "__main__":
    main()
