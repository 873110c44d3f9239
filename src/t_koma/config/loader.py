"""Build the immutable `Config` from the environment, `.env` files and `config.toml`.

Precedence: environment > `.env` (current directory first, then the config dir) > `config.toml` > built-in
defaults. A `.env` in the current directory is not the user's own (it may come with a cloned repository): it may
only provide the provider key variables; anything else in it is ignored with a warning.

This is the only module that reads the process environment, and it never writes anything: with no config file at
all, built-in aliases (`openrouter`, `anthropic`) make t-koma usable with just a key. Every problem becomes one
`ConfigError` line naming the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import sys
import tomllib
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from t_koma.config import paths
from t_koma.config.model import (
    DEFAULT_KEY_ENV,
    AgentSettings,
    AnthropicSettings,
    Approval,
    Config,
    GatewaySettings,
    LoggingSettings,
    ModelConfig,
    OpenRouterSettings,
    Secrets,
    ShellSettings,
)
from t_koma.errors import ConfigError
from t_koma.messages import REASONING_EFFORTS, ReasoningConfig
from t_koma.providers.base import ProviderKind
from t_koma.providers.factory import normalize_provider_name

# Built-in aliases, usable with no config file (a `[models.<same name>]` table replaces one).
BUILTIN_MODELS: Mapping[str, ModelConfig] = {
    "openrouter": ModelConfig(alias="openrouter", provider="openrouter", model="anthropic/claude-sonnet-4.5"),
    "anthropic": ModelConfig(alias="anthropic", provider="anthropic", model="claude-sonnet-4-5"),
}
# Without `default_model` or DEFAULT_PROVIDER, the first of these whose key is set is the default.
_KEY_PREFERENCE: tuple[ProviderKind, ...] = ("anthropic", "openrouter")
WORKDIR_ENV_VARIABLES = frozenset(DEFAULT_KEY_ENV.values())
"""All that a `.env` in the working directory may set: a checkout is not trusted to choose base URLs (where the
keys are sent), the config or data dir (approval modes, which variables are keys) or anything else."""
_PROVIDER_FIX = "use openrouter, anthropic or openai_compatible"

_GATEWAY_KEYS = (
    "host",
    "port",
    "allowed_origins",
    "max_frame_bytes",
    "shutdown_grace_seconds",
    "max_body_bytes",
    "send_queue_bytes",
    "max_connections",
)
_TOP_KEYS = ("default_model", "models", "openrouter", "gateway", "tools", "agent", "logging")
_MODEL_KEYS = (
    "provider",
    "model",
    "routing",
    "allow_fallbacks",
    "base_url",
    "api_key_env",
    "context_window",
    "max_tokens",
    "reasoning",
)
_REASONING_KEYS = ("effort", "max_tokens", "exclude", "enabled")
_APPROVALS: tuple[Approval, ...] = ("ask", "auto", "deny")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")
_TOML_POSITION = re.compile(r"^(?P<message>.*?)\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)$")

T = TypeVar("T")


def load_config(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None, *, warn: Callable[[str], None] | None = None
) -> Config:
    """Read everything once. `environ` defaults to the process environment, `cwd` to the current directory;
    `warn` receives one line per problem that is not an error (default: printed on stderr)."""
    env = dict(os.environ if environ is None else environ)
    config_dir = paths.config_dir(env)
    workdir_env = paths.env_file(cwd if cwd is not None else Path.cwd())
    if _same_file(workdir_env, paths.env_file(config_dir)):
        _merge_env_file(env, workdir_env)
    else:
        _merge_env_file(env, workdir_env, only=WORKDIR_ENV_VARIABLES, warn=warn or _print_warning)
    _merge_env_file(env, paths.env_file(config_dir))
    config_path = paths.config_file(config_dir)
    data = _read_toml(config_path)
    top = _Table(config_path, "", data, _TOP_KEYS)

    configured = _parse_models(top)
    models = {**configured, **{alias: m for alias, m in BUILTIN_MODELS.items() if alias not in configured}}
    default_provider = _default_provider(env)
    key_variables = _key_variables(models)
    secrets = Secrets({name: _key_value(env, name) for name in key_variables if name in env})
    config = Config(
        config_dir=config_dir,
        data_dir=paths.data_dir(env),
        config_file=config_path if data is not None else None,
        default_chain=_default_chain(top, models, default_provider, secrets),
        models=models,
        secrets=secrets,
        key_variables=key_variables,
        default_provider=default_provider,
        openrouter=_openrouter(top, env),
        anthropic=AnthropicSettings(base_url=_env_url(env, "ANTHROPIC_BASE_URL") or AnthropicSettings().base_url),
        gateway=_gateway(top.table("gateway", _GATEWAY_KEYS)),
        shell=_shell(top.table("tools", ("shell",)), config_dir),
        agent=_agent(top.table("agent", ("max_steps", "message_limit", "system_prompt"))),
        logging=_logging(top.table("logging", ("level", "log_bodies"))),
    )
    _warn_plain_http(config, warn or _print_warning)
    return config


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an IP address) stays on this machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_plain_http(config: Config, warn: Callable[[str], None]) -> None:
    """One warning per plain-http base URL that leaves this machine (keys and conversations would travel in
    clear text)."""
    urls = {config.openrouter.base_url, config.anthropic.base_url}
    urls.update(model.base_url for model in config.models.values() if model.base_url)
    for url in sorted(urls):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "http" and parts.hostname and not is_loopback_host(parts.hostname):
            shown = parts.netloc.rpartition("@")[2]
            warn(
                f"base URL http://{shown} is plain http to another machine: API keys and conversations travel "
                "unencrypted; use https://"
            )


# --- files and environment -------------------------------------------------------------------------------


def _merge_env_file(
    env: dict[str, str],
    path: Path,
    *,
    only: Collection[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Add a `.env` file's variables that are not set yet (a set variable, even empty, is never overridden).
    With `only`, other variables are ignored and named in one warning (the file is not the user's own)."""
    if not path.is_file():
        return
    try:
        values = dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read this .env file ({type(exc).__name__}); fix or remove it") from None
    ignored = [name for name in values if only is not None and name not in only]
    if ignored and warn is not None:
        warn(
            f"{path}: ignored {', '.join(_printable(name) for name in ignored)}: a .env in the working directory may "
            f"only set {', '.join(sorted(WORKDIR_ENV_VARIABLES))}; put other settings in the environment or in the "
            "config dir's .env"
        )
    for name, value in values.items():
        if value is not None and name not in env and name not in ignored:
            env[name] = value


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _printable(name: str) -> str:
    """A variable name from an untrusted file, safe to print on a terminal."""
    return name if _VARIABLE_NAME.fullmatch(name) else repr(name)


