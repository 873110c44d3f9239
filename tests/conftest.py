"""Suite-wide isolation: no test sees the developer's keys, config or data, and none reaches the internet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fakes.anthropic", "tests.fakes.openrouter"]

_ISOLATED_PREFIXES = ("OPENROUTER_", "ANTHROPIC_", "OPENAI_", "T_KOMA_", "DEFAULT_PROVIDER")
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Clear provider keys and proxies, point config and data dirs at tmp_path, run from an empty cwd."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) and name != "T_KOMA_LIVE_TESTS":
            monkeypatch.delenv(name, raising=False)
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config_dir = tmp_path / "config"
    data_dir = tmp_path / "data"
    work_dir = tmp_path / "work"
    for directory in (config_dir, data_dir, work_dir):
        directory.mkdir()
    monkeypatch.setenv("T_KOMA_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("T_KOMA_DATA_DIR", str(data_dir))
    monkeypatch.chdir(work_dir)
    yield tmp_path
