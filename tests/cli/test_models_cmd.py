"""`t-koma models` as a real subprocess against the loopback fake upstreams: JSON shape, ordering, the cache,
the table, and errors as one stderr line plus `{"error": ...}` on stdout with the right exit code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.anthropic import FakeUpstream as FakeAnthropicUpstream
from tests.fakes.replies import error_reply

OPENROUTER_TEST_KEY = "sk-or-test-SECRET-0001"
ANTHROPIC_TEST_KEY = "sk-ant-test-SECRET-0002"


def catalog_entry(
    model_id: str, name: str, *, tools: bool, context: int, prompt: str, completion: str
) -> dict[str, Any]:
    """One `/models` entry in OpenRouter's shape."""
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": name,
        "created": 1750000000,
        "description": f"{name} description",
        "context_length": context,
        "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]},
        "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0"},
        "top_provider": {"context_length": context, "max_completion_tokens": 8192, "is_moderated": False},
        "supported_parameters": ["max_tokens", "temperature", *(["tools", "tool_choice"] if tools else [])],
    }


CATALOG = [
    catalog_entry(
        "openai/gpt-5", "OpenAI: GPT-5", tools=True, context=400000, prompt="0.00000125", completion="0.00001"
    ),
    catalog_entry("acme/no-tools", "Acme: No Tools", tools=False, context=8192, prompt="0", completion="0"),
    catalog_entry(
        "anthropic/claude-sonnet-4.5",
        "Anthropic: Claude Sonnet 4.5",
        tools=True,
        context=1000000,
        prompt="0.000003",
        completion="0.000015",
    ),
    catalog_entry(
        "moonshotai/kimi-k2.5",
        "MoonshotAI: Kimi K2.5",
        tools=True,
        context=262144,
        prompt="0.0000006",
        completion="0.0000025",
    ),
    catalog_entry(
        "google/gemini-2.5-pro",
        "Google: Gemini 2.5 Pro",
        tools=True,
        context=1048576,
        prompt="0.00000125",
        completion="0.00001",
    ),
]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)


