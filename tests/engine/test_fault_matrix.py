"""The fault matrix through the engine: every upstream behaviour of `tests.engine.faults` (HTTP errors, broken and
stalled streams, dead connections), streaming and not. Each must end as its typed error, move the turn to the
next model exactly when it is retryable (and cool the failing model down for the right time), leave the
conversation in SQLite whole (no partial text of a failed attempt, the session usable afterwards), and never
put a key into an error, an event or the database. A representative subset runs through `t-koma ask` for its
exit codes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from t_koma.config.loader import load_config
from t_koma.engine.engine import Engine
from t_koma.engine.events import FallbackEvent, TextDeltaEvent, TurnRequest
from t_koma.engine.fallback import RetryPolicy
from t_koma.errors import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_UPSTREAM, EXIT_USAGE, ProviderError
from tests.engine.faults import (
    FAULTS,
    REPLY_FAULTS,
    DeadEnds,
    Fault,
    SharedOpenRouter,
    dead_end_models,
    dead_ends,
    shorten_read_timeout,
)
from tests.engine.support import Events, no_sleep, query, write_config
from tests.fakes.anthropic import TEST_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeUpstream as AnthropicUpstream
from tests.fakes.openrouter import TEST_KEY as OPENROUTER_KEY
from tests.fakes.openrouter import FakeUpstream
from tests.fakes.replies import text_reply

KEYS = (OPENROUTER_KEY, ANTHROPIC_KEY)
PROMPT = "Hi there, matrix."
FALLBACK_TEXT = "From beta."
MODES = pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
EACH_FAULT = pytest.mark.parametrize("fault", FAULTS, ids=str)


@pytest.fixture(scope="module")
def shared_openrouter() -> Iterator[SharedOpenRouter]:
    with SharedOpenRouter() as server:
        yield server


@pytest.fixture
def openrouter(shared_openrouter: SharedOpenRouter, monkeypatch: pytest.MonkeyPatch) -> FakeUpstream:
    return shared_openrouter.fresh(monkeypatch)


@pytest.fixture
def ends(openrouter: FakeUpstream) -> Iterator[DeadEnds]:
    with dead_ends(openrouter.url) as opened:
        yield opened


@pytest.fixture
async def open_matrix(
    ends: DeadEnds, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[Engine]]]:
    engines: list[Engine] = []

    async def open_for(fault: Fault, **options: object) -> Engine:
        if fault.slow:
            shorten_read_timeout(monkeypatch)
        write_config("auto", dead_end_models(ends))
        engine = await Engine.open(load_config(), sleep=no_sleep, **options)
        engines.append(engine)
        return engine

    yield open_for
    for engine in engines:
        await engine.close()


def play(fault: Fault, fake: FakeUpstream) -> str:
    """Arrange for the fault and return the alias of the model that will meet it."""
    if fault.reply is not None:
        fake.app.enqueue(fault.reply)
        return "alpha"
    assert fault.dead_end is not None
    return fault.dead_end


def models_asked(fake: FakeUpstream) -> list[str]:
    return [str((request.body or {}).get("model")) for request in fake.app.chat_requests]


def cooldowns(engine: Engine) -> dict[str, float]:
    return dict(query(engine.config.database_path, "SELECT model_key, until FROM cooldowns"))


def conversation(database: Path) -> list[tuple[str, str, str | None]]:
    """(role, content JSON, status) of every stored message, in order."""
    return query(database, "SELECT role, content, status FROM messages ORDER BY session_id, position")


def assert_sound_and_keyless(database: Path, *texts: object) -> None:
    """The SQLite file passes its integrity check, and no key is in it (every table) or in any of `texts`."""
    with sqlite3.connect(database) as conn:
        dump = "\n".join(conn.iterdump())
    assert query(database, "PRAGMA integrity_check") == [("ok",)]
    for text in (dump, *map(str, texts)):
        for key in KEYS:
            assert key not in text


async def follow_up(engine: Engine, fake: FakeUpstream, *, stream: bool) -> None:
    """The session goes on after the fault: its stored history reaches the next model, without partial text."""
    session = await engine.store.latest_session()
    assert session is not None
    fake.app.enqueue(text_reply("Still here."))
    result = await engine.run_turn(
        TurnRequest("And now?", chain=("beta",), session_id=session.id, stream=stream, tools_enabled=False)
    )
    assert result.text == "Still here."
    sent = json.dumps(fake.app.last_body["messages"])
    assert sent.count(PROMPT) == 1 and "half an answer" not in sent and "And now?" in sent


@MODES
@EACH_FAULT
async def test_a_fault_ends_a_single_model_turn_with_its_typed_error(
    fault: Fault, stream: bool, open_matrix: Callable[..., Awaitable[Engine]], openrouter: FakeUpstream
) -> None:
    engine = await open_matrix(fault, policy=RetryPolicy(max_retries=0))
    failing = play(fault, openrouter)
    events = Events()
    started = time.time()

    with pytest.raises(ProviderError) as raised:
        await engine.run_turn(TurnRequest(PROMPT, chain=(failing,), stream=stream, tools_enabled=False), events)

    error = raised.value
    assert type(error) is fault.error_for(stream), error
    assert error.retryable is fault.retryable
    if stream or fault.error_nonstream is None:
        assert error.status == fault.status
    assert fault.check is None or fault.check(error), vars(error)
    if stream and fault.partial:
        assert error.partial_text == fault.partial
        assert events.text == fault.partial  # what the client saw before the failure
    cooled = cooldowns(engine)
    if fault.retryable:
        assert fault.cooldown is not None
        assert started + fault.cooldown - 1 <= cooled[failing] <= time.time() + fault.cooldown
    else:
        assert cooled == {}
    database = engine.config.database_path
    assert [(role, status) for role, _, status in conversation(database)] == [("user", None)]
    assert query(database, "SELECT status, stop_reason FROM turns") == [("failed", error.type)]
    assert_sound_and_keyless(database, error, error.message, error.raw, events.events)
    await follow_up(engine, openrouter, stream=stream)


@MODES
@EACH_FAULT
async def test_a_turn_falls_back_to_the_next_model_exactly_when_the_fault_is_retryable(
    fault: Fault, stream: bool, open_matrix: Callable[..., Awaitable[Engine]], openrouter: FakeUpstream
) -> None:
    engine = await open_matrix(fault)
    failing = play(fault, openrouter)
    if fault.retryable:
        openrouter.app.enqueue(text_reply(FALLBACK_TEXT))
    events = Events()
    request = TurnRequest(PROMPT, chain=(failing, "beta"), stream=stream, tools_enabled=False)
    database = engine.config.database_path
    asked_failing = [] if fault.dead_end else ["test/alpha"]

    if not fault.retryable:
        with pytest.raises(fault.error_for(stream)) as raised:
            await engine.run_turn(request, events)
        assert models_asked(openrouter) == asked_failing  # the next model was never asked
        assert events.of(FallbackEvent) == [] and cooldowns(engine) == {}
        assert [role for role, _, _ in conversation(database)] == ["user"]
        assert_sound_and_keyless(database, raised.value, events.events)
        await follow_up(engine, openrouter, stream=stream)
        return

    result = await engine.run_turn(request, events)

    assert (result.text, result.model) == (FALLBACK_TEXT, "test/beta")
    assert models_asked(openrouter) == [*asked_failing, "test/beta"]
    [moved] = events.of(FallbackEvent)
    assert (moved.from_model, moved.to_model) == (failing, "beta")
    assert [record.model for record in result.fallbacks] == [failing]
    fallback_at = events.events.index(moved)
    before = "".join(e.text for e in events.events[:fallback_at] if isinstance(e, TextDeltaEvent))
    assert before == (fault.partial if stream else "")
    assert failing in cooldowns(engine) and "beta" not in cooldowns(engine)
    stored = conversation(database)
    assert [(role, status) for role, _, status in stored] == [("user", None), ("assistant", None)]
    assert FALLBACK_TEXT in stored[1][1] and "half an answer" not in json.dumps(stored)
    assert query(database, "SELECT status FROM turns") == [("done",)]
    assert_sound_and_keyless(database, result, events.events)
    await follow_up(engine, openrouter, stream=stream)


@pytest.mark.parametrize("fault", REPLY_FAULTS, ids=str)
async def test_anthropic_faults_become_the_same_typed_errors(
    fault: Fault,
    open_matrix: Callable[..., Awaitable[Engine]],
    openrouter: FakeUpstream,
    fake_anthropic: AnthropicUpstream,
) -> None:
    """The same behaviours in Anthropic's wire format (error events, `overloaded_error`, pings) map alike."""
    engine = await open_matrix(fault, policy=RetryPolicy(max_retries=0))
    assert fault.reply is not None
    fake_anthropic.app.enqueue(fault.reply)
    openrouter.app.enqueue(text_reply(FALLBACK_TEXT))
    events = Events()
    request = TurnRequest(PROMPT, chain=("claude", "beta"), stream=True, tools_enabled=False)

    if fault.retryable:
        result = await engine.run_turn(request, events)
        assert result.text == FALLBACK_TEXT and [r.model for r in result.fallbacks] == ["claude"]
        assert "claude" in cooldowns(engine)
    else:
        with pytest.raises(fault.error) as raised:
            await engine.run_turn(request, events)
        assert raised.value.status == fault.status
        assert models_asked(openrouter) == [] and cooldowns(engine) == {}
        assert_sound_and_keyless(engine.config.database_path, raised.value, events.events)


