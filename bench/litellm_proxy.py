"""The LiteLLM proxy, for side-by-side numbers: launched offline from its own throwaway venv (never a project
dependency; `bench/litellm_env.sh` builds it from the pins in `bench/litellm-requirements.txt`), pointed at the
same fake upstream as an OpenAI-compatible model, one uvicorn worker like the t-koma gateway.

Launch as documented in docs/dependencies.md: a master key (it refuses to start without one), `--host 127.0.0.1`
(it binds 0.0.0.0 otherwise), `LITELLM_LOCAL_MODEL_COST_MAP` and `LITELLM_OFFLINE_MODE` (no network at import),
ready when `GET /health/liveliness` answers (8–40 s here)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

from bench.services import ROOT, WORK, Service

VENV = Path(os.environ.get("LITELLM_VENV", str(WORK / "litellm-venv")))
BUILD_COMMAND = "bench/litellm_env.sh"
MASTER_KEY = "sk-bench-" + "0123456789abcdef" * 2
MODEL = "openai/fake"
READY_TIMEOUT = 180.0


def executable() -> Path:
    return VENV / "bin" / "litellm"


def available() -> bool:
    return executable().exists()


def missing_note() -> str:
    return (
        f"LiteLLM proxy skipped: no venv at {VENV}. Build it (about 760 MB, a few minutes) with "
        f"`{BUILD_COMMAND}`, then run `python -m bench` again."
    )


def version() -> str:
    """The installed litellm version, from the venv's package metadata (importing litellm takes seconds)."""
    for dist in (VENV / "lib").glob("python3*/site-packages/litellm-*.dist-info"):
        return dist.name.removeprefix("litellm-").removesuffix(".dist-info")
    return "unknown"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(upstream: Service, log: Path | None = None) -> Service:
    """Start the proxy in front of `upstream`'s `/v1` (returns at once; `await ready(service)` next)."""
    port = _free_port()
    log = log or WORK / "litellm.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if not name.endswith("_API_KEY")}
    env.update(
        OPENAI_API_KEY="sk-fake",
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_OFFLINE_MODE="true",
        LITELLM_LOG="ERROR",
        NO_PROXY="*",
    )
    command = [str(executable()), "--host", "127.0.0.1", "--port", str(port), "--model", MODEL]
    command += ["--api_base", f"{upstream.url}/v1", "--num_workers", "1"]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT, text=True, start_new_session=True
        )
    return Service("LiteLLM proxy", process, f"http://127.0.0.1:{port}", MASTER_KEY)


async def ready(service: Service, timeout: float = READY_TIMEOUT) -> float:
    """Wait until the proxy answers its liveliness probe; returns the seconds it took since now."""
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() - started < timeout:
            if service.process.poll() is not None:
                raise RuntimeError(f"the LiteLLM proxy exited with {service.process.returncode}; see its log")
            try:
                async with session.get(service.url + "/health/liveliness") as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"the LiteLLM proxy was not ready after {timeout:.0f} s")