def t_koma(*args: str, env: dict[str, str] | None = None) -> Run:
    completed = subprocess.run(
        [sys.executable, "-m", "t_koma", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env if env is not None else dict(os.environ),
        check=False,
    )
    for secret in (OPENROUTER_TEST_KEY, ANTHROPIC_TEST_KEY):
        assert secret not in completed.stdout + completed.stderr
    return Run(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def openrouter(fake_openrouter: Any) -> Any:
    fake_openrouter.app.models = [dict(entry) for entry in CATALOG]
    return fake_openrouter


def model_requests(fake: Any) -> list[Any]:
    return [r for r in fake.app.requests if r.method == "GET" and r.path.endswith("/models")]


def test_json_lists_configured_models_first_then_tool_capable_catalog_models(openrouter: Any) -> None:
    config_dir = Path(os.environ["T_KOMA_CONFIG_DIR"])
    (config_dir / "config.toml").write_text(
        'default_model = "kimi"\n[models.kimi]\nprovider = "openrouter"\nmodel = "moonshotai/kimi-k2.5:nitro"\n'
    )

    run = t_koma("models", "--json")

    assert (run.code, run.stderr) == (0, "")
    listed = run.json()
    assert [entry["id"] for entry in listed] == [
        "moonshotai/kimi-k2.5:nitro",
        "anthropic/claude-sonnet-4.5",
        "openai/gpt-5",
        "moonshotai/kimi-k2.5",
        "google/gemini-2.5-pro",
    ], "configured (with the built-in alias's model), then tool-capable catalog models; acme/no-tools is left out"
    assert listed[0] == {
        "id": "moonshotai/kimi-k2.5:nitro",
        "name": "MoonshotAI: Kimi K2.5",
        "description": "MoonshotAI: Kimi K2.5 description",
        "context_length": 262144,
    }
    assert all(set(entry) == {"id", "name", "description", "context_length"} for entry in listed)
    assert len(model_requests(openrouter)) == 1


def test_catalog_is_cached_in_the_data_dir_until_refresh(openrouter: Any) -> None:
    first = t_koma("models", "--json", "--limit", "2")
    second = t_koma("models", "--json", "--limit", "2")

    assert first.code == second.code == 0
    assert first.json() == second.json()
    assert len(first.json()) == 2
    assert (Path(os.environ["T_KOMA_DATA_DIR"]) / "cache" / "models-openrouter.json").is_file()
    assert len(model_requests(openrouter)) == 1, "the second run used the cache"

    refreshed = t_koma("models", "--json", "--refresh", "--provider", "OpenRouter")

    assert refreshed.code == 0
    assert len(model_requests(openrouter)) == 2


def test_table_shows_context_and_prices_per_million(openrouter: Any) -> None:
    env = {**os.environ, "COLUMNS": "200"}

    run = t_koma("models", "--limit", "3", env=env)

    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    header = next(line for line in lines if "ID" in line)
    assert [part.strip() for part in header.split("  ") if part.strip()] == [
        "ID",
        "Name",
        "Context",
        "$/M in",
        "$/M out",
    ]
    sonnet = next(line for line in lines if "anthropic/claude-sonnet-4.5" in line).split()
    assert sonnet[-3:] == ["1,000,000", "3", "15"]
    gpt = next(line for line in lines if "openai/gpt-5" in line).split()
    assert gpt[-3:] == ["400,000", "1.25", "10"]


def test_anthropic_models_need_a_key(openrouter: Any) -> None:
    run = t_koma("models", "--json", "--provider", "anthropic")

    assert run.code == 2
    assert run.json() == {
        "error": {
            "message": "ANTHROPIC_API_KEY is not set: export it or add it to .env (needed by listing Anthropic models)",
            "type": "missing_api_key",
            "status": None,
        }
    }
    assert run.stderr == f"t-koma: {run.json()['error']['message']}\n"


def test_default_provider_chooses_the_catalog(fake_anthropic: FakeAnthropicUpstream) -> None:
    env = {**os.environ, "DEFAULT_PROVIDER": "anthropic"}

    run = t_koma("models", "--json", env=env)

    assert run.code == 0, run.stderr
    ids = [entry["id"] for entry in run.json()]
    assert ids[0] == "claude-sonnet-4-5", "the built-in anthropic alias's model comes first"
    assert set(ids) == {"claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"}
    assert fake_anthropic.app.requests[0].headers["x-api-key"] == ANTHROPIC_TEST_KEY


def test_unreachable_upstream_is_a_connection_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OPENROUTER_BASE_URL": f"http://127.0.0.1:{port}/api/v1"}

    run = t_koma("models", "--json", env=env)

    assert run.code == 5
    error = run.json()["error"]
    assert error["type"] == "connection_error"
    assert run.stderr.startswith("t-koma: ") and run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("status", "error_type", "exit_code"),
    [(401, "authentication_error", 3), (429, "rate_limited", 5), (502, "upstream_error", 5)],
)
def test_upstream_errors_keep_their_status(openrouter: Any, status: int, error_type: str, exit_code: int) -> None:
    openrouter.app.enqueue_models(error_reply(status, "Upstream said no"))

    run = t_koma("models", "--json")

    assert run.code == exit_code
    error = run.json()["error"]
    assert (error["type"], error["status"]) == (error_type, status)
    assert "Upstream said no" in error["message"]
    assert run.stderr == f"t-koma: {error['message']}\n"


@pytest.mark.parametrize(
    ("args", "toml", "message_start"),
    [
        (
            ("--provider", "gemini"),
            None,
            "unknown provider 'gemini': use openrouter, anthropic, openai_compatible or the alias",
        ),
        ((), "[gateway]\nport = 'x'\n", "{config_dir}/config.toml: key 'gateway.port': must be an integer"),
        (("--provider", "openai_compatible"), None, "no openai_compatible server is configured"),
    ],
)
def test_usage_and_config_errors_exit_2(args: tuple[str, ...], toml: str | None, message_start: str) -> None:
    config_dir = os.environ["T_KOMA_CONFIG_DIR"]
    if toml is not None:
        (Path(config_dir) / "config.toml").write_text(toml)

    run = t_koma("models", "--json", *args)

    assert run.code == 2
    error = run.json()["error"]
    assert error["message"].startswith(message_start.format(config_dir=config_dir))
    assert error["type"] == "config_error"
    assert error["status"] is None
    assert run.stderr == f"t-koma: {error['message']}\n"


def test_without_json_errors_are_one_stderr_line_only() -> None:
    run = t_koma("models", "--provider", "anthropic")

    assert run.code == 2
    assert run.stdout == ""
    assert run.stderr.startswith("t-koma: ANTHROPIC_API_KEY is not set")


def test_narrow_terminals_shorten_names_but_never_ids(openrouter: Any) -> None:
    run = t_koma("models", env={**os.environ, "COLUMNS": "50"})

    assert run.code == 0, run.stderr
    for model_id in ("anthropic/claude-sonnet-4.5", "openai/gpt-5", "moonshotai/kimi-k2.5", "google/gemini-2.5-pro"):
        assert model_id in run.stdout
    assert "Anthropic: Claude Sonnet 4.5" not in run.stdout
    assert "…" in run.stdout


def test_hostile_catalog_names_are_shown_visible_and_inert_and_json_keeps_them(fake_openrouter: Any) -> None:
    name = "Evil\x1b]52;c;ZXZpbA==\x07 [bold]model[/b]\x1b[2J"
    hostile = catalog_entry("evil/model", name, tools=True, context=8192, prompt="0", completion="0")
    fake_openrouter.app.models = [hostile]
    env = {**os.environ, "COLUMNS": "200"}

    run = t_koma("models", env=env)
    as_json = t_koma("models", "--json", env=env)

    assert run.code == 0, run.stderr
    assert "Evil␛]52;c;ZXZpbA==␇ [bold]model[/b]␛[2J" in run.stdout and "\x1b" not in run.stdout
    assert json.loads(as_json.stdout)[-1]["name"] == name
