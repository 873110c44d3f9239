"""Where the config and data directories are, and that finding them creates nothing."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from t_koma.config import paths


def test_variables_choose_the_directories(tmp_path: Path) -> None:
    environ = {"T_KOMA_CONFIG_DIR": str(tmp_path / "cfg"), "T_KOMA_DATA_DIR": str(tmp_path / "data")}

    assert paths.config_dir(environ) == tmp_path / "cfg"
    assert paths.data_dir(environ) == tmp_path / "data"
    assert paths.config_file(paths.config_dir(environ)) == tmp_path / "cfg" / "config.toml"
    assert paths.env_file(tmp_path) == tmp_path / ".env"


def test_without_variables_the_platform_user_directories_are_used() -> None:
    assert paths.config_dir({}) == Path(platformdirs.user_config_dir("t-koma", appauthor=False))
    assert paths.data_dir({}) == Path(platformdirs.user_data_dir("t-koma", appauthor=False))
    assert paths.config_dir({}).name == "t-koma"


def test_blank_variables_count_as_unset() -> None:
    assert paths.config_dir({"T_KOMA_CONFIG_DIR": "  "}) == paths.config_dir({})
    assert paths.data_dir({"T_KOMA_DATA_DIR": ""}) == paths.data_dir({})


def test_home_is_expanded() -> None:
    assert paths.config_dir({"T_KOMA_CONFIG_DIR": "~/koma"}) == Path.home() / "koma"


def test_finding_directories_creates_nothing(tmp_path: Path) -> None:
    environ = {"T_KOMA_CONFIG_DIR": str(tmp_path / "absent-config"), "T_KOMA_DATA_DIR": str(tmp_path / "absent-data")}

    paths.config_file(paths.config_dir(environ))
    paths.data_dir(environ)

    assert not (tmp_path / "absent-config").exists()
    assert not (tmp_path / "absent-data").exists()
