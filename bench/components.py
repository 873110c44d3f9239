"""The per-component benchmarks other parts of t-koma ship (`bench/providers.py`, `bench/engine.py`,
`bench/store.py`), run as they are meant to be run — each in its own process, nothing else loading the machine —
with their output kept verbatim for the report."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from bench.services import ROOT

TIMEOUT = 300.0


@dataclass
class ComponentRun:
    name: str
    command: str
    seconds: float
    returncode: int
    output: str


def scripts(quick: bool) -> list[tuple[str, list[str]]]:
    """(name, arguments) of each component benchmark; --quick runs fewer iterations."""
    return [
        ("providers", ["bench/providers.py", "--uvloop", "--calls", "500" if quick else "2000", "--rounds", "3"]),
        ("engine", ["bench/engine.py", "--uvloop", "--turns", "100" if quick else "300"]),
        ("store", ["bench/store.py", "--uvloop", "--steps", "1000" if quick else "5000"]),
    ]


def run(quick: bool, only: set[str] | None = None) -> list[ComponentRun]:
    runs = []
    for name, arguments in scripts(quick):
        if only is not None and name not in only:
            continue
        script = ROOT / arguments[0]
        if not script.exists():
            runs.append(ComponentRun(name, " ".join(arguments), 0.0, -1, f"{arguments[0]} does not exist yet"))
            continue
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT
            )
            output, code = done.stdout + (done.stderr if done.returncode else ""), done.returncode
        except subprocess.TimeoutExpired:
            output, code = f"timed out after {TIMEOUT:.0f} s", -1
        runs.append(ComponentRun(name, "python " + " ".join(arguments), time.perf_counter() - started, code, output))
        print(f"component {name}: exit {code} in {runs[-1].seconds:.1f} s", flush=True)
    return runs
