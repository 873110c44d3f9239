"""The provider menu and the approval prompt, driven by keys through prompt_toolkit's pipe input."""

from __future__ import annotations

import asyncio

import pytest

from t_koma.client.frames import ProviderStatus
from t_koma.client.menus import (
    ApprovalPrompt,
    ProviderMenu,
    ProviderOption,
    QuitRequested,
    box_lines,
    choose_provider,
    menu_options,
)
from tests.client.ptk import CTRL_C, DOWN, ENTER, ESC, UP, run_app, terminal, until

SPEC_BOX = """\
╔════════════════════════════════════╗
║     Select Model Provider          ║
╠════════════════════════════════════╣
║  1. Anthropic (Claude)             ║
║  2. OpenRouter                     ║
╚════════════════════════════════════╝"""

ANTHROPIC = ProviderStatus("anthropic", "Anthropic (Claude)", True, "ANTHROPIC_API_KEY")
OPENROUTER = ProviderStatus("openrouter", "OpenRouter", True, "OPENROUTER_API_KEY")
COMPATIBLE = ProviderStatus("openai_compatible", "OpenAI-compatible server", True, "OPENAI_API_KEY")


def options(*statuses: ProviderStatus) -> list[ProviderOption]:
    return menu_options(statuses)


def test_the_box_is_drawn_exactly_as_in_the_spec() -> None:
    assert "\n".join(box_lines(options(ANTHROPIC, OPENROUTER))) == SPEC_BOX


def test_menu_lists_anthropic_then_openrouter_then_configured_compatible_servers() -> None:
    unconfigured_compatible = ProviderStatus("openai_compatible", "OpenAI-compatible server", False, "OPENAI_API_KEY")
    assert [o.name for o in options(OPENROUTER, ANTHROPIC, unconfigured_compatible)] == ["anthropic", "openrouter"]
    assert [o.name for o in options(COMPATIBLE, OPENROUTER, ANTHROPIC)] == [
        "anthropic",
        "openrouter",
        "openai_compatible",
    ]
    assert box_lines(options(ANTHROPIC, OPENROUTER, COMPATIBLE))[5] == "║  3. OpenAI-compatible server       ║"


def test_a_provider_without_key_is_greyed_and_names_the_variable() -> None:
    missing = ProviderStatus("anthropic", "Anthropic (Claude)", False, "ANTHROPIC_API_KEY")
    lines = box_lines(options(missing, OPENROUTER))
    assert lines[3] == "║  1. Anthropic (Claude) (set ANTHROPIC_API_KEY)  ║"
    assert all(len(line) == len(lines[0]) for line in lines)
    fragments = ProviderMenu(options(missing, OPENROUTER), "default").fragments()
    assert ("class:disabled", lines[3][1:-1]) in fragments


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["2"], "openrouter"),
        (["1"], "anthropic"),
        ([DOWN, DOWN, ENTER], "openrouter"),
        ([UP, ENTER], "openrouter"),
        ([ENTER], None),
        ([ESC], None),
    ],
)
async def test_digits_arrows_and_enter_choose_and_nothing_chosen_means_default(
    keys: list[str], expected: str | None
) -> None:
    with terminal() as (pipe, _):
        chosen = await run_app(choose_provider(options(ANTHROPIC, OPENROUTER), "default"), pipe, *keys)
    assert (chosen.name if chosen else None) == expected


async def test_a_greyed_provider_cannot_be_chosen_and_says_why() -> None:
    missing = ProviderStatus("anthropic", "Anthropic (Claude)", False, "ANTHROPIC_API_KEY")
    menu = ProviderMenu(options(missing, OPENROUTER), "default")
    with terminal() as (pipe, screen):
        app = menu.application()
        task = asyncio.ensure_future(app.run_async())
        pipe.send_text("1")
        await until(lambda: menu.message is not None)
        assert menu.message is not None and "ANTHROPIC_API_KEY" in menu.message
        pipe.send_text(DOWN)  # arrows skip the greyed entry
        await until(lambda: menu.selected == 1)
        pipe.send_text(ENTER)
        chosen = await task
    assert chosen is not None and chosen.name == "openrouter"
    assert "Select Model Provider" in screen.text


async def test_ctrl_c_in_the_menu_quits() -> None:
    with terminal() as (pipe, _), pytest.raises(QuitRequested):
        await run_app(choose_provider(options(ANTHROPIC, OPENROUTER), "default"), pipe, CTRL_C)


@pytest.mark.parametrize(("key", "decision"), [("y", "approve"), ("n", "deny"), ("a", "always"), (CTRL_C, "cancel")])
async def test_approval_prompt_keys(key: str, decision: str) -> None:
    with terminal() as (pipe, screen):
        result = await run_app(ApprovalPrompt("run_shell_command").application().run_async(), pipe, key)
    assert result == decision
    assert "Run run_shell_command?" in screen.text


async def test_enter_alone_does_not_approve() -> None:
    with terminal() as (pipe, _):
        result = await run_app(ApprovalPrompt("run_shell_command").application().run_async(), pipe, ENTER, "n")
    assert result == "deny"
