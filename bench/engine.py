"""Engine cost: what `Engine.run_turn` adds per step on top of the provider call it makes, SQLite commits included,
and how fast the store takes the writes a step makes.

Run: `python bench/engine.py [--turns N] [--steps K] [--uvloop]`. A stateless fake OpenRouter runs in a subprocess
(so the engine's process has its core to itself) and answers each request with a call to a no-op tool until the
turn has made K model calls, then with text. The provider is wrapped so that the time spent waiting for it is
measured inside every turn: overhead = turn time - time inside the provider. Target: ≤ 0.5 ms median per step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from t_koma.config.loader import load_config  # noqa: E402
from t_koma.engine.engine import Engine  # noqa: E402
from t_koma.engine.events import TurnRequest  # noqa: E402
from t_koma.messages import ConversationRequest, ModelInfo, ProviderResponse, StreamEvent  # noqa: E402
from t_koma.providers.base import Provider, ProviderSpec  # noqa: E402
from t_koma.providers.factory import ModelResolver  # noqa: E402
from t_koma.store.base import UsageRecord  # noqa: E402
from t_koma.store.sqlite import SqliteStore  # noqa: E402
from t_koma.tools.base import Tool, ToolContext, ToolRegistry, ToolResult  # noqa: E402

KEY = "sk-or-bench-0000"
MODEL = "bench/noop-agent"
SERVER = """
import socket, orjson, uvicorn
from tests.fakes.openrouter_wire import stream_events
from tests.fakes.replies import text_reply, tool_call_reply

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    body = orjson.loads(raw)
    prompt = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    wanted = int((prompt if isinstance(prompt, str) else prompt[-1]["text"]).split()[-1])
    done = sum(1 for m in body["messages"] if m["role"] == "tool")
    if done + 1 >= wanted:
        reply = text_reply("The answer is 42.", keepalive=False, chunk_size=8)
    else:
        reply = tool_call_reply([(f"call_{done}", "noop", '{"n": 1}')], keepalive=False, chunk_size=8)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for event in stream_events(reply, "gen-bench", body["model"]):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})

sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(128)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)).run(sockets=[sock])
"""


class NoopTool(Tool):
    """A tool that does nothing, so that a step measures the engine rather than a subprocess."""

    name = "noop"
    description = "Does nothing."
    parameters: ClassVar[Mapping[str, Any]] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    requires_approval = False

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult("ok")


class TimedProvider(Provider):
    """Delegates to a real provider and adds up the time spent waiting for it."""

    def __init__(self, inner: Provider) -> None:
        super().__init__(inner.spec)
        self.inner = inner
        self.waited_ns = 0

    async def stream(self, request: ConversationRequest) -> AsyncIterator[StreamEvent]:
        events = self.inner.stream(request)
        while True:
            t0 = time.perf_counter_ns()
            try:
                event = await anext(events)
            except StopAsyncIteration:
                self.waited_ns += time.perf_counter_ns() - t0
                return
            self.waited_ns += time.perf_counter_ns() - t0
            yield event

    async def complete(self, request: ConversationRequest) -> ProviderResponse:
        t0 = time.perf_counter_ns()
        try:
            return await self.inner.complete(request)
        finally:
            self.waited_ns += time.perf_counter_ns() - t0

    async def list_models(self) -> list[ModelInfo]:
        return await self.inner.list_models()

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedResolver(ModelResolver):
    """The real resolver, handing out timed providers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timed: dict[ProviderSpec, TimedProvider] = {}

    def provider_for(self, spec: ProviderSpec) -> Provider:
        if spec not in self.timed:
            self.timed[spec] = TimedProvider(super().provider_for(spec))
        return self.timed[spec]

    @property
    def waited_ns(self) -> int:
        return sum(provider.waited_ns for provider in self.timed.values())


def time_store(store: SqliteStore) -> list[int]:
    """Wrap the store's methods so that the time spent in them adds up in the returned one-item list (ns)."""
    spent = [0]
    for name in ("create_session", "get_session", "load_messages", "begin_turn", "append_message", "record_usage"):
        setattr(store, name, _timed(getattr(store, name), spent))
    for name in ("finish_turn", "get_cooldown", "set_cooldown", "clear_cooldown", "rename_session"):
        setattr(store, name, _timed(getattr(store, name), spent))
    return spent