def _print_warning(message: str) -> None:
    sys.stderr.write(f"t-koma: warning: {message}\n")


def _read_toml(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read the config file ({type(exc).__name__}); fix its permissions or remove it"
        ) from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{path}: TOML nested too deeply to read; fix the file (see docs/configuration.md)") from None
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        if match is None:
            raise ConfigError(f"{path}: TOML syntax error: {exc}; fix the file (see docs/configuration.md)") from None
        raise ConfigError(
            f"{path}: TOML syntax error at line {match['line']}, column {match['column']}: {match['message']}; "
            "fix the file (see docs/configuration.md)"
        ) from None


def _env_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"environment variable {name} is not an http:// or https:// URL; fix or unset it")
    return value.rstrip("/")


def _default_provider(env: Mapping[str, str]) -> ProviderKind | None:
    value = env.get("DEFAULT_PROVIDER", "").strip()
    if not value:
        return None
    try:
        return normalize_provider_name(value)
    except ConfigError:
        raise ConfigError(
            f"environment variable DEFAULT_PROVIDER={value!r} is not a provider; "
            "set it to openrouter, anthropic or openai_compatible, or unset it"
        ) from None


def _key_value(env: Mapping[str, str], name: str) -> str:
    """A key variable's value, refused (never echoed) when it cannot be sent in an HTTP header."""
    value = env[name].strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ConfigError(
            f"{name} contains a line break or another control character; set it to the key alone "
            "(in the environment or .env)"
        )
    return value


def _key_variables(models: Mapping[str, ModelConfig]) -> tuple[str, ...]:
    names = list(DEFAULT_KEY_ENV.values()) + [m.api_key_env for m in models.values() if m.api_key_env]
    return tuple(dict.fromkeys(names))


