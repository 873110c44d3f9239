"""The tools offered to the model by default, and the context they run in (workspace, key-free environment)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from t_koma.config.model import Config
from t_koma.tools.base import ToolContext, ToolRegistry
from t_koma.tools.leftovers import OWNER_VARIABLE, new_owner
from t_koma.tools.shell import ShellTool

SECRET_NAME = re.compile(
    r"(_KEY|_TOKEN|_SECRET|_PASSWORD|_PASSWD|_PASS|_PWD|_CREDENTIALS?|_AUTH)$|SECRET|PASSWORD|^AWS_"
)
"""Variable names that usually hold a secret; tools do not see them unless `[tools.shell] pass_env` lists them."""
_URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
"""A URL with a password in it (`postgres://user:pw@host`)."""


def default_registry() -> ToolRegistry:
    """A registry with every built-in tool (today: `run_shell_command`)."""
    registry = ToolRegistry()
    registry.register(ShellTool())
    return registry


def scrubbed_env(config: Config, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default `os.environ`) without secrets: every provider key variable (`config.key_variables`), any
    variable holding a configured key's value, and every variable named like a secret (`SECRET_NAME`) or holding
    a URL with a password, except those `[tools.shell] pass_env` lets through."""
    source = os.environ if base is None else base
    named = {name.upper() for name in config.key_variables}
    secrets = set(config.secrets.all_values())
    passed = {name.upper() for name in config.shell.pass_env if not name.upper().endswith("_API_KEY")} - named
    return {
        name: value
        for name, value in source.items()
        if name.upper() not in named
        and value not in secrets
        and (name.upper() in passed or not _looks_secret(name.upper(), value))
    }


def _looks_secret(name: str, value: str) -> bool:
    return SECRET_NAME.search(name) is not None or _URL_CREDENTIALS.search(value) is not None


def tool_context(config: Config, base_env: Mapping[str, str] | None = None) -> ToolContext:
    """The context tools run in: `[tools.shell] workspace` (default the current directory), a scrubbed
    environment, the configured timeout and output cap, and the secret values to redact from output."""
    workspace = (config.shell.workspace or Path.cwd()).expanduser().absolute()
    owner = new_owner()
    return ToolContext(
        workspace=workspace,
        env={**scrubbed_env(config, base_env), OWNER_VARIABLE: owner},
        timeout_seconds=config.shell.timeout_seconds,
        output_cap_bytes=config.shell.output_cap_bytes,
        secrets=config.secrets.all_values(),
        owner=owner,
    )