def _timed(method: Any, spent: list[int]) -> Any:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return await method(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter_ns() - t0

    return timed


def start_fake() -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    return process, f"http://127.0.0.1:{int(process.stdout.readline())}"


def ms(samples_ns: list[float]) -> tuple[float, float]:
    """(median, p99) in milliseconds."""
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return statistics.median(samples_ns) / 1e6, cuts[98] / 1e6


async def turns(
    engine: Engine, resolver: TimedResolver, store_ns: list[int], count: int, steps: int
) -> dict[str, list[float]]:
    """Run `count` turns of `steps` model calls; per turn: total, provider wait, overhead per step, and that
    overhead without the store's time (ns)."""
    out: dict[str, list[float]] = {"total": [], "provider": [], "overhead_per_step": [], "cpu_per_step": []}
    for _ in range(count):
        waited, stored = resolver.waited_ns, store_ns[0]
        t0 = time.perf_counter_ns()
        result = await engine.run_turn(TurnRequest(f"Run the tool, steps {steps}", chain=(MODEL,), auto_approve=True))
        total = time.perf_counter_ns() - t0
        assert result.steps == steps and result.text == "The answer is 42.", result
        provider, store = resolver.waited_ns - waited, store_ns[0] - stored
        out["total"].append(total)
        out["provider"].append(provider)
        out["overhead_per_step"].append((total - provider) / steps)
        out["cpu_per_step"].append((total - provider - store) / steps)
    return out


async def engine_bench(url: str, data_dir: Path, count: int, steps: int) -> list[tuple[str, tuple[float, float]]]:
    os.environ.update({"OPENROUTER_BASE_URL": url, "OPENROUTER_API_KEY": KEY, "T_KOMA_DATA_DIR": str(data_dir)})
    os.environ["T_KOMA_CONFIG_DIR"] = str(data_dir / "config")
    config = load_config()
    store = await SqliteStore.open(config.database_path)
    resolver = TimedResolver(config)
    registry = ToolRegistry()
    registry.register(NoopTool())
    engine = Engine(config, store, resolver, registry)
    store_ns = time_store(store)
    try:
        await turns(engine, resolver, store_ns, max(10, count // 10), steps)  # warm-up: connections, statements
        one = await turns(engine, resolver, store_ns, count, 1)
        many = await turns(engine, resolver, store_ns, count, steps)
    finally:
        await engine.close()
    return [
        ("provider call (stream, loopback)", ms(one["provider"])),
        ("1-step turn, total", ms(one["total"])),
        ("1-step turn, engine overhead", ms(one["overhead_per_step"])),
        ("1-step turn, engine overhead without store", ms(one["cpu_per_step"])),
        (f"{steps}-step turn, total", ms(many["total"])),
        (f"{steps}-step turn, engine overhead per step", ms(many["overhead_per_step"])),
        (f"{steps}-step turn, per step without store", ms(many["cpu_per_step"])),
    ]


async def store_bench(path: Path, steps: int) -> tuple[float, tuple[float, float]]:
    """The writes of one tool step (assistant message, usage row, tool results), each its own commit."""
    from t_koma.messages import ProviderUsage, TextBlock, ToolResultBlock, ToolUseBlock

    store = await SqliteStore.open(path)
    session = await store.create_session("bench")
    turn = await store.begin_turn(session.id)
    call = (TextBlock("Let me check."), ToolUseBlock("c1", "run_shell_command", {"command": "ls -la"}))
    results = (ToolResultBlock("c1", "total 0\n" + "file.txt\n" * 20),)
    usage = ProviderUsage(1200, 180, cache_read_tokens=900, cost=3e-4)
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter_ns()
        message = await store.append_message(session.id, "assistant", call, model=MODEL, turn_id=turn)
        await store.record_usage(UsageRecord(session.id, message.id, "openrouter", MODEL, usage, 800.0))
        await store.append_message(session.id, "user", results, turn_id=turn)
        samples.append(time.perf_counter_ns() - t0)
    elapsed = time.perf_counter() - started
    await store.finish_turn(turn, "done", "stop")
    await store.close()
    return 3 * steps / elapsed, ms(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run the engine on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    process, url = start_fake()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = asyncio.run(engine_bench(url + "/api/v1", Path(tmp), args.turns, args.steps))
            writes_per_s, step_writes = asyncio.run(store_bench(Path(tmp) / "store.sqlite3", args.turns * 5))
    finally:
        process.terminate()
        process.wait()
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"engine overhead ({args.turns} turns each, {loop}, SQLite WAL commits included)")
    print(f"  {'measure':<44} {'median ms':>10} {'p99 ms':>10}")
    for label, (median, p99) in rows:
        print(f"  {label:<44} {median:>10.3f} {p99:>10.3f}")
    print(
        f"store writes: {writes_per_s:,.0f} commits/s; one tool step's 3 writes: {step_writes[0]:.3f} ms median, "
        f"{step_writes[1]:.3f} ms p99"
    )


if __name__ == "__main__":
    main()
