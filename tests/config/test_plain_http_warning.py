"""A plain-http base URL to another machine is accepted with one warning (keys would travel in clear text);
loopback and https are silent, and the warning never shows the URL's credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from t_koma.config.loader import load_config


def _warnings(environ: dict[str, str], config: str = "") -> list[str]:
    config_dir = Path(os.environ["T_KOMA_CONFIG_DIR"])  # the test's own (tests/conftest.py)
    (config_dir / "config.toml").write_text(config)
    seen: list[str] = []
    load_config({**environ, "T_KOMA_CONFIG_DIR": str(config_dir)}, warn=seen.append)
    return seen


@pytest.mark.parametrize(
    "url", ["http://proxy.example.com/api/v1", "http://10.0.0.5:8080/v1", "http://admin:pw-secret@corp.example/v1"]
)
def test_a_plain_http_base_url_to_another_machine_warns(url: str) -> None:
    seen = _warnings({"OPENROUTER_BASE_URL": url})
    assert len(seen) == 1, seen
    assert "plain http to another machine" in seen[0] and "use https://" in seen[0]
    assert "pw-secret" not in seen[0] and "admin" not in seen[0]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1", "https://example.com/v1"]
)
def test_loopback_and_https_base_urls_are_silent(url: str) -> None:
    assert _warnings({"ANTHROPIC_BASE_URL": url}) == []


def test_a_model_base_url_is_checked_too() -> None:
    config = '[models.local]\nprovider = "openai_compatible"\nmodel = "m"\nbase_url = "http://gpu-box.lan:8000/v1"\n'
    seen = _warnings({}, config)
    assert len(seen) == 1 and "http://gpu-box.lan:8000" in seen[0], seen
