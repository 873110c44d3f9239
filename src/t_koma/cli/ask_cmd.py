"""`t-koma ask`: one agent turn from a shell or a script, through the engine (sessions, tools, fallback chain).

Text streams to stdout as it arrives; tool calls, their results, approvals, fallbacks and (with
`--show-reasoning`) the model's reasoning go to stderr, so that stdout stays the answer. `--json` prints nothing
but one object at the end (docs/CONTRACTS.md, issue 3 §8).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from typing import Any

import click
import orjson

from t_koma.cli.ask_render import AskRenderer, TerminalApproval
from t_koma.cli.output import error_payload, fail_json, print_json
from t_koma.config.model import Config
from t_koma.engine.engine import Engine
from t_koma.engine.events import TurnRequest, TurnResult
from t_koma.errors import ConfigError, SessionNotFoundError, TKomaError, TurnCancelledError
from t_koma.messages import ReasoningConfig, parse_reasoning_level
from t_koma.providers.factory import ModelResolver, normalize_provider_name

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class ReasoningLevel(click.ParamType[ReasoningConfig]):
    """`--reasoning LEVEL`: an effort level, off, on, or a token budget (`messages.parse_reasoning_level`)."""

    name = "level"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ReasoningConfig:
        if isinstance(value, ReasoningConfig):
            return value
        try:
            return parse_reasoning_level(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command("ask")
@click.option("-m", "--model", "model", metavar="ALIAS_OR_MODEL_ID", help="Model or comma-separated chain.")
@click.option("--provider", metavar="NAME", help="openrouter, anthropic or openai_compatible.")
@click.option("--system", metavar="TEXT", help="System prompt for this turn.")
@click.option("--no-stream", is_flag=True, help="Send a non-streaming request.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end, nothing else.")
@click.option("--session", metavar="ID|last", help="Continue a stored session (default: a new one).")
@click.option("--max-steps", type=click.IntRange(min=1), metavar="N", help="Most model calls in this turn.")
@click.option("--no-tools", is_flag=True, help="Offer no tools to the model.")
@click.option("--yes", "-y", "auto_approve", is_flag=True, help="Run tool calls without asking.")
@click.option(
    "--reasoning",
    type=ReasoningLevel(),
    metavar="LEVEL",
    help="Reasoning for this turn: none|minimal|low|medium|high|xhigh, off, on, or a token budget (e.g. 8000).",
)
@click.option("--show-reasoning", is_flag=True, help="Stream the model's reasoning to stderr (dimmed).")
@click.argument("prompt")
def ask(
    model: str | None,
    provider: str | None,
    system: str | None,
    no_stream: bool,
    as_json: bool,
    session: str | None,
    max_steps: int | None,
    no_tools: bool,
    auto_approve: bool,
    reasoning: ReasoningConfig | None,
    show_reasoning: bool,
    prompt: str,
) -> None:
    """Run one turn and print the answer. PROMPT `-` reads the prompt from stdin."""
    text = _read_prompt(prompt)
    options = _Options(
        model,
        provider,
        system,
        not no_stream,
        as_json,
        session,
        max_steps,
        not no_tools,
        auto_approve,
        reasoning,
        show_reasoning,
    )
    try:
        result = _run(text, options)
    except TKomaError as exc:
        if as_json:
            fail_json(exc)
        raise
    except KeyboardInterrupt:
        _exit_cancelled(as_json, EXIT_INTERRUPTED)
    except asyncio.CancelledError:
        _exit_cancelled(as_json, EXIT_TERMINATED)
    if as_json:
        print_json(result_payload(result))


@dataclass(frozen=True, slots=True)
class _Options:
    """The parsed command line."""

    model: str | None
    provider: str | None
    system: str | None
    stream: bool
    as_json: bool
    session: str | None
    max_steps: int | None
    tools: bool
    auto_approve: bool
    reasoning: ReasoningConfig | None
    show_reasoning: bool


def _read_prompt(prompt: str) -> str:
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise click.UsageError("the prompt is empty" + (" (nothing on stdin)" if prompt == "-" else ""))
    return text


def _run(text: str, options: _Options) -> TurnResult:
    from t_koma.config.loader import load_config

    config = load_config()
    chain, provider = chain_for(config, options.model, options.provider)
    return asyncio.run(_turn(config, text, chain, provider, options))


async def _turn(
    config: Config, text: str, chain: tuple[str, ...], provider: str | None, options: _Options
) -> TurnResult:
    _cancel_on_sigterm()
    engine = await Engine.open(config)
    try:
        await _validate_model_ids(engine, config, chain, provider)
        session_id = await _session_id(engine, options.session)
        renderer = AskRenderer(quiet=options.as_json, show_reasoning=options.show_reasoning)
        approval = None
        if not options.auto_approve and config.shell.approval == "ask" and sys.stdin.isatty():
            approval = TerminalApproval(renderer)
        request = TurnRequest(
            content=text,
            chain=chain,
            provider=provider,
            session_id=session_id,
            system=options.system,
            tools_enabled=options.tools,
            max_steps=options.max_steps,
            reasoning=options.reasoning,
            stream=options.stream,
            approval=approval,
            auto_approve=options.auto_approve,
        )
        try:
            result = await engine.run_turn(request, renderer)
        finally:
            renderer.end_lines()  # before any error or cancel message reaches the terminal
        renderer.finish(result)
        return result
    finally:
        await engine.close()


def chain_for(config: Config, model: str | None, provider: str | None) -> tuple[tuple[str, ...], str | None]:
    """The chain to walk and the provider to resolve it with, from `-m` and `--provider`."""
    if model is not None:
        refs = tuple(ref.strip() for ref in model.split(",") if ref.strip())
        if not refs:
            raise click.UsageError("-m needs a model alias or ID (or a comma-separated list of them)")
        return refs, provider
    if provider is None:
        return (), None
    return (_provider_default(config, provider),), None


def _provider_default(config: Config, provider: str) -> str:
    """`--provider` without `-m`: that provider's first model in the default chain, else its first alias."""
    server = config.models.get(provider.strip())
    if server is not None and server.provider == "openai_compatible":
        return server.alias
    kind = normalize_provider_name(provider)
    aliases = [*config.default_chain, *config.models]
    for alias in aliases:
        configured = config.models.get(alias)
        if configured is not None and configured.provider == kind:
            return alias
    raise ConfigError(f"no {kind} model is configured: pass one with -m MODEL_ID --provider {kind}")