# --- typed access to one TOML table ------------------------------------------------------------------------


class _Table:
    """One TOML table with its location, so that every error names the file and the key."""

    def __init__(self, file: Path, name: str, data: Mapping[str, Any] | None, known: Collection[str]) -> None:
        self.file = file
        self.name = name
        self.data: Mapping[str, Any] = data or {}
        for key in self.data:
            if key not in known:
                self._unknown(key, known)

    def _unknown(self, key: str, known: Collection[str]) -> None:
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "remove it"
        where = f"table [{self.name}]" if self.name else "the top level"
        raise self.error(key, f"unknown key in {where}", f"{hint} (allowed: {', '.join(known)})")

    def error(self, key: str, problem: str, fix: str) -> ConfigError:
        location = f"{self.name}.{key}" if self.name else key
        return ConfigError(f"{self.file}: key '{location}': {problem}; {fix}")

    def table(self, key: str, known: Collection[str]) -> _Table:
        value = self.data.get(key)
        name = f"{self.name}.{key}" if self.name else key
        if value is not None and not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {_type_name(value)}", f"write it as [{name}]")
        return _Table(self.file, name, value, known)

    def _typed(self, key: str, kind: type[T] | tuple[type, ...], expected: str, example: str) -> T | None:
        value = self.data.get(key)
        if value is None:
            return None
        # TOML booleans are Python ints: never accept one where a number is expected.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(key, f"must be {expected}, got {_type_name(value)}", f"write it like {key} = {example}")
        return value  # type: ignore[return-value]

    def string(self, key: str, example: str = '"text"') -> str | None:
        value = self._typed(key, str, "a string", example)
        if value is not None and not value.strip():
            raise self.error(key, "is empty", f"give it a value like {key} = {example} or remove the key")
        return value.strip() if value is not None else None

    def integer(self, key: str, minimum: int = 1, maximum: int | None = None) -> int | None:
        value: int | None = self._typed(key, int, "an integer", str(max(minimum, 1)))
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(key, f"must be {bounds}, got {value}", "change the value")
        return value

    def number(self, key: str, minimum: float = 0.0) -> float | None:
        value: float | int | None = self._typed(key, (int, float), "a number", "30")
        if value is not None and not value >= minimum:
            raise self.error(key, f"must be at least {minimum:g}, got {value}", "change the value")
        return float(value) if value is not None else None

    def boolean(self, key: str) -> bool | None:
        return self._typed(key, bool, "true or false", "true")

    def string_list(self, key: str, example: str) -> tuple[str, ...] | None:
        value = self._typed(key, list, "a list of strings", example)
        if value is None:
            return None
        if not all(isinstance(item, str) for item in value):
            raise self.error(key, "must contain only strings", f"write it like {key} = {example}")
        return tuple(item.strip() for item in value if item.strip())

    def choice(self, key: str, choices: tuple[T, ...]) -> T | None:
        value = self.string(key, f'"{choices[0]}"')
        if value is None:
            return None
        for choice in choices:
            if value.lower() == choice:
                return choice
        raise self.error(key, f"is {value!r}", f"use one of: {', '.join(str(c) for c in choices)}")

    def url(self, key: str) -> str | None:
        value = self.string(key, '"http://127.0.0.1:8080/v1"')
        if value is not None and not value.startswith(("http://", "https://")):
            raise self.error(key, "is not an http:// or https:// URL", 'write it like "http://127.0.0.1:8080/v1"')
        return value.rstrip("/") if value is not None else None


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# --- sections --------------------------------------------------------------------------------------------


def _parse_models(top: _Table) -> dict[str, ModelConfig]:
    value = top.data.get("models")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise top.error(
            "models", f"must be a table, got {_type_name(value)}", "define models as [models.<alias>] tables"
        )
    models: dict[str, ModelConfig] = {}
    for alias, body in value.items():
        if not _ALIAS.fullmatch(alias):
            raise top.error(f"models.{alias}", "is not a valid alias", "use letters, digits and . _ - : @ / only")
        if not isinstance(body, dict):
            raise top.error(
                f"models.{alias}", f"must be a table, got {_type_name(body)}", f"write it as [models.{alias}]"
            )
        models[alias] = _parse_model(_Table(top.file, f"models.{alias}", body, _MODEL_KEYS))
    return models


