"""The model picker: top 20, filter over the whole catalog, custom IDs validated with the error shown inline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from t_koma.client.frames import ModelEntry
from t_koma.client.picker import ModelPicker, filter_models, format_context, format_price
from tests.client.ptk import BACKSPACE, DOWN, ENTER, ESC, UP, run_app, terminal, until


def catalog(count: int = 30) -> list[ModelEntry]:
    models = [
        ModelEntry(
            f"vendor{i}/model-{i}",
            f"Model {i}",
            f"General model number {i}.\nSecond line.",
            context_length=128_000,
            prompt_price=3e-6,
            completion_price=15e-6,
        )
        for i in range(count)
    ]
    models.append(ModelEntry("moonshotai/kimi-k2.5", "Kimi K2.5", "Agentic coding model", 262_144, 0.0, 0.0))
    return models


class Gateway:
    """Plays the gateway's side of validation: records each ID and refuses the ones it does not know."""

    def __init__(self, known: Sequence[str]) -> None:
        self.known = set(known)
        self.checked: list[str] = []

    async def validate(self, model_id: str) -> str | None:
        self.checked.append(model_id)
        return None if model_id in self.known else f"unknown model '{model_id}'"


def picker(gateway: Gateway, models: list[ModelEntry] | None = None) -> ModelPicker:
    full = models if models is not None else catalog()

    async def load() -> list[ModelEntry]:
        return full

    return ModelPicker("OpenRouter", full[:20], gateway.validate, load)


def test_formatting_of_context_and_price() -> None:
    assert format_context(200_000) == "200k ctx"
    assert format_context(1_000_000) == "1M ctx"
    assert format_context(None) == ""
    assert format_price(3e-6, 15e-6) == "$3/$15 /M"
    assert format_price(0.0, 0.0) == "free"
    assert format_price(None, 1e-6) == ""


def test_filter_matches_every_word_and_ranks_name_matches_first() -> None:
    models = catalog(3)
    assert [m.id for m in filter_models(models, "KIMI")] == ["moonshotai/kimi-k2.5"]
    assert [m.id for m in filter_models(models, "model 1")] == ["vendor1/model-1"]
    assert filter_models(models, "coding")[0].id == "moonshotai/kimi-k2.5"
    assert filter_models(models, "") == models


async def test_shows_the_top_20_and_enter_takes_the_first() -> None:
    gateway = Gateway(["vendor0/model-0"])
    chooser = picker(gateway)
    with terminal(columns=120) as (pipe, screen):
        chosen = await run_app(chooser.run(), pipe, ENTER)
    assert chosen == "vendor0/model-0"
    assert gateway.checked == ["vendor0/model-0"]
    shown = screen.text
    assert "Model 0" in shown and "Model 19" in shown and "Model 20" not in shown
    assert "128k ctx" in shown and "$3/$15 /M" in shown and "General model number 0. Second line." in shown


async def test_typing_filters_over_the_whole_catalog() -> None:
    gateway = Gateway(["moonshotai/kimi-k2.5"])
    chooser = picker(gateway)
    with terminal() as (pipe, _):
        task = asyncio.ensure_future(chooser.run())
        await until(lambda: chooser.catalog is not None)
        pipe.send_text("kimi")
        await until(lambda: [m.id for m in chooser.visible()] == ["moonshotai/kimi-k2.5"])
        pipe.send_text(ENTER)
        assert await asyncio.wait_for(task, 10) == "moonshotai/kimi-k2.5"


async def test_arrows_move_the_selection() -> None:
    gateway = Gateway(["vendor1/model-1"])
    with terminal() as (pipe, _):
        assert await run_app(picker(gateway).run(), pipe, DOWN, DOWN, UP, ENTER) == "vendor1/model-1"


async def test_a_custom_id_is_validated_and_an_error_is_shown_inline_then_re_prompted() -> None:
    gateway = Gateway(["acme/real-model"])
    chooser = picker(gateway)
    with terminal() as (pipe, screen):
        task = asyncio.ensure_future(chooser.run())
        pipe.send_text(UP)  # the custom row is last; ↑ from the first row wraps to it
        await until(lambda: chooser.selected == chooser.custom_index)
        pipe.send_text(ENTER)
        await until(lambda: chooser.custom_mode)
        pipe.send_text("acme/fake-model")
        await until(lambda: chooser.query == "acme/fake-model")
        pipe.send_text(ENTER)
        await until(lambda: chooser.error is not None)
        assert chooser.error == "unknown model 'acme/fake-model'"
        assert not task.done()
        assert chooser.query == "acme/fake-model"  # kept for editing
        pipe.send_text(BACKSPACE * len("fake-model") + "real-model")
        await until(lambda: chooser.query == "acme/real-model")
        pipe.send_text(ENTER)
        assert await asyncio.wait_for(task, 10) == "acme/real-model"
    assert gateway.checked == ["acme/fake-model", "acme/real-model"]
    assert "✗ unknown model 'acme/fake-model'" in screen.text


async def test_a_filter_that_matches_nothing_offers_itself_as_a_custom_id() -> None:
    gateway = Gateway(["someone/new-model:free"])
    chooser = picker(gateway)
    with terminal() as (pipe, screen):
        task = asyncio.ensure_future(chooser.run())
        pipe.send_text("someone/new-model:free")
        await until(lambda: chooser.visible() == [] and chooser.query == "someone/new-model:free")
        pipe.send_text(ENTER)
        assert await asyncio.wait_for(task, 10) == "someone/new-model:free"
    assert "as a custom model ID" in screen.text


async def test_escape_means_the_default_model() -> None:
    with terminal() as (pipe, _):
        assert await run_app(picker(Gateway([])).run(), pipe, ESC) is None


async def test_no_models_goes_straight_to_custom_entry() -> None:
    gateway = Gateway(["a/b"])
    chooser = ModelPicker("OpenRouter", [], gateway.validate)
    assert chooser.custom_mode
    with terminal() as (pipe, _):
        assert await run_app(chooser.run(), pipe, "a/b", ENTER) == "a/b"
