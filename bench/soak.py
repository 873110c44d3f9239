"""Soak: 200 concurrent streaming chats through `t-koma gateway` for 60 s — half WebSocket chat sessions (the agent
path: SQLite, history, a new session every few turns), half `/v1/chat/completions` streams — with the gateway's
RSS sampled every second. Bounded: each client stops at the deadline (a turn in flight may finish, within its
timeout), a client that meets repeated errors gives up. Reports errors (target 0) and the RSS slope after a
warm-up, by least squares (target: flat; LiteLLM's memory-growth reports are the thing to beat).

Run: `python -m bench.soak [--seconds 60] [--clients 200] [--mode mixed|ws|v1]`. Writes bench/.work/soak.json
and, when a `python -m bench` run's results exist, rewrites bench/RESULTS.md with the soak section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from bench.load import Samples, Target, client_session, one, percentile_ms
from bench.results import SoakResult, load, save, save_soak
from bench.services import WORK, Service, rss_mb, start_fake, start_tkoma
from bench.websocket import chat_turn, open_chat

MAX_CLIENT_ERRORS = 5


@dataclass(frozen=True)
class SoakOptions:
    seconds: float = 60.0
    clients: int = 200
    mode: str = "mixed"
    warmup_s: float = 15.0
    chunk_delay_ms: float = 2.0
    """Pause between the fake's stream chunks: each stream lasts ~20 ms, so 200 of them really overlap."""
    session_turns: int = 5
    """A WebSocket client starts a new session after this many turns (history stays small, sessions pile up)."""


