"""Layering and start-up cost: the client never loads the engine or the gateway, and `t-koma --help` never loads
the terminal UI."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_client_talks_to_the_gateway_only_over_the_protocol() -> None:
    modules = loaded_after("import t_koma.client.launch")
    assert not {m for m in modules if m.startswith(("t_koma.engine", "t_koma.gateway", "t_koma.store"))}
    assert not {"aiohttp", "uvicorn", "starlette"} & modules


def test_help_does_not_load_the_terminal_ui() -> None:
    modules = loaded_after(
        "from t_koma.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert "t_koma.cli.chat_cmd" not in modules
    assert not {m for m in modules if m.split(".")[0] in ("prompt_toolkit", "rich", "websockets")}