def _parse_model(table: _Table) -> ModelConfig:
    raw_provider = table.string("provider", '"openrouter"')
    if raw_provider is None:
        raise table.error("provider", "is missing", 'add provider = "openrouter", "anthropic" or "openai_compatible"')
    try:
        provider = normalize_provider_name(raw_provider)
    except ConfigError:
        raise table.error("provider", f"unknown provider {raw_provider!r}", _PROVIDER_FIX) from None
    model = table.string("model", '"author/slug"')
    if model is None:
        raise table.error("model", "is missing", 'add model = "<the provider\'s model ID>"')
    routing = table.string_list("routing", '["anthropic", "google-vertex"]')
    allow_fallbacks = table.boolean("allow_fallbacks")
    if provider != "openrouter":
        for key, value in (("routing", routing), ("allow_fallbacks", allow_fallbacks)):
            if value is not None:
                raise table.error(key, f"only applies to OpenRouter models, but provider is '{provider}'", "remove it")
    if routing is not None and not routing:
        raise table.error(
            "routing", "has no non-empty provider slug", 'list at least one, like routing = ["anthropic"]'
        )
    base_url = table.url("base_url")
    if provider == "openai_compatible" and base_url is None:
        raise table.error(
            "base_url", "is required for provider 'openai_compatible'", 'add base_url = "http://host:port/v1"'
        )
    api_key_env = table.string("api_key_env", '"MY_PROVIDER_API_KEY"')
    if api_key_env is not None and not _VARIABLE_NAME.fullmatch(api_key_env):
        # Never echo the value: people paste the key itself here.
        raise table.error(
            "api_key_env", "must be the NAME of an environment variable", "like MY_API_KEY; put the key in .env"
        )
    return ModelConfig(
        alias=table.name.removeprefix("models."),
        provider=provider,
        model=model,
        routing=routing or (),
        allow_fallbacks=allow_fallbacks,
        base_url=base_url,
        api_key_env=api_key_env,
        context_window=table.integer("context_window"),
        max_tokens=table.integer("max_tokens"),
        reasoning=_reasoning(table, provider),
    )


def _reasoning(model: _Table, provider: ProviderKind) -> ReasoningConfig | None:
    """`reasoning = { effort, max_tokens, exclude, enabled }` (docs/reasoning.md)."""
    value = model.data.get("reasoning")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise model.error(
            "reasoning", f"must be a table, got {_type_name(value)}", 'write it like reasoning = { effort = "high" }'
        )
    table = model.table("reasoning", _REASONING_KEYS)
    effort = table.choice("effort", REASONING_EFFORTS)
    max_tokens = table.integer("max_tokens")
    if effort is not None and max_tokens is not None:
        raise table.error("max_tokens", "cannot be set together with effort", "keep one of effort and max_tokens")
    if provider == "openai_compatible" and max_tokens is not None:
        raise table.error(
            "max_tokens",
            "has no equivalent on OpenAI-compatible servers (they take reasoning_effort)",
            f'use effort = "medium" (one of: {", ".join(REASONING_EFFORTS)})',
        )
    if provider == "anthropic" and max_tokens is not None and max_tokens < 1024:
        raise table.error("max_tokens", f"must be at least 1024 for Anthropic thinking, got {max_tokens}", "raise it")
    return ReasoningConfig(
        effort=effort, max_tokens=max_tokens, exclude=table.boolean("exclude"), enabled=table.boolean("enabled")
    )


def _default_chain(
    top: _Table, models: Mapping[str, ModelConfig], default_provider: ProviderKind | None, secrets: Secrets
) -> tuple[str, ...]:
    chain = _configured_chain(top)
    for alias in chain:
        if alias not in models:
            raise top.error(
                "default_model",
                f"alias '{alias}' is not defined",
                f"add a [models.{alias}] table or use one of: {', '.join(models)}",
            )
    if default_provider is None:
        if chain:
            return chain
        keyed = (kind for kind in _KEY_PREFERENCE if secrets.has(DEFAULT_KEY_ENV[kind]))
        return (_first_model_of(models, next(keyed, "openrouter")),)
    # DEFAULT_PROVIDER wins over the file: keep the chain's models of that provider, else pick one.
    chain = tuple(alias for alias in chain if models[alias].provider == default_provider)
    return chain or (_first_model_of(models, default_provider),)


