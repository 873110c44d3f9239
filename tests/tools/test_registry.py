"""The default tool registry, the key-free environment tools get, and the context built from configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from t_koma.config.model import Config, Secrets, ShellSettings
from t_koma.tools.registry import default_registry, scrubbed_env, tool_context
from t_koma.tools.shell import ShellTool


def make_config(tmp_path: Path, *, shell: ShellSettings | None = None, secrets: dict[str, str] | None = None) -> Config:
    return Config(
        config_dir=tmp_path,
        data_dir=tmp_path,
        config_file=None,
        default_chain=(),
        models={},
        secrets=Secrets(secrets or {}),
        key_variables=("CUSTOM_GATEWAY_SECRET",),
        shell=shell or ShellSettings(),
    )


def test_default_registry_offers_the_shell_tool() -> None:
    registry = default_registry()
    tool = registry.get("run_shell_command")
    assert isinstance(tool, ShellTool) and tool.requires_approval
    assert [definition.name for definition in registry.definitions()] == ["run_shell_command"]
    assert registry.get("rm_rf") is None


def test_scrubbed_env_drops_every_key_variable(tmp_path: Path) -> None:
    config = make_config(tmp_path, secrets={"OPENAI_API_KEY": "sk-local-0004"})
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "OPENROUTER_API_KEY": "sk-or-1",
        "ANTHROPIC_API_KEY": "sk-ant-2",
        "brave_api_key": "lower-case-3",
        "CUSTOM_GATEWAY_SECRET": "configured-key-variable",
        "COPY_OF_A_KEY": "sk-local-0004",
        "API_KEY_HINT": "a name that only starts like a key",
    }
    assert scrubbed_env(config, base) == {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "API_KEY_HINT": "a name that only starts like a key",
    }


def test_scrubbed_env_drops_variables_named_like_secrets_unless_passed(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "GITHUB_TOKEN": "ghp_1",
        "HF_TOKEN": "hf_2",
        "AWS_SECRET_ACCESS_KEY": "aws-3",
        "AWS_ACCESS_KEY_ID": "AKIA4",
        "DB_PASSWORD": "pw-5",
        "MY_CLIENT_SECRET_VALUE": "s-6",
        "DATABASE_URL": "postgres://app:hunter2@db:5432/app",
        "PLAIN_URL": "https://example.com/a:b",
        "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/sa.json",
        "EDITOR": "vim",
    }
    shell = ShellSettings(pass_env=("GITHUB_TOKEN", "OPENAI_API_KEY"))
    config = make_config(tmp_path, shell=shell)

    env = scrubbed_env(config, {**base, "OPENAI_API_KEY": "sk-7"})

    assert env == {
        "PATH": "/usr/bin",
        "GITHUB_TOKEN": "ghp_1",  # listed in pass_env
        "PLAIN_URL": "https://example.com/a:b",
        "EDITOR": "vim",
    }  # a provider key never passes, even when listed


def test_scrubbed_env_reads_the_process_environment_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-SECRET-0001")
    monkeypatch.setenv("T_KOMA_TEST_VISIBLE", "yes")
    env = scrubbed_env(make_config(tmp_path))
    assert "OPENROUTER_API_KEY" not in env
    assert env["T_KOMA_TEST_VISIBLE"] == "yes"


def test_tool_context_defaults_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-SECRET-0002")
    context = tool_context(make_config(tmp_path))
    assert context.workspace == Path.cwd()
    assert (context.timeout_seconds, context.output_cap_bytes) == (120.0, 32 * 1024)
    assert "ANTHROPIC_API_KEY" not in context.env


def test_tool_context_uses_the_configured_shell_settings(tmp_path: Path) -> None:
    workspace = tmp_path / "project"
    shell = ShellSettings(workspace=workspace, timeout_seconds=5.0, output_cap_bytes=4096)
    context = tool_context(make_config(tmp_path, shell=shell), {"PATH": "/bin", "X_API_KEY": "k"})
    assert context.workspace == workspace
    assert (context.timeout_seconds, context.output_cap_bytes) == (5.0, 4096)
    assert dict(context.env) == {"PATH": "/bin", "T_KOMA_TOOL_OWNER": context.owner}


def test_tool_context_carries_the_key_values_to_redact_but_never_shows_them(tmp_path: Path) -> None:
    context = tool_context(make_config(tmp_path, secrets={"OPENROUTER_API_KEY": "sk-or-test-SECRET-0001"}))

    assert context.secrets == ("sk-or-test-SECRET-0001",)
    assert "sk-or-test-SECRET-0001" not in repr(context)
