"""What the gateway adds: `/v1/chat/completions` through `t-koma gateway` versus the same fast fake upstream called
directly, with the same aiohttp client in the same run (interleaved rounds), streaming and not, at concurrency
1, 50 and 200: added latency (median, p99), requests/s and the gateway's RSS; then the RSS with 1,000 idle
WebSocket connections.

The gateway runs as its own process (`python -m t_koma gateway`), the fake as another (`bench/fake_upstream.py`).
For calibration, a bare Starlette + aiohttp pass-through (the least a Python proxy can add) is measured in the same
rounds; gateway CPU per request comes from /proc. Results also go to bench/.work/gateway/results.json.
Run: `python bench/gateway.py [--quick] [--idle 1000]`. Targets (2 cores): median overhead ≤ 0.5 ms at
concurrency 1, p99 ≤ 2 ms at 50; 1,000 idle connections ≤ 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "gateway"
KEY = "sk-or-bench-0000"
CONFIG = """
default_model = "bench"

[models.bench]
provider = "openrouter"
model = "openai/gpt-4o-mini"

[logging]
level = "warning"
"""
MESSAGES = [{"role": "user", "content": "Say hello."}]
LEVELS = (1, 50, 200)


@dataclass
class Row:
    mode: str
    concurrency: int
    requests: int
    direct_median_ms: float
    direct_p99_ms: float
    gateway_median_ms: float
    gateway_p99_ms: float
    added_median_ms: float
    added_p99_ms: float
    gateway_rps: float
    direct_rps: float
    gateway_cpu_ms_per_request: float
    gateway_rss_mb: float
    bare_median_ms: float | None = None
    bare_p99_ms: float | None = None
    bare_cpu_ms_per_request: float | None = None


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# A calibration baseline: the least any Python pass-through can add here (Starlette + uvicorn/httptools/uvloop
# + one shared aiohttp session), measured in the same run as the gateway.
BARE_PROXY = """
import asyncio, socket, sys, aiohttp, uvicorn, uvloop
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
upstream = sys.argv[1]
session = None
async def chat(request):
    global session
    session = session or aiohttp.ClientSession()
    async with session.post(upstream, data=await request.body(), headers={"Content-Type": "application/json"}) as r:
        return Response(await r.read(), media_type=r.headers.get("Content-Type"))
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]),
                        http="httptools", lifespan="off", access_log=False, log_level="warning")
with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(uvicorn.Server(config).serve(sockets=[sock]))
"""


def start_bare_proxy(upstream_port: int) -> tuple[subprocess.Popen[str], str]:
    upstream = f"http://127.0.0.1:{upstream_port}/api/v1/chat/completions"
    process = subprocess.Popen([sys.executable, "-c", BARE_PROXY, upstream], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, f"http://127.0.0.1:{int(process.stdout.readline())}"


def start_fake() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline().split()[1])


def start_gateway(upstream_port: int, work: Path = WORK) -> tuple[subprocess.Popen[str], str, str]:
    """`work` holds the gateway's config and data dirs (wiped first); other suites pass their own."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "config").mkdir(parents=True)
    (work / "config" / "config.toml").write_text(CONFIG)
    env = {name: value for name, value in os.environ.items() if not name.endswith("_API_KEY")}
    env.update(
        T_KOMA_CONFIG_DIR=str(work / "config"),
        T_KOMA_DATA_DIR=str(work / "data"),
        OPENROUTER_BASE_URL=f"http://127.0.0.1:{upstream_port}/api/v1",
        OPENROUTER_API_KEY=KEY,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "t_koma", "gateway", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=work,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://\S+) .*token in (.+)\)$", line.strip())
    if match is None:
        process.kill()
        raise SystemExit(f"the gateway did not start: {line!r}")
    return process, match.group(1), Path(match.group(2)).read_text().strip()


async def one(session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]) -> int:
    started = time.perf_counter_ns()
    async with session.post(url, data=payload, headers=headers) as response:
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {await response.text()}")
        await response.read()  # the whole body, streamed or not
    return time.perf_counter_ns() - started


async def run_level(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str], concurrency: int, total: int
) -> tuple[list[int], float]:
    samples: list[int] = []
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            samples.append(await one(session, url, payload, headers))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - started


def median_p99(samples: list[int]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples) / 1e6, cuts[98] / 1e6


