"""`load_config`: precedence, `.env` handling, built-in defaults, secrets and every validation message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from t_koma.config.loader import BUILTIN_MODELS, load_config
from t_koma.config.model import Config
from t_koma.errors import ConfigError
from t_koma.messages import ReasoningConfig
from t_koma.providers.factory import ModelResolver

OPENROUTER_SECRET = "sk-or-v1-SECRET-value-1111"
ANTHROPIC_SECRET = "sk-ant-SECRET-value-2222"
CUSTOM_SECRET = "custom-SECRET-value-3333"


class Setup:
    """A config dir, a data dir and a working dir under tmp_path, plus the environment that points at them."""

    def __init__(self, root: Path) -> None:
        self.config_dir = root / "cfg"
        self.data_dir = root / "dat"
        self.cwd = root / "cwd"
        for directory in (self.config_dir, self.data_dir, self.cwd):
            directory.mkdir(parents=True)
        self.environ = {"T_KOMA_CONFIG_DIR": str(self.config_dir), "T_KOMA_DATA_DIR": str(self.data_dir)}

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    def toml(self, text: str) -> Setup:
        self.config_file.write_text(text, encoding="utf-8")
        return self

    def load(self, **env: str) -> Config:
        return load_config({**self.environ, **env}, cwd=self.cwd)

    def error(self, **env: str) -> str:
        with pytest.raises(ConfigError) as caught:
            self.load(**env)
        message = caught.value.message
        assert "\n" not in message, "config errors are one line"
        return message


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path / "t")


# --- no config file -------------------------------------------------------------------------------------


def test_no_config_file_gives_builtin_defaults_and_writes_nothing(setup: Setup) -> None:
    config = setup.load()

    assert config.config_file is None
    assert config.config_dir == setup.config_dir
    assert config.data_dir == setup.data_dir
    assert config.default_chain == ("openrouter",)
    assert config.models["openrouter"].provider == "openrouter"
    assert config.models["openrouter"].model == "anthropic/claude-sonnet-4.5"
    assert config.models["anthropic"].model == "claude-sonnet-4-5"
    assert config.key_variables == ("OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")
    assert config.default_provider is None
    assert config.openrouter.base_url == "https://openrouter.ai/api/v1"
    assert config.anthropic.base_url == "https://api.anthropic.com"
    assert (config.gateway.host, config.gateway.port) == ("127.0.0.1", 3000)
    assert list(setup.config_dir.iterdir()) == []
    assert list(setup.data_dir.iterdir()) == []


def test_missing_config_dir_is_not_created(setup: Setup, tmp_path: Path) -> None:
    absent = tmp_path / "nowhere"

    config = setup.load(T_KOMA_CONFIG_DIR=str(absent))

    assert config.config_dir == absent
    assert not absent.exists()


@pytest.mark.parametrize(
    ("keys", "chain"),
    [
        ({}, ("openrouter",)),
        ({"OPENROUTER_API_KEY": OPENROUTER_SECRET}, ("openrouter",)),
        ({"ANTHROPIC_API_KEY": ANTHROPIC_SECRET}, ("anthropic",)),
        ({"ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "OPENROUTER_API_KEY": OPENROUTER_SECRET}, ("anthropic",)),
        ({"ANTHROPIC_API_KEY": "   ", "OPENROUTER_API_KEY": OPENROUTER_SECRET}, ("openrouter",)),
    ],
)
def test_without_default_model_the_first_provider_with_a_key_is_the_default(
    setup: Setup, keys: dict[str, str], chain: tuple[str, ...]
) -> None:
    assert setup.load(**keys).default_chain == chain


@pytest.mark.parametrize("spelling", ["openrouter", "OpenRouter", "open_router", " OPENROUTER "])
def test_default_provider_picks_the_builtin_alias(setup: Setup, spelling: str) -> None:
    config = setup.load(DEFAULT_PROVIDER=spelling, ANTHROPIC_API_KEY=ANTHROPIC_SECRET)

    assert config.default_provider == "openrouter"
    assert config.default_chain == ("openrouter",)


def test_default_provider_prefers_a_configured_model_of_that_provider(setup: Setup) -> None:
    setup.toml('[models.kimi]\nprovider = "openrouter"\nmodel = "moonshotai/kimi-k2.5"\n')

    assert setup.load(DEFAULT_PROVIDER="openrouter").default_chain == ("kimi",)
    assert setup.load(DEFAULT_PROVIDER="anthropic").default_chain == ("anthropic",)


def test_default_provider_wins_over_the_files_default_model(setup: Setup) -> None:
    setup.toml(
        'default_model = ["kimi", "claude", "gpt"]\n'
        '[models.kimi]\nprovider = "openrouter"\nmodel = "moonshotai/kimi-k2.5"\n'
        '[models.claude]\nprovider = "anthropic"\nmodel = "claude-sonnet-4-5"\n'
        '[models.gpt]\nprovider = "openrouter"\nmodel = "openai/gpt-5"\n'
    )

    assert setup.load().default_chain == ("kimi", "claude", "gpt")
    assert setup.load(DEFAULT_PROVIDER="openrouter").default_chain == ("kimi", "gpt")
    assert setup.load(DEFAULT_PROVIDER="anthropic").default_chain == ("claude",)


def test_default_provider_openai_compatible_needs_a_configured_server(setup: Setup) -> None:
    message = setup.error(DEFAULT_PROVIDER="openai-compatible")
    assert "DEFAULT_PROVIDER=openai_compatible" in message
    assert "base_url" in message

    setup.toml(
        '[models.local]\nprovider = "openai_compatible"\nmodel = "llama3"\nbase_url = "http://127.0.0.1:8080/v1"\n'
    )
    assert setup.load(DEFAULT_PROVIDER="OpenAICompatible").default_chain == ("local",)


def test_bad_default_provider_is_rejected(setup: Setup) -> None:
    message = setup.error(DEFAULT_PROVIDER="gemini")

    assert message == (
        "environment variable DEFAULT_PROVIDER='gemini' is not a provider; "
        "set it to openrouter, anthropic or openai_compatible, or unset it"
    )


# --- a full config file ---------------------------------------------------------------------------------

FULL = """
default_model = ["kimi", " ", "local", "kimi"]

