"""The gateway process lets its database thread have the GIL back quickly (a 1 ms switch interval): with the
CPython default of 5 ms, WebSocket turns queued behind that thread under `/v1` load (bench.soak)."""

from __future__ import annotations

import subprocess
import sys


def test_a_gateway_process_uses_a_short_gil_switch_interval() -> None:
    script = (
        "import sys; before = sys.getswitchinterval(); from t_koma.gateway.server import prepare_process; "
        "prepare_process(); print(before, sys.getswitchinterval())"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)

    assert [float(value) for value in result.stdout.split()] == [0.005, 0.001]
