"""Private files and directories: created with private modes from the start, whatever the umask, and tightened
when an older version left them open."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from t_koma.files import ensure_private_dir, ensure_private_file, is_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The common 022 umask, under which plain `mkdir` / `open` make files others can read."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_missing_directories_are_created_private_at_every_level(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"

    ensure_private_dir(target)

    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700, 0o700, 0o700]


def test_an_open_directory_of_the_user_is_tightened(tmp_path: Path) -> None:
    target = tmp_path / "left-open"
    target.mkdir(mode=0o755)

    ensure_private_dir(target)

    assert mode(target) == 0o700


def test_a_new_file_is_private_from_creation_and_an_open_one_is_tightened(tmp_path: Path) -> None:
    new = ensure_private_file(tmp_path / "private" / "new.db")
    old = tmp_path / "old.db"
    old.write_text("kept")
    old.chmod(0o644)

    ensure_private_file(old)

    assert (mode(new), new.read_bytes()) == (0o600, b"")
    assert (mode(old), old.read_text()) == (0o600, "kept")
    assert is_private(new) and is_private(old)
