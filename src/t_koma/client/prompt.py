"""The chat's input line: multi-line editing, history, slash-command completion, and the status bar under it.

Enter sends; Alt+Enter (Esc then Enter) inserts a new line. Ctrl+C clears the input, and on an empty line must
be pressed twice to quit; Ctrl+D on an empty line quits. Quitting raises `QuitRequested` from `read()`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.styles import Style

from t_koma.client.menus import QuitRequested
from t_koma.client.views import COMMANDS

PROMPT = "> "
QUIT_HINT = "press Ctrl+C again to quit"

CHAT_STYLE = Style.from_dict(
    {
        "prompt": "bold",
        "bottom-toolbar": "noreverse bg:#262626 #bcbcbc",
        "status.model": "bold #87d7ff",
        "status.warning": "bold #ffaf00",
        "status.notice": "#ffaf00",
        "status.cost": "#87d787",
        "status.reasoning": "#af87ff",
        "status.sep": "#606060",
    }
)


class ChatPrompt:
    """Reads one message (or slash command) at a time. `on_hint` shows a short hint in the status bar."""

    def __init__(
        self,
        toolbar: Callable[[], StyleAndTextTuples],
        on_hint: Callable[[str], None],
        history_file: Path | None = None,
    ) -> None:
        self._on_hint = on_hint
        self._armed = False
        history: History = FileHistory(str(history_file)) if history_file else InMemoryHistory()
        self.session: PromptSession[str] = PromptSession(
            message=[("class:prompt", PROMPT)],
            multiline=True,
            key_bindings=self._keys(),
            bottom_toolbar=toolbar,
            style=CHAT_STYLE,
            prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
            completer=WordCompleter([name.split()[0] for name, _ in COMMANDS], sentence=True),
            complete_while_typing=Condition(lambda: self.session.default_buffer.text.startswith("/")),
            history=history,
        )

    @property
    def app(self) -> Application[str]:
        return self.session.app

    @property
    def waiting(self) -> bool:
        return self.app.is_running and not self.app.is_done

    async def read(self) -> str:
        """The next input; raises `QuitRequested` on Ctrl+C twice or Ctrl+D."""
        try:
            return await self.session.prompt_async(handle_sigint=False)
        finally:
            self._armed = False

    def quit(self) -> None:
        """Leave a running `read()` with `QuitRequested` (a SIGINT from outside, while the prompt waits)."""
        if self.waiting:
            self.app.exit(exception=QuitRequested())

    def _keys(self) -> KeyBindings:
        kb = KeyBindings()

        @kb.add("enter")
        def _send(event: KeyPressEvent) -> None:
            event.current_buffer.validate_and_handle()

        @kb.add("escape", "enter")
        def _newline(event: KeyPressEvent) -> None:
            event.current_buffer.insert_text("\n")

        @kb.add("c-c")
        def _ctrl_c(event: KeyPressEvent) -> None:
            if event.current_buffer.text:
                event.current_buffer.reset()
                self._armed = False
            elif self._armed:
                event.app.exit(exception=QuitRequested())
            else:
                self._armed = True
                self._on_hint(QUIT_HINT)

        @kb.add("c-d")
        def _ctrl_d(event: KeyPressEvent) -> None:
            if not event.current_buffer.text:
                event.app.exit(exception=QuitRequested())
            else:
                event.current_buffer.delete()

        return kb