@dataclass
class _Tally:
    turn_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def slope_mb_per_min(samples: list[tuple[float, float]], after: float) -> float:
    """Least-squares slope of RSS over time, for the samples taken after `after` seconds."""
    points = [(t, mb) for t, mb in samples if t >= after]
    if len(points) < 2:
        return float("nan")
    mean_t = sum(t for t, _ in points) / len(points)
    mean_mb = sum(mb for _, mb in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return float("nan")
    return sum((t - mean_t) * (mb - mean_mb) for t, mb in points) / spread * 60


async def _new_session(connection: ClientConnection) -> str:
    """`create_session` (the connection's current session becomes the new one); its id."""
    await connection.send(orjson.dumps({"type": "create_session", "title": "soak"}).decode())
    async with asyncio.timeout(30):
        while True:
            message = orjson.loads(await connection.recv())
            if message.get("type") == "session_created":
                return str(message["session_id"])
            if message.get("type") == "error":
                raise RuntimeError(f"error frame: {message.get('error')}")


async def _ws_client(gateway: Service, deadline: float, options: SoakOptions, tally: _Tally) -> None:
    errors = 0
    while time.monotonic() < deadline and errors < MAX_CLIENT_ERRORS:
        try:
            connection = await open_chat(gateway)
        except (OSError, WebSocketException, RuntimeError, TimeoutError) as exc:
            errors += 1
            tally.errors.append(f"ws connect: {exc}"[:300])
            continue
        try:
            session_id: str | None = None
            turns = 0
            while time.monotonic() < deadline:
                _, whole, session_id = await chat_turn(connection, f"Soak turn {turns}.", session_id)
                tally.turn_ns.append(whole)
                turns += 1
                if turns % options.session_turns == 0:
                    session_id = await _new_session(connection)
        except (WebSocketException, RuntimeError, TimeoutError) as exc:
            errors += 1
            tally.errors.append(f"ws: {type(exc).__name__}: {exc}"[:300])
        finally:
            with contextlib.suppress(Exception):
                await connection.close()


async def _v1_client(target: Target, deadline: float, tally: _Tally, samples: Samples) -> None:
    async with client_session() as session:
        body = target.body(stream=True)
        while time.monotonic() < deadline and samples.errors < MAX_CLIENT_ERRORS:
            await one(session, target, body, True, samples)
    tally.turn_ns += samples.latency_ns
    examples = [f"v1: {example}" for example in samples.error_examples]
    tally.errors += examples + ["v1: (same kind of error)"] * (samples.errors - len(examples))


async def _sample(pid: int, started: float, samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((round(time.monotonic() - started, 2), round(rss_mb(pid), 2)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def run(options: SoakOptions) -> SoakResult:
    fake = start_fake(chunk_delay_ms=options.chunk_delay_ms)
    gateway = start_tkoma(fake, WORK / "soak-gateway")
    target = Target("t-koma", gateway.url + "/v1/chat/completions", gateway.token, "bench")
    print(f"soak: {options.clients} clients ({options.mode}) for {options.seconds:.0f} s against {gateway.url}")
    try:
        tally, ws_tally = _Tally(), _Tally()
        rss: list[tuple[float, float]] = []
        started = time.monotonic()
        deadline = started + options.seconds
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(gateway.pid, started, rss, stop))
        ws_count = {"ws": options.clients, "v1": 0}.get(options.mode, options.clients // 2)
        clients = [_ws_client(gateway, deadline, options, ws_tally) for _ in range(ws_count)]
        clients += [_v1_client(target, deadline, tally, Samples()) for _ in range(options.clients - ws_count)]
        await asyncio.gather(*clients)
        elapsed = time.monotonic() - started
        v1_turns = len(tally.turn_ns)
        tally.turn_ns += ws_tally.turn_ns
        tally.errors += ws_tally.errors
        stop.set()
        await sampler
    finally:
        gateway.stop()
        fake.stop()
    sizes = [mb for _, mb in rss]
    return SoakResult(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        seconds=options.seconds,
        clients=options.clients,
        ws_clients=ws_count,
        v1_clients=options.clients - ws_count,
        turns=len(tally.turn_ns),
        errors=len(tally.errors),
        turns_per_s=len(tally.turn_ns) / elapsed,
        turn_p50_ms=percentile_ms(tally.turn_ns, 50),
        turn_p99_ms=percentile_ms(tally.turn_ns, 99),
        rss_start_mb=sizes[0] if sizes else float("nan"),
        rss_end_mb=sizes[-1] if sizes else float("nan"),
        rss_max_mb=max(sizes) if sizes else float("nan"),
        warmup_s=options.warmup_s,
        slope_mb_per_min=slope_mb_per_min(rss, options.warmup_s),
        samples=rss,
        error_examples=tally.errors[:5],
        ws_turns=len(ws_tally.turn_ns),
        ws_turn_p50_ms=percentile_ms(ws_tally.turn_ns, 50),
        ws_turn_p99_ms=percentile_ms(ws_tally.turn_ns, 99),
        v1_turns=v1_turns,
        v1_turn_p50_ms=percentile_ms(tally.turn_ns[:v1_turns], 50),
        v1_turn_p99_ms=percentile_ms(tally.turn_ns[:v1_turns], 99),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--mode", choices=["mixed", "ws", "v1"], default="mixed")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds left out of the RSS slope")
    arguments = parser.parse_args()
    options = SoakOptions(arguments.seconds, arguments.clients, arguments.mode, arguments.warmup)
    from bench.__main__ import event_loop_runner

    with event_loop_runner() as runner:
        result = runner.run(run(options))
    save_soak(result)
    print(
        f"soak: {result.turns} turns, {result.errors} errors, {result.turns_per_s:.0f} turns/s, p50/p99 "
        f"{result.turn_p50_ms:.1f}/{result.turn_p99_ms:.1f} ms; RSS {result.rss_start_mb:.1f} → "
        f"{result.rss_end_mb:.1f} MB (max {result.rss_max_mb:.1f}), slope after {result.warmup_s:.0f} s: "
        f"{result.slope_mb_per_min:+.2f} MB/min"
    )
    previous = load()
    if previous is not None:
        from bench import report

        previous.soak = result
        save(previous)
        print(f"updated {report.write(previous)}")


if __name__ == "__main__":
    main()
