"""`terminal_safe`: whatever a model or a tool wrote reaches the terminal with its control characters visible
(ESC as `␛`, CR as `␍`, C1 as `\\xNN` …), never interpreted and never silently dropped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from t_koma.client.sanitize import needs_escaping, terminal_safe


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("touch X #\x1b[2K\x1b[1G│ $ ls -la", "touch X #␛[2K␛[1G│ $ ls -la"),  # the approval-prompt spoof
        ("clear\x1b[2J\x1b[Hscreen", "clear␛[2J␛[Hscreen"),  # erase and home
        ("title\x1b]0;pwned\x07 set", "title␛]0;pwned␇ set"),  # window title, BEL-terminated
        ("link \x1b]8;;https://evil.example\x1b\\here", "link ␛]8;;https://evil.example␛\\here"),  # OSC 8, ST
        ("copy\x1b]52;c;ZXZpbA==\x07", "copy␛]52;c;ZXZpbA==␇"),  # clipboard write
        ("\x9b31mred\x9b0m", "\\x9b31mred\\x9b0m"),  # 8-bit CSI
        ("\x9d0;pwned\x9c8-bit OSC", "\\x9d0;pwned\\x9c8-bit OSC"),
        ("\x1bcreset", "␛creset"),  # ESC c (full reset)
        ("lone\x1b", "lone␛"),  # an escape split off by the stream: shown like any other
        ("over\rwrite\x08\x07\x00\x7f", "over␍write␈␇␀␡"),
        ("safe\u202eexe.txt", "safe\\u202eexe.txt"),  # a right-to-left override reorders what is drawn
        ("keeps\ttabs\nand lines\n", "keeps\ttabs\nand lines\n"),
        ("ünïcode ✻ 日本語 ␛ literal", "ünïcode ✻ 日本語 ␛ literal"),
    ],
)
def test_control_characters_are_shown_not_interpreted(hostile: str, shown: str) -> None:
    assert terminal_safe(hostile) == shown
    assert needs_escaping(hostile) == (hostile != shown)


def test_clean_text_is_returned_as_it_is() -> None:
    text = "plain text\twith a tab\n" * 1000
    assert terminal_safe(text) is text


@given(st.text(alphabet=st.characters(max_codepoint=0x2100)))
def test_nothing_a_terminal_interprets_survives_and_each_character_stands_alone(text: str) -> None:
    safe = terminal_safe(text)
    assert not any((ord(ch) < 0x20 and ch not in "\t\n") or 0x7F <= ord(ch) <= 0x9F for ch in safe)
    assert not needs_escaping(safe)
    # character by character: a stream split anywhere (an escape in one delta, its rest in the next) shows the same
    assert safe == "".join(terminal_safe(ch) for ch in text)
