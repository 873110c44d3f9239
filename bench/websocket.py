"""The WebSocket side of the gateway: N chat sessions streaming at once (each a real agent turn: SQLite writes,
the tool loop, the fallback chain), and the memory cost of many idle connections. LiteLLM has no equivalent
chat protocol, so these numbers stand on their own (next to the direct stream's TTFT)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from bench.gateway import idle_connections
from bench.load import percentile_ms
from bench.services import Service, peak_rss_mb, rss_mb

TURN_TIMEOUT = 60.0


@dataclass
class WsResult:
    sessions: int
    turns_per_session: int
    turns: int
    errors: int
    first_delta_p50_ms: float
    first_delta_p99_ms: float
    turn_p50_ms: float
    turn_p99_ms: float
    turns_per_s: float
    rss_mb: float
    peak_rss_mb: float
    error_examples: list[str] = field(default_factory=list)


@dataclass
class IdleResult:
    connections: int
    rss_before_mb: float
    rss_with_idle_mb: float
    kb_per_connection: float


@dataclass
class _Tally:
    first_ns: list[int] = field(default_factory=list)
    turn_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def open_chat(gateway: Service) -> ClientConnection:
    url = gateway.url.replace("http://", "ws://") + "/ws"
    headers = {"Authorization": f"Bearer {gateway.token}"}
    connection = await connect(url, additional_headers=headers, compression=None, open_timeout=60, max_queue=None)
    hello = orjson.loads(await connection.recv())
    if hello.get("type") != "hello":
        raise RuntimeError(f"expected hello, got {hello}")
    return connection


async def chat_turn(connection: ClientConnection, content: str, session_id: str | None) -> tuple[int, int, str]:
    """One turn: (ns to the first text delta, ns to the response, the session id). Raises on an error frame."""
    frame: dict[str, object] = {"type": "chat", "content": content}
    if session_id is not None:
        frame["session_id"] = session_id
    started = time.perf_counter_ns()
    await connection.send(orjson.dumps(frame).decode())
    first = 0
    async with asyncio.timeout(TURN_TIMEOUT):
        while True:
            message = orjson.loads(await connection.recv())
            kind = message.get("type")
            if kind == "text_delta" and not first:
                first = time.perf_counter_ns() - started
            elif kind == "response":
                return first, time.perf_counter_ns() - started, str(message["session_id"])
            elif kind == "error":
                raise RuntimeError(f"error frame: {message.get('error')}")


async def _session(gateway: Service, turns: int, tally: _Tally, barrier: asyncio.Barrier) -> None:
    try:
        connection = await open_chat(gateway)
    except (OSError, WebSocketException, RuntimeError, TimeoutError) as exc:
        tally.errors.append(f"connect: {exc}")
        await barrier.wait()
        return
    try:
        await barrier.wait()  # every session starts chatting at once
        session_id: str | None = None
        for number in range(turns):
            try:
                first, whole, session_id = await chat_turn(connection, f"Say hello ({number}).", session_id)
            except (WebSocketException, RuntimeError, TimeoutError) as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                return
            tally.first_ns.append(first)
            tally.turn_ns.append(whole)
    finally:
        await connection.close()


async def concurrent_sessions(gateway: Service, sessions: int, turns: int) -> WsResult:
    """`sessions` connections, each running `turns` streamed chat turns in its own session, all at once."""
    tally = _Tally()
    barrier = asyncio.Barrier(sessions + 1)
    tasks = [asyncio.create_task(_session(gateway, turns, tally, barrier)) for _ in range(sessions)]
    await barrier.wait()
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    return WsResult(
        sessions=sessions,
        turns_per_session=turns,
        turns=len(tally.turn_ns),
        errors=len(tally.errors),
        first_delta_p50_ms=percentile_ms(tally.first_ns, 50),
        first_delta_p99_ms=percentile_ms(tally.first_ns, 99),
        turn_p50_ms=percentile_ms(tally.turn_ns, 50),
        turn_p99_ms=percentile_ms(tally.turn_ns, 99),
        turns_per_s=len(tally.turn_ns) / wall if wall else 0.0,
        rss_mb=rss_mb(gateway.pid),
        peak_rss_mb=peak_rss_mb(gateway.pid),
        error_examples=tally.errors[:3],
    )


async def idle(gateway: Service, count: int) -> IdleResult:
    """RSS of the gateway holding `count` idle WebSocket connections (`bench/gateway.py`'s measurement)."""
    measured = await idle_connections(gateway.url, gateway.token, gateway.pid, count)
    return IdleResult(
        connections=int(measured["connections"]),
        rss_before_mb=measured["rss_before_mb"],
        rss_with_idle_mb=measured["rss_with_idle_mb"],
        kb_per_connection=measured["kb_per_connection"],
    )
