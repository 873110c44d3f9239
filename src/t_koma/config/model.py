"""The immutable configuration objects. Only `config.loader` builds them; everything else reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from t_koma.messages import ReasoningConfig
from t_koma.providers.base import ProviderKind

Approval: TypeAlias = Literal["ask", "auto", "deny"]

DEFAULT_OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"

# The variable each provider reads its key from when a model sets no `api_key_env`.
DEFAULT_KEY_ENV: Mapping[ProviderKind, str] = {
    "openrouter": "OPENROUTER_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openai_compatible": "OPENAI_API_KEY",
}


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One `[models.<alias>]` table (or a built-in default alias)."""

    alias: str
    provider: ProviderKind
    model: str
    routing: tuple[str, ...] = ()
    allow_fallbacks: bool | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    context_window: int | None = None
    max_tokens: int | None = None
    reasoning: ReasoningConfig | None = None

    @property
    def key_env(self) -> str:
        return self.api_key_env or DEFAULT_KEY_ENV[self.provider]

    @property
    def key_required(self) -> bool:
        """openai_compatible servers may need no key unless `api_key_env` names one."""
        return self.provider != "openai_compatible" or self.api_key_env is not None


@dataclass(frozen=True, slots=True)
class OpenRouterSettings:
    base_url: str = DEFAULT_OPENROUTER_BASE_URL
    http_referer: str | None = None
    app_name: str | None = None
    catalog_ttl_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class AnthropicSettings:
    base_url: str = DEFAULT_ANTHROPIC_BASE_URL


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 3000
    allowed_origins: tuple[str, ...] = ()
    max_frame_bytes: int = 1024 * 1024
    shutdown_grace_seconds: float = 10.0
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest `/v1` request body; a larger one is refused with 413 before it is read."""
    send_queue_bytes: int = 16 * 1024 * 1024
    """Bytes of frames a WebSocket client may leave unread before it is disconnected (close code 1008)."""
    max_connections: int = 512
    """Concurrent connections served; more are refused with 503."""

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"


@dataclass(frozen=True, slots=True)
class ShellSettings:
    workspace: Path | None = None
    """None = the current directory of the process."""
    timeout_seconds: float = 120.0
    approval: Approval = "ask"
    output_cap_bytes: int = 32 * 1024
    pass_env: tuple[str, ...] = ()
    """Variables named like secrets (`*_TOKEN`, `AWS_*` …) that tools may still see; provider keys never."""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    max_steps: int = 10
    message_limit: int = 50
    system_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "info"
    log_bodies: bool = False


class Secrets:
    """Provider keys read from the environment (and `.env` files). Never printed: repr shows only names."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = {name: value for name, value in values.items() if value.strip()}

    def get(self, variable: str) -> str | None:
        return self._values.get(variable)

    def has(self, variable: str) -> bool:
        return variable in self._values

    def all_values(self) -> tuple[str, ...]:
        return tuple(self._values.values())

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)})"


@dataclass(frozen=True, slots=True)
class Config:
    config_dir: Path
    data_dir: Path
    config_file: Path | None
    """The `config.toml` that was read, or None when there is none (built-in defaults)."""
    default_chain: tuple[str, ...]
    models: Mapping[str, ModelConfig]
    secrets: Secrets
    key_variables: tuple[str, ...] = ()
    """Every variable name that holds a provider key (scrubbed from tool subprocess environments)."""
    default_provider: ProviderKind | None = None
    openrouter: OpenRouterSettings = field(default_factory=OpenRouterSettings)
    anthropic: AnthropicSettings = field(default_factory=AnthropicSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    shell: ShellSettings = field(default_factory=ShellSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "koma.sqlite3"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "gateway.token"

    def api_key_for(self, model: ModelConfig) -> str | None:
        return self.secrets.get(model.key_env)
