"""Where t-koma looks for its configuration and keeps its data.

The config dir holds `config.toml` and an optional `.env`; the data dir holds the SQLite file and caches.
Both come from an explicit environment mapping (only `config.loader` reads the real environment). Nothing here
creates a file or a directory: t-koma never writes a config the user did not ask for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import platformdirs

APP_NAME = "t-koma"
CONFIG_DIR_VARIABLE = "T_KOMA_CONFIG_DIR"
DATA_DIR_VARIABLE = "T_KOMA_DATA_DIR"
CONFIG_FILE_NAME = "config.toml"
ENV_FILE_NAME = ".env"


def config_dir(environ: Mapping[str, str]) -> Path:
    """`$T_KOMA_CONFIG_DIR`, else the platform's user config dir (`~/.config/t-koma` on Linux)."""
    return _from_variable(environ, CONFIG_DIR_VARIABLE) or Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir(environ: Mapping[str, str]) -> Path:
    """`$T_KOMA_DATA_DIR`, else the platform's user data dir (`~/.local/share/t-koma` on Linux)."""
    return _from_variable(environ, DATA_DIR_VARIABLE) or Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_file(directory: Path) -> Path:
    """The `config.toml` inside a config dir (it may not exist)."""
    return directory / CONFIG_FILE_NAME


def env_file(directory: Path) -> Path:
    """The `.env` inside a directory (it may not exist)."""
    return directory / ENV_FILE_NAME


def _from_variable(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    return Path(value).expanduser()
