"""The processes a benchmark run talks to — the fast fake upstream and `t-koma gateway` — and what /proc says about
them (RSS of a process tree, peak RSS, CPU seconds). The gateway is started by `bench/gateway.py`'s
`start_gateway` (in bench/.work/suite-gateway), so every benchmark measures the same set-up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.gateway import cpu_seconds, start_gateway

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
GATEWAY_WORK = WORK / "suite-gateway"
"""The gateway's config and data dirs for this suite (bench/gateway.py uses bench/.work/gateway)."""


@dataclass
class Service:
    """A child process (and its process group) serving on `url`."""

    name: str
    process: subprocess.Popen[str]
    url: str
    token: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM to the service's own process group (LiteLLM runs workers), SIGKILL after 20 s."""
        if self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(10)

    def _signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(self.process.pid) == self.process.pid:  # started in a session of its own
                os.killpg(self.process.pid, number)
            else:
                self.process.send_signal(number)


def start_fake(latency_ms: float = 0.0, chunks: int = 10, chunk_delay_ms: float = 0.0) -> Service:
    """`bench/fake_upstream.py` in its own process; `url` is its root (`/api/v1/...` and `/v1/...` below it)."""
    command = [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", "0", "--chunks", str(chunks)]
    command += ["--latency-ms", str(latency_ms), "--chunk-delay-ms", str(chunk_delay_ms)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready "):
        process.kill()
        raise SystemExit(f"the fake upstream did not start: {line!r}")
    return Service("fake upstream", process, f"http://127.0.0.1:{int(line.split()[1])}")


def start_tkoma(upstream: Service, work: Path = GATEWAY_WORK) -> Service:
    """`t-koma gateway` on a free port in front of the fake (model alias `bench`), its files in `work`."""
    process, url, token = start_gateway(int(upstream.url.rsplit(":", 1)[1]), work)
    return Service("t-koma gateway", process, url, token)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue += _children(current)
    return tree


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its descendants, in MB."""
    return sum(_status_kb(p, "VmRSS") for p in process_tree(pid)) / 1024


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of resident memory (VmHWM), summed over the process tree, in MB."""
    return sum(_status_kb(p, "VmHWM") for p in process_tree(pid)) / 1024


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(member)
    return total
