"""The model picker: the top 20 models with name, context length, price and a one-line description; typing
filters over the whole catalog; the last row takes a custom model ID. Every choice is validated by the gateway
(`select_provider`) before the picker closes; a refusal is shown inline and the user picks or types again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from prompt_toolkit.application import Application, get_app
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import BufferControl, FormattedTextControl, HSplit, Layout, VSplit, Window
from prompt_toolkit.styles import Style

from t_koma.client.frames import ModelEntry
from t_koma.client.menus import QuitRequested
from t_koma.client.sanitize import terminal_safe
from t_koma.errors import TKomaError

TOP = 20

Validator = Callable[[str], Awaitable[str | None]]
"""Checks a model ID with the gateway: None when it was accepted, else the error to show."""

CatalogLoader = Callable[[], Awaitable[Sequence[ModelEntry]]]

PICKER_STYLE = Style.from_dict(
    {
        "title": "bold",
        "selected": "reverse",
        "id": "#5fafff",
        "meta": "#87af87",
        "description": "#808080",
        "custom": "#ffaf00",
        "error": "#ff5f5f bold",
        "hint": "#808080",
    }
)


def format_context(tokens: int | None) -> str:
    if not tokens:
        return ""
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.1f}".removesuffix(".0") + "M ctx"
    return f"{tokens // 1000}k ctx" if tokens >= 1000 else f"{tokens} ctx"


def format_price(prompt: float | None, completion: float | None) -> str:
    """USD per million tokens, prompt/completion: `$3/$15 /M`, `free`, or empty when unknown."""
    if prompt is None or completion is None:
        return ""
    if prompt == 0 and completion == 0:
        return "free"
    return f"${prompt * 1e6:.3g}/${completion * 1e6:.3g} /M"


def filter_models(models: Sequence[ModelEntry], query: str) -> list[ModelEntry]:
    """Models where every word of `query` occurs (any case) in the ID, name or description; matches in the ID or
    name come before matches only in the description, each group in catalog order."""
    words = query.lower().split()
    if not words:
        return list(models)
    strong: list[ModelEntry] = []
    weak: list[ModelEntry] = []
    for model in models:
        head = f"{model.id} {model.name}".lower()
        text = f"{head} {model.description.lower()}"
        if all(word in text for word in words):
            (strong if all(word in head for word in words) else weak).append(model)
    return strong + weak


def one_line(text: str, width: int) -> str:
    """`text` (from the upstream catalog) on one line of at most `width` columns, control characters visible."""
    flat = " ".join(terminal_safe(text).split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"


class ModelPicker:
    """State and keys of the picker. `application()` returns the accepted model ID, or None (Esc: default)."""

    def __init__(
        self,
        provider_label: str,
        top: Sequence[ModelEntry],
        validate: Validator,
        load_catalog: CatalogLoader | None = None,
    ) -> None:
        self.provider_label = provider_label
        self.top = list(top)[:TOP]
        self.catalog: list[ModelEntry] | None = None
        self.validate = validate
        self.load_catalog = load_catalog
        self.selected = 0
        self.custom_mode = not self.top
        self.error: str | None = None
        self.checking: str | None = None
        self.buffer = Buffer(multiline=False, on_text_changed=lambda _: self._reset())

    # --- what is shown ---------------------------------------------------------------------------------

    @property
    def query(self) -> str:
        return self.buffer.text.strip()

    def visible(self) -> list[ModelEntry]:
        if self.custom_mode:
            return []
        if not self.query:
            return self.top
        return filter_models(self.catalog if self.catalog is not None else self.top, self.query)[:TOP]

    @property
    def priced(self) -> bool:
        """Whether the price column is shown: only when the gateway sent prices."""
        return any(model.prompt_price is not None for model in self.top)

    @property
    def custom_index(self) -> int:
        return len(self.visible())

    def _reset(self) -> None:
        self.selected = 0
        self.error = None

    def title(self) -> StyleAndTextTuples:
        if self.custom_mode:
            return [("class:title", f"Custom {self.provider_label} model ID"), ("class:hint", " · Esc: back")]
        return [
            ("class:title", f"{self.provider_label} models"),
            ("class:hint", " · type to filter · ↑/↓ and Enter · Esc: default model"),
        ]

    def rows(self) -> StyleAndTextTuples:
        width = _columns()
        out: StyleAndTextTuples = []
        models = self.visible()
        for index, model in enumerate(models):
            out += self._row(index, model, width)
        if not self.custom_mode:
            marker = "class:selected " if self.selected == self.custom_index else ""
            label = f"Use “{self.query}” as a custom model ID" if self.query else "Enter a custom model ID…"
            if self.query and not models:
                out.append(("class:hint", "  no model matches\n"))
            out.append((marker + "class:custom", f"  ✎  {label}\n"))
        if self.checking:
            out.append(("class:hint", f"checking {self.checking} …\n"))
        if self.error:
            out.append(("class:error", f"✗ {self.error}\n"))
        return out

    def _row(self, index: int, model: ModelEntry, width: int) -> StyleAndTextTuples:
        marker = "class:selected " if index == self.selected else ""
        head = f"{index + 1:>3}. {one_line(model.name, 30):<30} "
        meta = (
            f"{format_context(model.context_length):>9} {format_price(model.prompt_price, model.completion_price):>16} "
        )
        rest = max(width - len(head) - len(meta) - 1, 0)
        return [
            (marker + "", head),
            (marker + "class:meta", meta),
            (marker + "class:description", one_line(model.description or model.id, rest)),
            ("", "\n"),
        ]

    # --- keys ------------------------------------------------------------------------------------------

    def _move(self, step: int) -> None:
        count = self.custom_index + 1
        self.selected = (self.selected + step) % count

    def _enter(self, event: KeyPressEvent) -> None:
        if self.checking:
            return
        if self.custom_mode:
            model_id = self.query
            if model_id:
                self._check(event, model_id)
            else:
                self.error = "type a model ID, e.g. anthropic/claude-sonnet-4"
            return
        models = self.visible()
        if self.selected < len(models):
            self._check(event, models[self.selected].id)
        elif self.query:
            self._check(event, self.query)
        else:
            self.custom_mode = True
            self.error = None

    def _check(self, event: KeyPressEvent, model_id: str) -> None:
        self.checking = model_id
        self.error = None
        event.app.create_background_task(self._validate(event.app, model_id))

    async def _validate(self, app: Application[str | None], model_id: str) -> None:
        try:
            error = await self.validate(model_id)
        except TKomaError as exc:
            error = exc.message
        finally:
            self.checking = None
        if error is None:
            app.exit(result=model_id)
            return
        if not any(m.id == model_id for m in self.visible()):
            # A typed ID: keep it in the input, in custom mode, so the user can correct it.
            self.custom_mode = True
            self.buffer.set_document(Document(model_id), bypass_readonly=True)
        self.error = error
        app.invalidate()

    def _escape(self, event: KeyPressEvent) -> None:
        if self.custom_mode and self.top:
            self.custom_mode = False
            self.buffer.reset()
            self.error = None
        else:
            event.app.exit(result=None)

    def key_bindings(self) -> KeyBindings:
        kb = KeyBindings()
        kb.add("up")(lambda event: self._move(-1))
        kb.add("down")(lambda event: self._move(1))
        kb.add("enter")(self._enter)
        kb.add("escape")(self._escape)
        kb.add("c-c")(lambda event: event.app.exit(exception=QuitRequested()))
        kb.add("c-d")(lambda event: event.app.exit(exception=QuitRequested()))
        return kb

    # --- the application -------------------------------------------------------------------------------

    async def _load(self) -> None:
        if self.load_catalog is None:
            return
        try:
            self.catalog = list(await self.load_catalog())
        except TKomaError:  # the top list still works; the filter then covers only it
            self.catalog = None
        get_app().invalidate()

    def application(self) -> Application[str | None]:
        prompt = Window(
            FormattedTextControl(lambda: [("class:hint", "id › " if self.custom_mode else "filter › ")]),
            dont_extend_width=True,
        )
        layout = HSplit(
            [
                Window(FormattedTextControl(self.title), height=1),
                VSplit([prompt, Window(BufferControl(self.buffer), height=1)]),
                Window(FormattedTextControl(self.rows), dont_extend_height=True, wrap_lines=False),
            ]
        )
        app: Application[str | None] = Application(
            layout=Layout(layout, focused_element=self.buffer),
            key_bindings=self.key_bindings(),
            style=PICKER_STYLE,
            full_screen=False,
        )
        return app

    async def run(self) -> str | None:
        app = self.application()

        def _start() -> None:
            app.create_background_task(self._load())

        return await app.run_async(pre_run=_start, handle_sigint=False)


def _columns() -> int:
    return get_app().output.get_size().columns