# --- exit codes of `t-koma ask` ---------------------------------------------------------------------------

CLI_CASES = [
    # fault, -m chain, how many models of the chain meet it, exit code, error type in the --json output
    ("400", "alpha,beta", 1, EXIT_USAGE, "invalid_request_error"),
    ("401", "alpha,beta", 1, EXIT_AUTH, "authentication_error"),
    ("402-can-only-afford", "alpha,beta", 1, EXIT_AUTH, "insufficient_credits"),
    ("403-moderation", "alpha,beta", 1, EXIT_AUTH, "permission_denied"),
    ("404", "alpha,beta", 1, EXIT_NOT_FOUND, "model_not_found"),
    ("429-no-retry-after", "alpha,beta", 2, EXIT_UPSTREAM, "all_models_exhausted"),
    ("connection-refused", "refused,refused2", 2, EXIT_UPSTREAM, "all_models_exhausted"),
    ("error-chunk-midway", "alpha,beta", 1, 0, None),
]


@pytest.mark.parametrize(
    ("fault_id", "chain", "failing", "exit_code", "error_type"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_t_koma_ask_exits_with_the_code_of_the_error(
    fault_id: str,
    chain: str,
    failing: int,
    exit_code: int,
    error_type: str | None,
    ends: DeadEnds,
    openrouter: FakeUpstream,
) -> None:
    fault = next(f for f in FAULTS if f.id == fault_id)
    write_config("auto", dead_end_models(ends))
    if fault.reply is not None:
        openrouter.app.enqueue(*[fault.reply] * failing)
    openrouter.app.enqueue(text_reply(FALLBACK_TEXT))

    done = subprocess.run(
        [sys.executable, "-m", "t_koma", "ask", "--json", "--no-tools", "-m", chain, PROMPT],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == exit_code, done.stderr
    payload = json.loads(done.stdout)
    if error_type is None:
        assert payload["text"] == FALLBACK_TEXT and [f["model"] for f in payload["fallbacks"]] == ["alpha"]
    else:
        assert payload["error"]["type"] == error_type
        assert done.stderr.startswith("t-koma: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    for key in KEYS:
        assert key not in done.stdout + done.stderr
    database = Path(load_config().database_path)
    assert query(database, "PRAGMA integrity_check") == [("ok",)]
    assert query(database, "SELECT role FROM messages ORDER BY position LIMIT 1") == [("user",)]
