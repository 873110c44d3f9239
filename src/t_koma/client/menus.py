"""The spec's boxed provider menu and the tool approval prompt, as small inline prompt_toolkit applications.

The box is drawn exactly as in the spec (36 columns inside, wider only when a greyed entry needs room for the
variable to set). Digits choose at once; ↑/↓ then Enter choose; Enter with nothing chosen, or Esc, keeps the
default model. Ctrl+C / Ctrl+D quit the chat (`QuitRequested`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from prompt_toolkit.application import Application
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import FormattedTextControl, Layout, Window
from prompt_toolkit.styles import Style

from t_koma.client.frames import ProviderStatus
from t_koma.client.sanitize import terminal_safe

BOX_INNER_WIDTH = 36
TITLE = "     Select Model Provider"
SPEC_ORDER = ("anthropic", "openrouter")

MENU_STYLE = Style.from_dict(
    {
        "box": "",
        "disabled": "#808080",
        "selected": "reverse",
        "hint": "#808080",
        "error": "#ff5f5f bold",
        "warn": "#ffaf00",
    }
)


class QuitRequested(Exception):
    """The user pressed Ctrl+C or Ctrl+D in a menu: leave the chat. (Not KeyboardInterrupt, which asyncio would
    propagate out of the event loop instead of to the awaiting code.)"""


@dataclass(frozen=True, slots=True)
class ProviderOption:
    name: str
    label: str
    configured: bool
    key_env: str | None = None

    @property
    def text(self) -> str:
        """The entry's text without its number; a greyed entry names the variable to set."""
        if self.configured:
            return self.label
        return f"{self.label} (set {self.key_env})" if self.key_env else f"{self.label} (not configured)"


def menu_options(providers: Sequence[ProviderStatus]) -> list[ProviderOption]:
    """Anthropic, then OpenRouter (the spec's order; shown greyed when their key is missing), then the other
    providers the gateway offers, only when configured (an unconfigured OpenAI-compatible server needs a
    `[models]` entry, not just a variable, so there is nothing to grey out)."""
    by_name = {p.name: p for p in providers}
    ordered = [by_name[name] for name in SPEC_ORDER if name in by_name]
    ordered += [p for p in providers if p.name not in SPEC_ORDER and p.configured]
    return [ProviderOption(p.name, p.label, p.configured, p.key_env) for p in ordered]


def box_lines(options: Sequence[ProviderOption]) -> list[str]:
    """The box as plain lines: the title row, then one row per option (numbered from 1)."""
    rows = [f"  {number}. {option.text}" for number, option in enumerate(options, start=1)]
    width = max([BOX_INNER_WIDTH, len(TITLE) + 2, *(len(row) + 2 for row in rows)])
    lines = ["╔" + "═" * width + "╗", "║" + TITLE.ljust(width) + "║", "╠" + "═" * width + "╣"]
    lines += ["║" + row.ljust(width) + "║" for row in rows]
    lines.append("╚" + "═" * width + "╝")
    return lines


class ProviderMenu:
    """State and keys of the provider menu; `application()` runs it and returns the option, or None for the
    default model."""

    def __init__(self, options: Sequence[ProviderOption], default_label: str) -> None:
        self.options = list(options)
        self.default_label = default_label
        self.selected: int | None = None
        self.message: str | None = None

    def fragments(self) -> StyleAndTextTuples:
        lines = box_lines(self.options)
        out: StyleAndTextTuples = []
        for index, line in enumerate(lines):
            option_index = index - 3
            if 0 <= option_index < len(self.options):
                option = self.options[option_index]
                style = "class:disabled" if not option.configured else "class:box"
                if option_index == self.selected:
                    style += " class:selected"
                out += [("class:box", line[0]), (style, line[1:-1]), ("class:box", line[-1])]
            else:
                out.append(("class:box", line))
            out.append(("", "\n"))
        count = len(self.options)
        out.append(("class:hint", f"Press 1-{count} or ↑/↓ and Enter · Enter/Esc: {self.default_label}"))
        if self.message:
            out += [("", "\n"), ("class:warn", self.message)]
        return out

    def _choose(self, event: KeyPressEvent, index: int) -> None:
        option = self.options[index]
        self.selected = index
        if option.configured:
            event.app.exit(result=option)
        else:
            variable = option.key_env or "its key"
            self.message = f"{option.label} needs {variable}: set it in the gateway's environment and restart it."

    def _move(self, step: int) -> None:
        usable = [i for i, option in enumerate(self.options) if option.configured]
        if not usable:
            return
        if self.selected not in usable:
            self.selected = usable[0] if step > 0 else usable[-1]
            return
        assert self.selected is not None
        self.selected = usable[(usable.index(self.selected) + step) % len(usable)]

    def key_bindings(self) -> KeyBindings:
        kb = KeyBindings()
        for digit in range(1, min(len(self.options), 9) + 1):
            kb.add(str(digit))(lambda event, index=digit - 1: self._choose(event, index))
        kb.add("up")(lambda event: self._move(-1))
        kb.add("down")(lambda event: self._move(1))

        @kb.add("enter")
        def _enter(event: KeyPressEvent) -> None:
            if self.selected is None:
                event.app.exit(result=None)
            else:
                self._choose(event, self.selected)

        kb.add("escape")(lambda event: event.app.exit(result=None))
        kb.add("c-c")(lambda event: event.app.exit(exception=QuitRequested()))
        kb.add("c-d")(lambda event: event.app.exit(exception=QuitRequested()))
        return kb

    def application(self) -> Application[ProviderOption | None]:
        control = FormattedTextControl(self.fragments, show_cursor=False, focusable=True)
        return Application(
            layout=Layout(Window(control, dont_extend_height=True, always_hide_cursor=True)),
            key_bindings=self.key_bindings(),
            style=MENU_STYLE,
            full_screen=False,
        )


async def choose_provider(options: Sequence[ProviderOption], default_label: str) -> ProviderOption | None:
    """Show the provider menu; the chosen option, or None to keep the default model."""
    return await ProviderMenu(options, default_label).application().run_async(handle_sigint=False)


Decision: TypeAlias = Literal["approve", "deny", "always", "cancel"]


class ApprovalPrompt:
    """`Run it? [y]es / [n]o / [a]lways`: y approves, n or Esc denies, a approves this tool for the session,
    Ctrl+C denies and cancels the turn. Enter alone does nothing, so a stray Enter never runs a command."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fragments(self) -> StyleAndTextTuples:
        return [
            ("class:warn", f"Run {terminal_safe(self.name)}? "),
            ("", "[y]es / [n]o / [a]lways for this session "),
        ]

    def key_bindings(self) -> KeyBindings:
        kb = KeyBindings()
        answers: dict[str, Decision] = {"y": "approve", "n": "deny", "a": "always", "escape": "deny", "c-c": "cancel"}
        for key, decision in answers.items():
            kb.add(key)(lambda event, decision=decision: event.app.exit(result=decision))
        kb.add("c-d")(lambda event: event.app.exit(result="cancel"))
        return kb

    def application(self) -> Application[Decision]:
        control = FormattedTextControl(self.fragments, show_cursor=False, focusable=True)
        return Application(
            layout=Layout(Window(control, dont_extend_height=True)),
            key_bindings=self.key_bindings(),
            style=MENU_STYLE,
            full_screen=False,
        )


async def ask_approval(name: str) -> Decision:
    return await ApprovalPrompt(name).application().run_async(handle_sigint=False)
