"""The tools offered to the model by default, and the context they run in (workspace, key-free environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from t_koma.config.model import Config
from t_koma.tools.base import ToolContext, ToolRegistry
from t_koma.tools.shell import ShellTool

KEY_SUFFIX = "_API_KEY"


def default_registry() -> ToolRegistry:
    """A registry with every built-in tool (today: `run_shell_command`)."""
    registry = ToolRegistry()
    registry.register(ShellTool())
    return registry


def scrubbed_env(config: Config, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default `os.environ`) without any provider key: every variable named in `config.key_variables`,
    every `*_API_KEY` variable, and any variable whose value is one of the configured secrets."""
    source = os.environ if base is None else base
    named = {name.upper() for name in config.key_variables}
    secrets = set(config.secrets.all_values())
    return {
        name: value
        for name, value in source.items()
        if name.upper() not in named and not name.upper().endswith(KEY_SUFFIX) and value not in secrets
    }


def tool_context(config: Config, base_env: Mapping[str, str] | None = None) -> ToolContext:
    """The context tools run in: `[tools.shell] workspace` (default the current directory), a scrubbed
    environment, and the configured timeout and output cap."""
    workspace = (config.shell.workspace or Path.cwd()).expanduser().absolute()
    return ToolContext(
        workspace=workspace,
        env=scrubbed_env(config, base_env),
        timeout_seconds=config.shell.timeout_seconds,
        output_cap_bytes=config.shell.output_cap_bytes,
    )
