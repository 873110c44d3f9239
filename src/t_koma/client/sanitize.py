"""Model output made safe to show in a terminal: the one place where control characters are made visible.

Everything a model (or a tool it ran) wrote is hostile: an answer, its reasoning, a tool call's command or its
output could carry escape sequences that clear the screen, erase a line and redraw it (spoofing the approval
prompt), retitle the window, plant a hyperlink or write to the clipboard. `terminal_safe` neither passes nor
silently drops them: it shows every control character as a visible stand-in, so the user sees exactly what was
there and the terminal interprets none of it:

- C0 controls and DEL as their Unicode control pictures: ESC as `␛` (so `\\x1b[2K` reads `␛[2K`), CR as `␍`,
  BEL as `␇`, NUL as `␀`, DEL as `␡`;
- C1 controls (0x80–0x9f, the 8-bit CSI, OSC, ST …) as `\\xNN`;
- the bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069), which reorder what is drawn, as `\\uNNNN`.

Newline and tab are kept. t-koma's own styling is added after this (rich styles, the dim escape of `ask`), never
fed through it. `--json` output does not use it: JSON escapes control characters itself, and keeps them exact.
"""

from __future__ import annotations

import json
import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""Every character `terminal_safe` replaces: text without any (the usual case) is returned as it is."""


def _stand_in(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟ (ESC is ␛)
    if code == 0x7F:
        return "␡"
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


_RANGES = (range(0x00, 0x09), range(0x0B, 0x20), range(0x7F, 0xA0), range(0x202A, 0x202F), range(0x2066, 0x206A))
_VISIBLE = {code: _stand_in(code) for codes in _RANGES for code in codes}


def needs_escaping(text: str) -> bool:
    """Whether `terminal_safe` changes `text` (it holds a control character other than newline and tab)."""
    return _CONTROL.search(text) is not None


def terminal_safe(text: str) -> str:
    """`text` with every control character but newline and tab shown as a visible stand-in (ESC as `␛`)."""
    if not needs_escaping(text):
        return text
    return text.translate(_VISIBLE)


ESCAPED_WARNING = "⚠ this command contains control characters (shown as ␛, ␍, \\xNN …): it may not do what it seems to"
"""The line shown under a tool call whose command `terminal_safe` had to change."""


def command_of(name: str, arguments: str) -> str:
    """What a tool call is shown as (raw, before `terminal_safe`): the whole shell command of a `run_shell_command`
    call, else the arguments as compact JSON."""
    try:
        parsed = json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get("command"), str):
        return str(parsed["command"])
    return json.dumps(parsed, ensure_ascii=False)
