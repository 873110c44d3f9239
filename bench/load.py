"""A bounded asyncio load generator for OpenAI-style `/chat/completions` endpoints, on one aiohttp session (the
client whose per-request cost stays flat under concurrency, docs/dependencies.md).

`run_level(target, concurrency, requests)` sends exactly `requests` requests with `concurrency` workers, each with
a timeout, and measures per request: the whole latency, and for streams the time to the first content token
(TTFT: the first `data:` chunk whose `delta.content` is not empty). Failures are counted, never raised: a
non-200 status, a transport error, a timeout, a stream without `[DONE]` or with an error chunk.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

REQUEST_TIMEOUT = 60.0
MESSAGES = [{"role": "user", "content": "Say hello."}]


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint to load: its URL, the bearer token it wants and the model name it knows the fake by."""

    name: str
    url: str
    token: str
    model: str

    def body(self, stream: bool) -> bytes:
        return orjson.dumps({"model": self.model, "messages": MESSAGES, "stream": stream})

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}


@dataclass(slots=True)
class Samples:
    """What one batch of requests measured (nanoseconds)."""

    latency_ns: list[int] = field(default_factory=list)
    ttft_ns: list[int] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def extend(self, other: Samples) -> None:
        self.latency_ns += other.latency_ns
        self.ttft_ns += other.ttft_ns
        self.errors += other.errors
        self.error_examples += other.error_examples[: max(0, 3 - len(self.error_examples))]
        self.wall_s += other.wall_s

    @property
    def requests(self) -> int:
        return len(self.latency_ns) + self.errors

    @property
    def rps(self) -> float:
        return len(self.latency_ns) / self.wall_s if self.wall_s else 0.0


def percentile_ms(samples_ns: list[int], q: float) -> float:
    """The q-th percentile (0–100, inclusive method) in milliseconds; NaN without samples."""
    if not samples_ns:
        return float("nan")
    if len(samples_ns) == 1:
        return samples_ns[0] / 1e6
    if q == 50:
        return statistics.median(samples_ns) / 1e6
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[int(q) - 1] / 1e6


def first_token_at(buffer: bytearray) -> bool:
    """Whether the complete lines in `buffer` hold a chunk with non-empty content (consumes those lines)."""
    while True:
        end = buffer.find(b"\n")
        if end < 0:
            return False
        line = bytes(buffer[:end]).strip()
        del buffer[: end + 1]
        if not line.startswith(b"data:") or b'"content"' not in line:
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and delta.get("content"):
                return True


async def one(session: aiohttp.ClientSession, target: Target, body: bytes, stream: bool, samples: Samples) -> None:
    started = time.perf_counter_ns()
    ttft: int | None = None
    try:
        async with session.post(target.url, data=body, headers=target.headers) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                raise _Failure(f"HTTP {response.status}: {text}")
            if not stream:
                await response.read()
            else:
                buffer = bytearray()
                tail = b""
                async for piece in response.content.iter_any():
                    if ttft is None:
                        buffer += piece
                        if first_token_at(buffer):
                            ttft = time.perf_counter_ns() - started
                    tail = (tail + piece)[-200:]
                    if b'"error"' in piece:
                        raise _Failure(f"error chunk: {piece[:200]!r}")
                if b"[DONE]" not in tail:
                    raise _Failure("stream ended without [DONE]")
    except (_Failure, aiohttp.ClientError, TimeoutError) as exc:
        samples.errors += 1
        if len(samples.error_examples) < 3:
            samples.error_examples.append(f"{type(exc).__name__}: {exc}"[:300])
        return
    samples.latency_ns.append(time.perf_counter_ns() - started)
    if ttft is not None:
        samples.ttft_ns.append(ttft)


class _Failure(Exception):
    """A request that did not succeed end to end."""


async def run_level(
    session: aiohttp.ClientSession, target: Target, *, stream: bool, concurrency: int, requests: int
) -> Samples:
    """Exactly `requests` requests, `concurrency` at a time."""
    samples = Samples()
    body = target.body(stream)
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(session, target, body, stream, samples)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    samples.wall_s = time.perf_counter() - started
    return samples


def client_session() -> aiohttp.ClientSession:
    """One session for every target: no connection limit, a bounded timeout per request."""
    # Idle connections are dropped before the servers' 5 s keep-alive ends, so a request never races a server closing
    # its side of an idle connection (a reset that would be counted against the server).
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3.0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