async def _validate_model_ids(engine: Engine, config: Config, chain: tuple[str, ...], provider: str | None) -> None:
    """Model IDs typed on the command line (not aliases) are checked against the catalog when it can be had."""
    resolver = engine.resolver
    if not isinstance(resolver, ModelResolver):
        return
    for ref in chain:
        if ref not in config.models:
            await resolver.validate(ref, provider)


async def _session_id(engine: Engine, wanted: str | None) -> str | None:
    if wanted is None or wanted != "last":
        return wanted
    latest = await engine.store.latest_session()
    if latest is None:
        raise SessionNotFoundError("there is no stored session yet: run `t-koma ask` without --session first")
    return latest.id


def _cancel_on_sigterm() -> None:
    """SIGTERM cancels the turn like Ctrl+C does, so that it is stored as cancelled."""
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def _exit_cancelled(as_json: bool, code: int) -> None:
    click.echo("\nt-koma: cancelled", err=True)
    if as_json:
        print_json(error_payload(TurnCancelledError("the turn was cancelled")))
    sys.exit(code)


def result_payload(result: TurnResult) -> dict[str, Any]:
    """The `--json` object."""
    return {
        "provider": result.provider,
        "model": result.model,
        "text": result.text,
        "reasoning": result.reasoning,
        "stop_reason": result.stop_reason,
        "session_id": result.session_id,
        "steps": result.steps,
        "tool_calls": [
            {
                "id": call.id,
                "name": call.name,
                "arguments": _arguments_value(call.arguments),
                "result": call.result,
                "is_error": call.is_error,
            }
            for call in result.tool_calls
        ],
        "fallbacks": [{"model": record.model, "error": record.error} for record in result.fallbacks],
        "usage": result.usage.to_dict(),
    }


def _arguments_value(arguments: str) -> Any:
    """A call's arguments as a JSON object when they are one, else the raw string the model sent."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    return value if isinstance(value, dict) else arguments
