"""Model output made safe to show in a terminal: the one place where escape and control sequences are neutralised.

Everything a model (or a tool it ran) wrote is hostile: an answer, its reasoning or a command's output could
carry escape sequences that clear the screen, move the cursor, retitle the window, plant a hyperlink or write to
the clipboard. `terminal_safe` removes them — 7-bit (`ESC [`, `ESC ]`, …) and 8-bit (C1) forms — and every
other control character except newline and tab, before rich renders the text.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: cursor moves, erases, colours, terminal queries
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"  # OSC, DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]"  # other escapes: charset designations, reset (ESC c), keypad modes
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # any other control character (a lone ESC, CR, BEL, C1 …); \t and \n stay
)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Every sequence above starts with one of these: text without any (the usual case) is returned as it is."""


def terminal_safe(text: str) -> str:
    """`text` without escape sequences or control characters (newlines and tabs are kept)."""
    if _CONTROL.search(text) is None:
        return text
    return _UNSAFE.sub("", text)
