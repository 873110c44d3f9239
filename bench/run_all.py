"""The whole suite in one run: component benchmarks, then the fake upstream, `t-koma gateway` and (when its venv
exists) the LiteLLM proxy as separate processes; `/v1` side by side, WebSocket sessions, idle connections and
CLI start-up against them; then `bench/RESULTS.md` and `bench/latency.png`. With `--only`, the sections not run
keep their numbers from the previous run (bench/.work/results.json)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench import components, litellm_proxy, report, side_by_side, startup, websocket
from bench.gateway import KEY
from bench.load import Target, client_session
from bench.plot import plot
from bench.results import Results, RunSettings, load, load_soak, machine_info, save
from bench.services import Service, start_fake, start_tkoma

SECTIONS = ("components", "http", "ws", "idle", "cli")
DIRECT_MODEL = "openai/gpt-4o-mini"


@dataclass(frozen=True)
class Options:
    quick: bool = False
    sections: tuple[str, ...] = SECTIONS
    litellm: bool = True
    latency_ms: float = 0.0
    chunks: int = 10
    chunk_delay_ms: float = 0.0
    rounds: int | None = None
    ws_sessions: int | None = None
    ws_turns: int | None = None
    idle: int = 1000
    soak: bool = False

    def settings(self) -> RunSettings:
        return RunSettings(
            quick=self.quick,
            rounds=self.rounds or (1 if self.quick else 2),
            latency_ms=self.latency_ms,
            chunks=self.chunks,
            chunk_delay_ms=self.chunk_delay_ms,
            ws_sessions=self.ws_sessions or (50 if self.quick else 200),
            ws_turns=self.ws_turns or (3 if self.quick else 5),
            idle=self.idle,
            sections=list(self.sections),
        )


def _say(text: str) -> None:
    print(text, flush=True)


async def _start_litellm(fake: Service, results: Results) -> Service | None:
    if not litellm_proxy.available():
        results.notes.append(litellm_proxy.missing_note())
        _say(results.notes[-1])
        return None
    _say("starting the LiteLLM proxy (8–40 s)…")
    service = litellm_proxy.start(fake)
    try:
        results.litellm_ready_s = await litellm_proxy.ready(service)
    except RuntimeError as exc:
        service.stop()
        results.notes.append(f"LiteLLM proxy skipped: {exc} (log: bench/.work/litellm.log)")
        _say(results.notes[-1])
        return None
    results.litellm_version = litellm_proxy.version()
    _say(f"LiteLLM {results.litellm_version} ready after {results.litellm_ready_s:.1f} s")
    return service


async def _http(fake: Service, tkoma: Service, litellm: Service | None, results: Results) -> None:
    sides = [
        side_by_side.Side(Target("direct", fake.url + "/api/v1/chat/completions", KEY, DIRECT_MODEL)),
        side_by_side.Side(Target("t-koma", tkoma.url + "/v1/chat/completions", tkoma.token, "bench"), tkoma),
    ]
    if litellm is not None:
        target = Target("LiteLLM", litellm.url + "/v1/chat/completions", litellm.token, litellm_proxy.MODEL)
        sides.append(side_by_side.Side(target, litellm))
    settings = results.settings
    async with client_session() as session:
        results.http = await side_by_side.run(
            session,
            sides,
            quick=settings.quick,
            rounds=settings.rounds,
            report=lambda row: _say(side_by_side.describe(row)),
        )


async def _against_services(options: Options, results: Results) -> None:
    settings = results.settings
    sections = set(options.sections)
    fake = start_fake(options.latency_ms, options.chunks, options.chunk_delay_ms)
    tkoma = start_tkoma(fake)
    litellm: Service | None = None
    _say(f"fake upstream at {fake.url}; t-koma gateway pid {tkoma.pid} at {tkoma.url}")
    try:
        if "http" in sections:
            if options.litellm:
                litellm = await _start_litellm(fake, results)
            else:
                results.notes.append("LiteLLM proxy skipped (--no-litellm).")
            await _http(fake, tkoma, litellm, results)
            if litellm is not None:
                litellm.stop()
                litellm = None
        if "ws" in sections:
            _say(f"WebSocket: {settings.ws_sessions} sessions × {settings.ws_turns} streamed turns…")
            results.ws = await websocket.concurrent_sessions(tkoma, settings.ws_sessions, settings.ws_turns)
            _say(f"  {results.ws}")
        if "idle" in sections:
            _say(f"WebSocket: {settings.idle} idle connections…")
            results.idle = await websocket.idle(tkoma, settings.idle)
            _say(f"  {results.idle}")
        if "cli" in sections:
            _say("CLI start-up…")
            results.startup = await asyncio.to_thread(startup.measure, tkoma, 5 if settings.quick else 10)
            _say(f"  {results.startup}")
    finally:
        for service in (litellm, tkoma, fake):
            if service is not None:
                service.stop()


def _keep_previous(results: Results, sections: set[str]) -> None:
    """With --only: the sections not run this time keep the previous run's numbers."""
    previous = load()
    if previous is None:
        return
    if "components" not in sections:
        results.components = previous.components
    if "http" not in sections:
        results.http, results.litellm_version = previous.http, previous.litellm_version
        results.litellm_ready_s = previous.litellm_ready_s
        results.notes += [note for note in previous.notes if note not in results.notes]
    results.ws = results.ws if "ws" in sections else previous.ws
    results.idle = results.idle if "idle" in sections else previous.idle
    results.startup = results.startup if "cli" in sections else previous.startup


async def run(options: Options) -> Results:
    started = time.monotonic()
    results = Results(machine=machine_info(), settings=options.settings())
    sections = set(options.sections)
    if "components" in sections:
        _say("component benchmarks (providers, engine, store)…")
        results.components = await asyncio.to_thread(components.run, options.quick)
    if sections & {"http", "ws", "idle", "cli"}:
        await _against_services(options, results)
    if options.soak:
        from bench import soak

        results.soak = await soak.run(soak.SoakOptions())
    if set(SECTIONS) - sections:
        _keep_previous(results, sections)
    results.soak = results.soak or load_soak()
    results.duration_s = time.monotonic() - started
    save(results)
    note = plot(results.http, title=f"{results.machine.cpu}, {results.machine.cores} cores, {results.machine.date}")
    if note:
        results.notes.append(note)
    path = report.write(results)
    _say(f"wrote {path} and bench/latency.png in {results.duration_s:.0f} s")
    return results
