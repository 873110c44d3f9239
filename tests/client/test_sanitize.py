"""`terminal_safe`: whatever a model or a tool wrote reaches the terminal without escape or control sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from t_koma.client.sanitize import terminal_safe


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("clear\x1b[2J\x1b[Hscreen", "clearscreen"),  # erase and home
        ("title\x1b]0;pwned\x07 set", "title set"),  # window title, BEL-terminated
        ("link \x1b]8;;https://evil.example\x1b\\here\x1b]8;;\x1b\\", "link here"),  # OSC 8 hyperlink, ST
        ("copy\x1b]52;c;ZXZpbA==\x07", "copy"),  # clipboard write
        ("\x9b31mred\x9b0m", "red"),  # 8-bit CSI
        ("\x9d0;pwned\x9c8-bit OSC", "8-bit OSC"),
        ("query\x1b[6n\x1b[c", "query"),  # cursor-position and device-attribute queries
        ("alt\x1b[?1049h screen", "alt screen"),
        ("\x1bcreset", "reset"),  # ESC c (full reset)
        ("lone\x1b", "lone"),  # an escape split off by the stream: harmless alone, and removed
        ("over\rwrite\x08\x07\x00", "overwrite"),
        ("keeps\ttabs\nand lines\n", "keeps\ttabs\nand lines\n"),
        ("ünïcode ✻ 日本語", "ünïcode ✻ 日本語"),
    ],
)
def test_escape_and_control_sequences_are_removed(hostile: str, shown: str) -> None:
    assert terminal_safe(hostile) == shown


@given(st.text(alphabet=st.characters(max_codepoint=0xFF)))
def test_nothing_that_can_start_a_sequence_survives(text: str) -> None:
    safe = terminal_safe(text)
    assert not any((ord(ch) < 0x20 and ch not in "\t\n") or 0x7F <= ord(ch) <= 0x9F for ch in safe)
    assert terminal_safe(safe) == safe
