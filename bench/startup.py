"""CLI start-up: the wall time of `t-koma --help` (the console script users run, next to a bare `python -c pass`
for the interpreter's own floor), and the time until `t-koma chat` has drawn its first screen in a real
pseudo-terminal (pexpect), against the running gateway."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.services import GATEWAY_WORK, WORK, Service

FIRST_SCREEN = ["Select Model Provider", "/help for commands"]


@dataclass
class StartupResult:
    runs: int
    python_p50_ms: float
    help_p50_ms: float
    help_min_ms: float
    chat_runs: int = 0
    chat_first_screen_p50_ms: float | None = None
    chat_first_screen_max_ms: float | None = None
    chat_screen: str = ""
    chat_note: str = ""


def _wall_ms(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - started) * 1000


def console_script() -> str:
    script = Path(sys.executable).with_name("t-koma")
    return str(script) if script.exists() else "t-koma"


def _chat_env(gateway: Service) -> dict[str, str]:
    """A config dir naming the running gateway's port, and the gateway's data dir (its token)."""
    config_dir = WORK / "chat-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    port = gateway.url.rsplit(":", 1)[1]
    config = (GATEWAY_WORK / "config" / "config.toml").read_text()
    (config_dir / "config.toml").write_text(f"{config}\n[gateway]\nport = {port}\n")
    env = {name: value for name, value in os.environ.items() if not name.endswith("_API_KEY")}
    env.update(
        T_KOMA_CONFIG_DIR=str(config_dir),
        T_KOMA_DATA_DIR=str(GATEWAY_WORK / "data"),
        OPENROUTER_API_KEY="sk-or-bench-0000",
        TERM="xterm-256color",
    )
    return env


def chat_first_screen(gateway: Service, runs: int) -> tuple[list[float], str, str]:
    """Milliseconds from spawning `t-koma chat` until its first screen is on the terminal, per run."""
    try:
        import pexpect  # type: ignore[import-untyped]
    except ImportError:
        return [], "", "pexpect is not installed (it comes with the `test` extra); chat start-up not measured"
    env = _chat_env(gateway)
    times: list[float] = []
    screen = ""
    for _ in range(runs + 1):  # the first run warms the file cache and is dropped
        started = time.perf_counter()
        child = pexpect.spawn(
            console_script(),
            ["chat", "--no-autostart"],
            env=env,
            dimensions=(40, 120),
            encoding="utf-8",
            timeout=30,
        )
        try:
            index = child.expect(FIRST_SCREEN)
            times.append((time.perf_counter() - started) * 1000)
            screen = FIRST_SCREEN[index]
        except (pexpect.TIMEOUT, pexpect.EOF):
            return [], "", f"t-koma chat showed no first screen: {str(child.before)[-300:]!r}"
        finally:
            child.terminate(force=True)
            child.close()
    return times[1:], screen, ""


def measure(gateway: Service | None, runs: int) -> StartupResult:
    python = [_wall_ms([sys.executable, "-c", "pass"]) for _ in range(runs)]
    _wall_ms([console_script(), "--help"])  # warm the file cache
    help_times = [_wall_ms([console_script(), "--help"]) for _ in range(runs)]
    result = StartupResult(
        runs=runs,
        python_p50_ms=statistics.median(python),
        help_p50_ms=statistics.median(help_times),
        help_min_ms=min(help_times),
    )
    if gateway is None:
        result.chat_note = "no gateway was running; chat start-up not measured"
        return result
    chat_times, screen, note = chat_first_screen(gateway, max(3, runs // 2))
    result.chat_note = note
    if chat_times:
        result.chat_runs = len(chat_times)
        result.chat_first_screen_p50_ms = statistics.median(chat_times)
        result.chat_first_screen_max_ms = max(chat_times)
        result.chat_screen = screen
    return result