[models.kimi]
provider = "OpenRouter"
model = "moonshotai/kimi-k2.5"
routing = [" anthropic ", "", "google-vertex"]
allow_fallbacks = false
context_window = 262144
max_tokens = 8192

[models.local]
provider = "openai-compatible"
model = "qwen3:8b"
base_url = "http://127.0.0.1:8080/v1/"
api_key_env = "LOCAL_LLM_KEY"

[models.openrouter]
provider = "openrouter"
model = "openai/gpt-5"

[openrouter]
http_referer = "https://file.example"
app_name = "From File"
catalog_ttl_seconds = 60

[gateway]
host = "0.0.0.0"
port = 8123
allowed_origins = ["http://localhost:5173"]
max_frame_bytes = 65536
shutdown_grace_seconds = 2.5

[tools.shell]
workspace = "work"
timeout_seconds = 30
approval = "AUTO"
output_cap_bytes = 1000

[agent]
max_steps = 4
message_limit = 12
system_prompt = "Be brief."

[logging]
level = "DEBUG"
log_bodies = true
"""


def test_every_key_of_a_full_file_is_read(setup: Setup) -> None:
    config = setup.toml(FULL).load(LOCAL_LLM_KEY=CUSTOM_SECRET)

    assert config.config_file == setup.config_file
    assert config.default_chain == ("kimi", "local")
    kimi = config.models["kimi"]
    assert (kimi.provider, kimi.model) == ("openrouter", "moonshotai/kimi-k2.5")
    assert kimi.routing == ("anthropic", "google-vertex")
    assert kimi.allow_fallbacks is False
    assert (kimi.context_window, kimi.max_tokens) == (262144, 8192)
    local = config.models["local"]
    assert (local.provider, local.base_url, local.api_key_env) == (
        "openai_compatible",
        "http://127.0.0.1:8080/v1",
        "LOCAL_LLM_KEY",
    )
    assert config.models["openrouter"].model == "openai/gpt-5", "a [models.<name>] table replaces a built-in alias"
    assert config.models["anthropic"] == BUILTIN_MODELS["anthropic"]
    assert list(config.models)[:3] == ["kimi", "local", "openrouter"]
    assert (config.openrouter.http_referer, config.openrouter.app_name) == ("https://file.example", "From File")
    assert config.openrouter.catalog_ttl_seconds == 60.0
    assert config.gateway.host == "0.0.0.0"
    assert config.gateway.port == 8123
    assert config.gateway.allowed_origins == ("http://localhost:5173",)
    assert (config.gateway.max_frame_bytes, config.gateway.shutdown_grace_seconds) == (65536, 2.5)
    assert config.shell.workspace == setup.config_dir / "work"
    assert (config.shell.timeout_seconds, config.shell.approval, config.shell.output_cap_bytes) == (30.0, "auto", 1000)
    assert (config.agent.max_steps, config.agent.message_limit, config.agent.system_prompt) == (4, 12, "Be brief.")
    assert (config.logging.level, config.logging.log_bodies) == ("debug", True)
    assert config.key_variables == ("OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LOCAL_LLM_KEY")
    assert config.secrets.get("LOCAL_LLM_KEY") == CUSTOM_SECRET


def test_absolute_and_home_workspaces(setup: Setup, tmp_path: Path) -> None:
    assert setup.toml(f'[tools.shell]\nworkspace = "{tmp_path}"\n').load().shell.workspace == tmp_path
    assert setup.toml('[tools.shell]\nworkspace = "~/w"\n').load().shell.workspace == Path.home() / "w"


def test_single_alias_and_blank_default_model(setup: Setup) -> None:
    assert setup.toml('default_model = "anthropic"\n').load().default_chain == ("anthropic",)
    blank = setup.toml('default_model = ""\n').load(ANTHROPIC_API_KEY=ANTHROPIC_SECRET)
    assert blank.default_chain == ("anthropic",), "an empty default_model counts as unset"


# --- precedence: environment > .env > config.toml > defaults -------------------------------------------


def test_environment_wins_over_the_file_for_openrouter_attribution(setup: Setup) -> None:
    setup.toml('[openrouter]\nhttp_referer = "https://file.example"\napp_name = "From File"\n')

    config = setup.load(OPENROUTER_HTTP_REFERER="https://env.example", OPENROUTER_APP_NAME="From Env")

    assert (config.openrouter.http_referer, config.openrouter.app_name) == ("https://env.example", "From Env")


def test_base_url_variables_override_the_upstreams(setup: Setup) -> None:
    config = setup.load(OPENROUTER_BASE_URL="http://127.0.0.1:9/api/v1/", ANTHROPIC_BASE_URL="http://127.0.0.1:8")

    assert config.openrouter.base_url == "http://127.0.0.1:9/api/v1"
    assert config.anthropic.base_url == "http://127.0.0.1:8"


def test_bad_base_url_variable_is_rejected_without_echoing_it(setup: Setup) -> None:
    message = setup.error(OPENROUTER_BASE_URL="ftp://user:pw@host")

    assert message == "environment variable OPENROUTER_BASE_URL is not an http:// or https:// URL; fix or unset it"


def test_dotenv_in_cwd_then_config_dir_never_overriding(setup: Setup) -> None:
    (setup.cwd / ".env").write_text(f"OPENROUTER_API_KEY={OPENROUTER_SECRET}\n")
    (setup.config_dir / ".env").write_text(
        f"OPENROUTER_API_KEY=config-dir-key\nOPENROUTER_APP_NAME=config-dir-app\nANTHROPIC_API_KEY={ANTHROPIC_SECRET}\n"
        "DEFAULT_PROVIDER=openrouter\n"
    )

    config = setup.load(DEFAULT_PROVIDER="anthropic")

    assert config.secrets.get("OPENROUTER_API_KEY") == OPENROUTER_SECRET, "the cwd .env is read first"
    assert config.openrouter.app_name == "config-dir-app"
    assert config.default_provider == "anthropic", "the environment wins over .env"
    assert config.secrets.get("ANTHROPIC_API_KEY") == ANTHROPIC_SECRET


def test_a_variable_that_is_set_empty_is_not_overridden_by_dotenv(setup: Setup) -> None:
    (setup.cwd / ".env").write_text(f"OPENROUTER_API_KEY={OPENROUTER_SECRET}\n")

    assert not setup.load(OPENROUTER_API_KEY="").secrets.has("OPENROUTER_API_KEY")


def test_dotenv_values_are_taken_literally(setup: Setup) -> None:
    (setup.config_dir / ".env").write_text("OPENROUTER_APP_NAME=${HOME}-app\n")

    assert setup.load().openrouter.app_name == "${HOME}-app"


def test_a_checkouts_dotenv_may_only_provide_keys(setup: Setup, tmp_path: Path) -> None:
    """A cloned repository's .env must not redirect the keys (base URLs) or pick a config (approval = "auto",
    api_key_env = "GITHUB_TOKEN") or data dir: only the key variables are taken, the rest is named in a warning."""
    hostile = tmp_path / "hostile-config"
    hostile.mkdir()
    (hostile / "config.toml").write_text('[tools.shell]\napproval = "auto"\n')
    (setup.cwd / ".env").write_text(
        f"OPENROUTER_API_KEY={OPENROUTER_SECRET}\nOPENROUTER_BASE_URL=http://attacker.example/v1\n"
        f"ANTHROPIC_BASE_URL=http://attacker.example\nT_KOMA_CONFIG_DIR={hostile}\nT_KOMA_DATA_DIR={hostile}\n"
        "DEFAULT_PROVIDER=openai_compatible\nGITHUB_TOKEN=ghp_x\n"
    )
    warnings: list[str] = []

    config = load_config(setup.environ, cwd=setup.cwd, warn=warnings.append)

    assert config.secrets.get("OPENROUTER_API_KEY") == OPENROUTER_SECRET
    assert config.openrouter.base_url == "https://openrouter.ai/api/v1"
    assert config.anthropic.base_url == "https://api.anthropic.com"
    assert (config.config_dir, config.data_dir) == (setup.config_dir, setup.data_dir)
    assert config.shell.approval == "ask"
    assert config.default_provider is None
    assert "GITHUB_TOKEN" not in config.key_variables
    [warning] = warnings
    assert warning.startswith(f"{setup.cwd / '.env'}: ignored OPENROUTER_BASE_URL, ANTHROPIC_BASE_URL, ")
    assert "T_KOMA_CONFIG_DIR" in warning and "GITHUB_TOKEN" in warning
    assert "may only set ANTHROPIC_API_KEY, OPENAI_API_KEY, OPENROUTER_API_KEY" in warning
    assert OPENROUTER_SECRET not in warning


def test_a_checkouts_dotenv_with_only_keys_warns_about_nothing(setup: Setup) -> None:
    (setup.cwd / ".env").write_text(f"ANTHROPIC_API_KEY={ANTHROPIC_SECRET}\n")
    warnings: list[str] = []

    config = load_config(setup.environ, cwd=setup.cwd, warn=warnings.append)

    assert config.secrets.get("ANTHROPIC_API_KEY") == ANTHROPIC_SECRET
    assert warnings == []


def test_the_config_dirs_own_dotenv_is_trusted_even_as_the_working_directory(setup: Setup) -> None:
    (setup.config_dir / ".env").write_text("OPENROUTER_APP_NAME=mine\n")
    warnings: list[str] = []

    config = load_config(setup.environ, cwd=setup.config_dir, warn=warnings.append)

    assert config.openrouter.app_name == "mine"
    assert warnings == []


def test_the_warning_is_printed_on_stderr_by_default(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    (setup.cwd / ".env").write_text("OPENROUTER_BASE_URL=http://attacker.example/v1\n")

    setup.load()

    assert capsys.readouterr().err.startswith(f"t-koma: warning: {setup.cwd / '.env'}: ignored OPENROUTER_BASE_URL")


def test_load_config_without_arguments_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", OPENROUTER_SECRET)
    Path(".env").write_text("ANTHROPIC_API_KEY=from-dotenv\n")
    before = dict(os.environ)

    config = load_config()

    assert config.config_dir == Path(os.environ["T_KOMA_CONFIG_DIR"])
    assert config.secrets.get("OPENROUTER_API_KEY") == OPENROUTER_SECRET
    assert config.secrets.get("ANTHROPIC_API_KEY") == "from-dotenv"
    assert dict(os.environ) == before, "loading never mutates os.environ"


# --- secrets --------------------------------------------------------------------------------------------


def test_secrets_never_appear_in_repr_or_str(setup: Setup) -> None:
    setup.toml('[models.x]\nprovider = "openrouter"\nmodel = "a/b"\napi_key_env = "X_KEY"\n')

    config = setup.load(OPENROUTER_API_KEY=OPENROUTER_SECRET, ANTHROPIC_API_KEY=ANTHROPIC_SECRET, X_KEY=CUSTOM_SECRET)

    for text in (repr(config), str(config), repr(config.secrets), str(config.secrets)):
        for secret in (OPENROUTER_SECRET, ANTHROPIC_SECRET, CUSTOM_SECRET):
            assert secret not in text
    assert "X_KEY" in repr(config.secrets)
    assert set(config.secrets.all_values()) == {OPENROUTER_SECRET, ANTHROPIC_SECRET, CUSTOM_SECRET}


def test_only_key_variables_become_secrets(setup: Setup) -> None:
    config = setup.load(OPENROUTER_API_KEY=OPENROUTER_SECRET, SOME_OTHER_TOKEN="not-a-provider-key")

    assert config.secrets.all_values() == (OPENROUTER_SECRET,)


def test_api_key_env_holding_a_key_is_rejected_without_echoing_it(setup: Setup) -> None:
    setup.toml(f'[models.x]\nprovider = "openrouter"\nmodel = "a/b"\napi_key_env = "{OPENROUTER_SECRET}"\n')

    message = setup.error()

    assert OPENROUTER_SECRET not in message
    assert "key 'models.x.api_key_env': must be the NAME of an environment variable" in message


# --- validation messages --------------------------------------------------------------------------------

MODEL = '[models.m]\nprovider = "openrouter"\nmodel = "a/b"\n'
ANTHROPIC_MODEL = '[models.m]\nprovider = "anthropic"\nmodel = "claude-sonnet-4-5"\n'


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            'default_model = "a"\n[gateway]\nport = = 3\n',
            "TOML syntax error at line 3, column 8: Invalid value; fix the file (see docs/configuration.md)",
        ),
        ("models = [\n", "TOML syntax error: Invalid value (at end of document); fix the file"),
        (
            'defualt_model = "openrouter"\n',
            "key 'defualt_model': unknown key in the top level; did you mean 'default_model'? (allowed: default_model,",
        ),
        (
            MODEL + 'modle = "x"\n',
            "key 'models.m.modle': unknown key in table [models.m]; did you mean 'model'? (allowed: provider, model,",
        ),
        ("[gateway]\nprot = 1\n", "key 'gateway.prot': unknown key in table [gateway]; did you mean 'port'?"),
        ("[tools.shel]\n", "key 'tools.shel': unknown key in table [tools]; did you mean 'shell'?"),
        ("[tools.shell]\napprove = 'ask'\n", "key 'tools.shell.approve': unknown key in table [tools.shell]"),
        ("[openrouter]\nbase_url = 'x'\n", "key 'openrouter.base_url': unknown key in table [openrouter]"),
        ("[agent]\nsteps = 3\n", "key 'agent.steps': unknown key in table [agent]"),
        ("[logging]\nfile = 'x'\n", "key 'logging.file': unknown key in table [logging]"),
        ("[discord]\nenabled = true\n", "key 'discord': unknown key in the top level; remove it"),
        ("[gateway]\nport = '3000'\n", "key 'gateway.port': must be an integer, got a string; write it like port = 1"),
        ("[gateway]\nport = 70000\n", "key 'gateway.port': must be between 0 and 65535, got 70000; change the value"),
        (
            "[gateway]\nallowed_origins = 'x'\n",
            "key 'gateway.allowed_origins': must be a list of strings, got a string",
        ),
        ("[gateway]\nshutdown_grace_seconds = -1\n", "key 'gateway.shutdown_grace_seconds': must be at least 0"),
        ("gateway = 1\n", "key 'gateway': must be a table, got an integer; write it as [gateway]"),
        ("[logging]\nlog_bodies = 'yes'\n", "key 'logging.log_bodies': must be true or false, got a string"),
        ("[logging]\nlevel = 'loud'\n", "key 'logging.level': is 'loud'; use one of: debug, info, warning, error,"),
        ("[agent]\nmax_steps = 0\n", "key 'agent.max_steps': must be at least 1, got 0"),
        ("[agent]\nmessage_limit = true\n", "key 'agent.message_limit': must be an integer, got a boolean"),
        ("[agent]\nsystem_prompt = ' '\n", "key 'agent.system_prompt': is empty"),
        (
            "[tools.shell]\napproval = 'always'\n",
            "key 'tools.shell.approval': is 'always'; use one of: ask, auto, deny",
        ),
        ("[tools.shell]\ntimeout_seconds = 'long'\n", "key 'tools.shell.timeout_seconds': must be a number"),
        ("[openrouter]\ncatalog_ttl_seconds = -5\n", "key 'openrouter.catalog_ttl_seconds': must be at least 0"),
        ("models = 3\n", "key 'models': must be a table, got an integer; define models as [models.<alias>] tables"),
        ("[models]\nfast = 'a/b'\n", "key 'models.fast': must be a table, got a string; write it as [models.fast]"),
        ('[models."my fast"]\n', "key 'models.my fast': is not a valid alias"),
        ("default_model = 3\n", "key 'default_model': must be an alias or a list of aliases, got an integer"),
        (
            'default_model = ["m", "nope"]\n' + MODEL,
            "key 'default_model': alias 'nope' is not defined; add a [models.nope] table or use one of: m, openrouter,",
        ),
        ('[models.m]\nmodel = "a/b"\n', "key 'models.m.provider': is missing; add provider = "),
        ('[models.m]\nprovider = "gemini"\nmodel = "x"\n', "key 'models.m.provider': unknown provider 'gemini'; use"),
        ('[models.m]\nprovider = "openrouter"\n', "key 'models.m.model': is missing"),
        (MODEL + "routing = 'anthropic'\n", "key 'models.m.routing': must be a list of strings, got a string"),
        (MODEL + "routing = [1]\n", "key 'models.m.routing': must contain only strings"),
        (MODEL + "routing = ['', '  ']\n", "key 'models.m.routing': has no non-empty provider slug; list at least one"),
        (MODEL + "routing = []\n", "key 'models.m.routing': has no non-empty provider slug"),
        (
            ANTHROPIC_MODEL + "routing = ['anthropic']\n",
            "key 'models.m.routing': only applies to OpenRouter models, but provider is 'anthropic'; remove it",
        ),
        (ANTHROPIC_MODEL + "allow_fallbacks = true\n", "key 'models.m.allow_fallbacks': only applies to OpenRouter"),
        (MODEL + "context_window = 'big'\n", "key 'models.m.context_window': must be an integer, got a string"),
        (MODEL + "max_tokens = 0\n", "key 'models.m.max_tokens': must be at least 1, got 0"),
        (MODEL + "base_url = 'localhost:8080'\n", "key 'models.m.base_url': is not an http:// or https:// URL"),
        (
            '[models.m]\nprovider = "openai_compatible"\nmodel = "llama"\n',
            "key 'models.m.base_url': is required for provider 'openai_compatible'; add base_url = ",
        ),
        (
            MODEL + "reasoning = { effort = 'hgh' }\n",
            "key 'models.m.reasoning.effort': is 'hgh'; use one of: none, minimal, low, medium, high, xhigh",
        ),
        (
            MODEL + "reasoning = 'high'\n",
            "key 'models.m.reasoning': must be a table, got a string; write it like reasoning = { effort = \"high\" }",
        ),
        (
            MODEL + "reasoning = { efort = 'high' }\n",
            "key 'models.m.reasoning.efort': unknown key in table [models.m.reasoning]; did you mean 'effort'? "
            "(allowed: effort, max_tokens, exclude, enabled)",
        ),
        (
            MODEL + "reasoning = { effort = 'high', max_tokens = 4000 }\n",
            "key 'models.m.reasoning.max_tokens': cannot be set together with effort; keep one of effort and",
        ),
        (MODEL + "reasoning = { max_tokens = 0 }\n", "key 'models.m.reasoning.max_tokens': must be at least 1, got 0"),
        (MODEL + "reasoning = { exclude = 'yes' }\n", "key 'models.m.reasoning.exclude': must be true or false"),
        (
            ANTHROPIC_MODEL + "reasoning = { max_tokens = 512 }\n",
            "key 'models.m.reasoning.max_tokens': must be at least 1024 for Anthropic thinking, got 512; raise it",
        ),
        (
            '[models.m]\nprovider = "openai_compatible"\nmodel = "r1"\nbase_url = "http://h/v1"\n'
            "reasoning = { max_tokens = 4000 }\n",
            "key 'models.m.reasoning.max_tokens': has no equivalent on OpenAI-compatible servers",
        ),
    ],
)
def test_validation_errors_name_the_file_the_key_and_the_fix(setup: Setup, toml: str, expected: str) -> None:
    message = setup.toml(toml).error()

    assert message.startswith(f"{setup.config_file}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("{ effort = 'HIGH' }", ReasoningConfig(effort="high")),
        ("{ max_tokens = 8000, exclude = true }", ReasoningConfig(max_tokens=8000, exclude=True)),
        ("{ enabled = false }", ReasoningConfig(enabled=False)),
        ("{}", ReasoningConfig()),
    ],
)
def test_reasoning_table_reaches_the_model_and_its_provider_spec(
    setup: Setup, table: str, expected: ReasoningConfig
) -> None:
    config = setup.toml(MODEL + f"reasoning = {table}\n").load(OPENROUTER_API_KEY="sk-or-x")

    assert config.models["m"].reasoning == expected
    assert ModelResolver(config).resolve("m").reasoning == expected


def test_models_without_reasoning_leave_the_upstream_default(setup: Setup) -> None:
    config = setup.toml(MODEL).load(OPENROUTER_API_KEY="sk-or-x")

    assert config.models["m"].reasoning is None
    assert ModelResolver(config).resolve("m").reasoning is None


def test_unreadable_config_file_is_reported(setup: Setup) -> None:
    setup.config_file.mkdir()

    assert setup.error() == (
        f"{setup.config_file}: cannot read the config file (IsADirectoryError); fix its permissions or remove it"
    )


def test_toml_nested_too_deeply_is_a_one_line_error(setup: Setup) -> None:
    message = setup.toml("a = " + "[" * 5000 + "]" * 5000 + "\n").error()

    assert message == f"{setup.config_file}: TOML nested too deeply to read; fix the file (see docs/configuration.md)"


@pytest.mark.parametrize("value", [f"{OPENROUTER_SECRET}\r\nX-Evil: 1", f"{OPENROUTER_SECRET}\x00", "a\x1b[2Jb"])
def test_a_key_with_control_characters_is_refused_without_echoing_it(setup: Setup, value: str) -> None:
    message = setup.error(OPENROUTER_API_KEY=value)

    assert message == (
        "OPENROUTER_API_KEY contains a line break or another control character; set it to the key alone "
        "(in the environment or .env)"
    )


def test_surrounding_whitespace_around_a_key_is_dropped(setup: Setup) -> None:
    assert (
        setup.load(OPENROUTER_API_KEY=f" {OPENROUTER_SECRET}\n").secrets.get("OPENROUTER_API_KEY") == OPENROUTER_SECRET
    )