async def compare(
    session: aiohttp.ClientSession,
    upstream: str,
    gateway: str,
    token: str,
    pid: int,
    stream: bool,
    quick: bool,
    bare: tuple[str, int] | None,
) -> list[Row]:
    direct_body = orjson.dumps({"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": stream})
    gateway_body = orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": stream})
    direct_headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    gateway_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    direct_url, gateway_url = upstream + "/api/v1/chat/completions", gateway + "/v1/chat/completions"
    rows = []
    for concurrency in LEVELS:
        per_round = {1: 100, 50: 500, 200: 1000}[concurrency] // (4 if quick else 1)
        await run_level(session, direct_url, direct_body, direct_headers, concurrency, per_round // 4)  # warm-up
        await run_level(session, gateway_url, gateway_body, gateway_headers, concurrency, per_round // 4)
        direct: list[int] = []
        through: list[int] = []
        baseline: list[int] = []
        direct_wall = gateway_wall = gateway_cpu = bare_cpu = 0.0
        for _ in range(4):  # interleaved rounds: drift on the shared machine hits every side alike
            samples, wall = await run_level(session, direct_url, direct_body, direct_headers, concurrency, per_round)
            direct += samples
            direct_wall += wall
            cpu_before = cpu_seconds(pid)
            samples, wall = await run_level(session, gateway_url, gateway_body, gateway_headers, concurrency, per_round)
            gateway_cpu += cpu_seconds(pid) - cpu_before
            through += samples
            gateway_wall += wall
            if bare is not None:
                bare_url, bare_pid = bare[0] + "/v1/chat/completions", bare[1]
                cpu_before = cpu_seconds(bare_pid)
                samples, _ = await run_level(session, bare_url, direct_body, direct_headers, concurrency, per_round)
                bare_cpu += cpu_seconds(bare_pid) - cpu_before
                baseline += samples
        d_med, d_p99 = median_p99(direct)
        g_med, g_p99 = median_p99(through)
        b_med, b_p99 = median_p99(baseline) if baseline else (None, None)
        rows.append(
            Row(
                mode="stream" if stream else "json",
                concurrency=concurrency,
                requests=len(through),
                direct_median_ms=d_med,
                direct_p99_ms=d_p99,
                gateway_median_ms=g_med,
                gateway_p99_ms=g_p99,
                added_median_ms=g_med - d_med,
                added_p99_ms=g_p99 - d_p99,
                gateway_rps=len(through) / gateway_wall,
                direct_rps=len(direct) / direct_wall,
                gateway_cpu_ms_per_request=gateway_cpu * 1000 / len(through),
                gateway_rss_mb=rss_mb(pid),
                bare_median_ms=b_med,
                bare_p99_ms=b_p99,
                bare_cpu_ms_per_request=bare_cpu * 1000 / len(baseline) if baseline else None,
            )
        )
        print(_format(rows[-1]), flush=True)
    return rows


async def idle_connections(gateway: str, token: str, pid: int, count: int) -> dict[str, float]:
    url = gateway.replace("http://", "ws://") + "/ws"
    headers = {"Authorization": f"Bearer {token}"}
    before = rss_mb(pid)
    connections: list[ClientConnection] = []

    async def open_one() -> None:
        connection = await connect(url, additional_headers=headers, compression=None, open_timeout=60)
        await connection.recv()  # hello
        connections.append(connection)

    for start in range(0, count, 100):
        await asyncio.gather(*(open_one() for _ in range(min(100, count - start))))
    await asyncio.sleep(1.0)  # let the gateway settle before reading its RSS
    after = rss_mb(pid)
    await asyncio.gather(*(connection.close() for connection in connections))
    return {
        "connections": count,
        "rss_before_mb": before,
        "rss_with_idle_mb": after,
        "kb_per_connection": (after - before) * 1024 / count,
    }


def _format(row: Row) -> str:
    bare = ""
    if row.bare_median_ms is not None and row.bare_p99_ms is not None:
        bare = (
            f"  bare proxy adds {row.bare_median_ms - row.direct_median_ms:+6.2f}/"
            f"{row.bare_p99_ms - row.direct_p99_ms:+6.2f} (CPU {row.bare_cpu_ms_per_request or 0:.2f} ms/req)"
        )
    return (
        f"{row.mode:6} c={row.concurrency:<3} n={row.requests:<5} direct {row.direct_median_ms:6.2f}/"
        f"{row.direct_p99_ms:6.2f} ms  gateway {row.gateway_median_ms:6.2f}/{row.gateway_p99_ms:6.2f} ms  "
        f"added {row.added_median_ms:+6.2f}/{row.added_p99_ms:+6.2f} ms (median/p99){bare}  "
        f"{row.gateway_rps:5.0f} req/s ({row.direct_rps:5.0f} direct)  "
        f"CPU {row.gateway_cpu_ms_per_request:.2f} ms/req  RSS {row.gateway_rss_mb:5.1f} MB"
    )


async def main(quick: bool, idle: int, baseline: bool) -> None:
    fake, port = start_fake()
    gateway, url, token = start_gateway(port)
    bare_process, bare_url = start_bare_proxy(port) if baseline else (None, None)
    bare = (bare_url, bare_process.pid) if bare_process is not None and bare_url is not None else None
    try:
        upstream = f"http://127.0.0.1:{port}"
        print(f"gateway pid {gateway.pid} at {url}, upstream at {upstream}; RSS at start {rss_mb(gateway.pid):.1f} MB")
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            rows = await compare(session, upstream, url, token, gateway.pid, False, quick, bare)
            rows += await compare(session, upstream, url, token, gateway.pid, True, quick, bare)
        idle_result = await idle_connections(url, token, gateway.pid, idle)
        print(
            f"{idle} idle WebSocket connections: RSS {idle_result['rss_before_mb']:.1f} → "
            f"{idle_result['rss_with_idle_mb']:.1f} MB ({idle_result['kb_per_connection']:.1f} KB each); "
            f"peak RSS {rss_mb(gateway.pid, 'VmHWM'):.1f} MB"
        )
        results = {
            "rows": [asdict(row) for row in rows],
            "idle": idle_result,
            "peak_rss_mb": rss_mb(gateway.pid, "VmHWM"),
        }
        (WORK / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    finally:
        for process in (gateway, fake, bare_process):
            if process is not None:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    parser.add_argument("--idle", type=int, default=1000, help="idle WebSocket connections to hold")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare pass-through proxy baseline")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.quick, arguments.idle, not arguments.no_baseline))
