"""Everything one `python -m bench` run measured, as typed records; saved as JSON in bench/.work/results.json so
that the report can be rebuilt (for instance after `python -m bench.soak` adds its numbers)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench.components import ComponentRun
from bench.services import ROOT, WORK
from bench.side_by_side import HttpRow
from bench.startup import StartupResult
from bench.websocket import IdleResult, WsResult

RESULTS_JSON = WORK / "results.json"
SOAK_JSON = WORK / "soak.json"
PACKAGES = ("aiohttp", "uvicorn", "uvloop", "httptools", "starlette", "websockets", "aiosqlite", "orjson")


@dataclass
class Machine:
    date: str
    cpu: str
    cores: int
    memory_gb: float
    kernel: str
    python: str
    commit: str
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class RunSettings:
    quick: bool
    rounds: int
    latency_ms: float
    chunks: int
    chunk_delay_ms: float
    ws_sessions: int
    ws_turns: int
    idle: int
    sections: list[str]


@dataclass
class SoakResult:
    date: str
    seconds: float
    clients: int
    ws_clients: int
    v1_clients: int
    turns: int
    errors: int
    turns_per_s: float
    turn_p50_ms: float
    turn_p99_ms: float
    rss_start_mb: float
    rss_end_mb: float
    rss_max_mb: float
    warmup_s: float
    slope_mb_per_min: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, RSS MB) every second."""
    error_examples: list[str] = field(default_factory=list)
    ws_turns: int = 0
    ws_turn_p50_ms: float = float("nan")
    ws_turn_p99_ms: float = float("nan")
    v1_turns: int = 0
    v1_turn_p50_ms: float = float("nan")
    v1_turn_p99_ms: float = float("nan")


@dataclass
class Results:
    machine: Machine
    settings: RunSettings
    http: list[HttpRow] = field(default_factory=list)
    ws: WsResult | None = None
    idle: IdleResult | None = None
    startup: StartupResult | None = None
    components: list[ComponentRun] = field(default_factory=list)
    soak: SoakResult | None = None
    notes: list[str] = field(default_factory=list)
    litellm_version: str | None = None
    litellm_ready_s: float | None = None
    duration_s: float = 0.0


def _read(path: Path) -> Any:
    for line in path.read_text().splitlines():
        if line.startswith(("model name", "MemTotal")):
            return line.split(":", 1)[1].strip()
    return ""


def machine_info() -> Machine:
    import t_koma

    versions = {"t-koma": t_koma.__version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    memory_kb = _read(Path("/proc/meminfo")).split()[0] if Path("/proc/meminfo").exists() else "0"
    return Machine(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        cpu=_read(Path("/proc/cpuinfo")) or platform.processor(),
        cores=len(os.sched_getaffinity(0)),
        memory_gb=round(int(memory_kb) / 1024 / 1024, 1),
        kernel=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        commit=commit or "unknown",
        versions=versions,
    )


def save(results: Results, path: Path = RESULTS_JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(asdict(results), option=orjson.OPT_INDENT_2))


def save_soak(soak: SoakResult, path: Path = SOAK_JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(asdict(soak), option=orjson.OPT_INDENT_2))


def load_soak(path: Path = SOAK_JSON) -> SoakResult | None:
    if not path.exists():
        return None
    return load_soak_dict(orjson.loads(path.read_bytes()))


def load(path: Path = RESULTS_JSON) -> Results | None:
    if not path.exists():
        return None
    data = orjson.loads(path.read_bytes())
    return Results(
        machine=Machine(**data["machine"]),
        settings=RunSettings(**data["settings"]),
        http=[HttpRow(**row) for row in data["http"]],
        ws=WsResult(**data["ws"]) if data.get("ws") else None,
        idle=IdleResult(**data["idle"]) if data.get("idle") else None,
        startup=StartupResult(**data["startup"]) if data.get("startup") else None,
        components=[ComponentRun(**run) for run in data.get("components", [])],
        soak=load_soak_dict(data.get("soak")),
        notes=list(data.get("notes", [])),
        litellm_version=data.get("litellm_version"),
        litellm_ready_s=data.get("litellm_ready_s"),
        duration_s=float(data.get("duration_s", 0.0)),
    )


def load_soak_dict(data: dict[str, Any] | None) -> SoakResult | None:
    if not data:
        return None
    data = dict(data)
    data["samples"] = [tuple(sample) for sample in data.get("samples", [])]
    return SoakResult(**data)
