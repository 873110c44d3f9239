"""The `t-koma` process protects its environment from the commands the model runs: a tool reading
`/proc/$PPID/environ` (where exported API keys live) is refused. Checked with real processes; root reads any
process's memory regardless, so as root the check runs the processes as `nobody`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import t_koma

MODULE = Path(t_koma.__file__).resolve().parent / "cli" / "process.py"
"""Loaded by path: the parent may be a system python without t-koma's dependencies (when dropped to nobody)."""
KEY = "sk-or-test-SECRET-environ-0042"

# The parent marks itself (or not) and then runs the command a hostile model would send.
PARENT = """
import importlib.util, subprocess, sys
spec = importlib.util.spec_from_file_location("process", sys.argv[1])
process = importlib.util.module_from_spec(spec)
spec.loader.exec_module(process)
if sys.argv[2] == "protect":
    assert process.protect_process()
leak = subprocess.run(["/bin/sh", "-c", "tr '\\\\0' '\\\\n' < /proc/$PPID/environ"], capture_output=True, text=True)
print(leak.stdout + leak.stderr)
"""


def run_parent(mode: str) -> str:
    command = [sys.executable, "-c", PARENT, str(MODULE), mode]
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        python = shutil.which("python3", path="/usr/bin:/bin")
        if setpriv is None or python is None or not os.access(MODULE, os.R_OK):
            pytest.skip("running as root without setpriv and a system python to drop to nobody")
        command = [
            setpriv,
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            python,
            "-c",
            PARENT,
            str(MODULE),
            mode,
        ]
    result = subprocess.run(command, capture_output=True, text=True, env={"OPENROUTER_API_KEY": KEY}, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_unprotected_parent_leaks_its_keys_to_the_tool() -> None:
    """The attack works without the protection (so the next test can fail)."""
    assert KEY in run_parent("plain")


def test_the_protected_process_keeps_its_environment_from_the_tool() -> None:
    output = run_parent("protect")

    assert KEY not in output
    assert "Permission denied" in output