def _first_model_of(models: Mapping[str, ModelConfig], provider: ProviderKind) -> str:
    """The first model of a provider: configured ones in file order come before the built-in alias."""
    for alias, model in models.items():
        if model.provider == provider:
            return alias
    raise ConfigError(
        f"environment variable DEFAULT_PROVIDER={provider} but no model uses that provider; add a [models.<alias>] "
        'table with provider = "openai_compatible" and base_url to config.toml, or change DEFAULT_PROVIDER'
    )


def _configured_chain(top: _Table) -> tuple[str, ...]:
    value = top.data.get("default_model")
    if value is None:
        return ()
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
    else:
        raise top.error(
            "default_model",
            f"must be an alias or a list of aliases, got {_type_name(value)}",
            'write default_model = ["fast", "backup"]',
        )
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def _openrouter(top: _Table, env: Mapping[str, str]) -> OpenRouterSettings:
    table = top.table("openrouter", ("http_referer", "app_name", "catalog_ttl_seconds"))
    defaults = OpenRouterSettings()
    ttl = table.number("catalog_ttl_seconds")
    referer, app_name = table.string("http_referer", '"https://example.com"'), table.string("app_name", '"My App"')
    return OpenRouterSettings(
        base_url=_env_url(env, "OPENROUTER_BASE_URL") or defaults.base_url,
        http_referer=env.get("OPENROUTER_HTTP_REFERER", "").strip() or referer,
        app_name=env.get("OPENROUTER_APP_NAME", "").strip() or app_name,
        catalog_ttl_seconds=ttl if ttl is not None else defaults.catalog_ttl_seconds,
    )


def _gateway(table: _Table) -> GatewaySettings:
    defaults = GatewaySettings()
    grace = table.number("shutdown_grace_seconds")
    return GatewaySettings(
        host=table.string("host", '"127.0.0.1"') or defaults.host,
        port=_or(table.integer("port", minimum=0, maximum=65535), defaults.port),
        allowed_origins=_or(
            table.string_list("allowed_origins", '["http://localhost:5173"]'), defaults.allowed_origins
        ),
        max_frame_bytes=_or(table.integer("max_frame_bytes"), defaults.max_frame_bytes),
        shutdown_grace_seconds=grace if grace is not None else defaults.shutdown_grace_seconds,
        max_body_bytes=_or(table.integer("max_body_bytes"), defaults.max_body_bytes),
        send_queue_bytes=_or(table.integer("send_queue_bytes"), defaults.send_queue_bytes),
        max_connections=_or(table.integer("max_connections"), defaults.max_connections),
    )


def _shell(tools: _Table, config_dir: Path) -> ShellSettings:
    table = tools.table("shell", ("workspace", "timeout_seconds", "approval", "output_cap_bytes", "pass_env"))
    defaults = ShellSettings()
    workspace = table.string("workspace", '"~/work"')
    timeout = table.number("timeout_seconds", minimum=0.001)
    return ShellSettings(
        workspace=(config_dir / Path(workspace).expanduser()) if workspace is not None else None,
        timeout_seconds=timeout if timeout is not None else defaults.timeout_seconds,
        approval=_or(table.choice("approval", _APPROVALS), defaults.approval),
        output_cap_bytes=_or(table.integer("output_cap_bytes"), defaults.output_cap_bytes),
        pass_env=_or(table.string_list("pass_env", '["GITHUB_TOKEN"]'), defaults.pass_env),
    )


def _agent(table: _Table) -> AgentSettings:
    defaults = AgentSettings()
    return AgentSettings(
        max_steps=_or(table.integer("max_steps"), defaults.max_steps),
        message_limit=_or(table.integer("message_limit"), defaults.message_limit),
        system_prompt=table.string("system_prompt"),
    )


def _logging(table: _Table) -> LoggingSettings:
    defaults = LoggingSettings()
    return LoggingSettings(
        level=_or(table.choice("level", _LOG_LEVELS), defaults.level),
        log_bodies=_or(table.boolean("log_bodies"), defaults.log_bodies),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
