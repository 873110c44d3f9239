"""The fault catalogue shared by the engine and gateway fault matrices: every way an upstream can fail (issue 7
§2), the typed error each must become, and whether it moves a turn to the next model.

A fault is played either by the fake upstream (an HTTP error, a broken or stalled stream, a body that is not
JSON) or by pointing the failing model's `base_url` at a dead end on loopback: a closed port (connection
refused), port 0 (an address nothing can route to), TLS spoken to a plain-HTTP port (a TLS failure), or a
socket that accepts connections and never sends a byte (a read timeout)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from t_koma.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    InsufficientCreditsError,
    InvalidResponseError,
    ModelNotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
    UpstreamError,
)
from t_koma.providers.base import ProviderSpec, Timeouts
from t_koma.providers.factory import ModelResolver
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter, FakeUpstream
from tests.fakes.replies import (
    Reply,
    cut_stream_reply,
    error_reply,
    garbage_reply,
    midstream_error_reply,
    stall_reply,
)
from tests.fakes.server import ServerThread

SHORT_READ_TIMEOUT = 0.4
"""The read timeout for the stall faults: long enough for a loopback reply, short enough for a fast test."""
RATE_LIMIT_COOLDOWN = 3600.0
FAILURE_COOLDOWN = 300.0
PARTIAL = "half an answer"
MODERATION_REASONS = ("violence", "self-harm")
CREDITS_MESSAGE = "Insufficient credits. Add more using https://openrouter.ai/credits"
AFFORD_MESSAGE = (
    "This request requires more credits, or fewer max_tokens. "
    "You requested up to 4096 tokens, but can only afford 1234."
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One upstream behaviour and what t-koma must make of it."""

    id: str
    error: type[ProviderError]
    """The exact error class, for streaming calls (and non-streaming unless `error_nonstream` says otherwise)."""
    reply: Reply | None = None
    """What the fake upstream plays for the failing model; None = the model's base URL is `dead_end`."""
    dead_end: str | None = None
    """"refused", "unroutable", "tls" or "silent" (see `DeadEnds`)."""
    status: int | None = None
    """The error's `status` (the upstream's HTTP status or in-stream code); None = no status."""
    cooldown: float | None = None
    """Seconds the failing model cools down for (retryable faults only)."""
    partial: str = ""
    """Text a streaming call receives before the failure."""
    error_nonstream: type[ProviderError] | None = None
    slow: bool = False
    """Needs the short read timeout (a stall)."""
    check: Callable[[ProviderError], bool] | None = None
    """Extra facts the typed error must carry (credits affordable, moderation reasons, Retry-After)."""

    @property
    def retryable(self) -> bool:
        return self.error.retryable

    def error_for(self, stream: bool) -> type[ProviderError]:
        return self.error if stream or self.error_nonstream is None else self.error_nonstream

    def __str__(self) -> str:
        return self.id


def _affordable(error: ProviderError) -> bool:
    return isinstance(error, InsufficientCreditsError) and error.affordable_tokens == 1234


def _no_affordable(error: ProviderError) -> bool:
    return isinstance(error, InsufficientCreditsError) and error.affordable_tokens is None


def _reasons(error: ProviderError) -> bool:
    return isinstance(error, PermissionDeniedError) and error.reasons == MODERATION_REASONS


def _retry_after(seconds: float | None) -> Callable[[ProviderError], bool]:
    def check(error: ProviderError) -> bool:
        return isinstance(error, RateLimitError) and error.retry_after == seconds

    return check


FAULTS: tuple[Fault, ...] = (
    Fault("400", BadRequestError, error_reply(400, "messages: must not be empty"), status=400),
    Fault("401", AuthenticationError, error_reply(401, "No auth credentials found"), status=401),
    Fault("402-credits", InsufficientCreditsError, error_reply(402, CREDITS_MESSAGE), status=402, check=_no_affordable),
    Fault(
        "402-can-only-afford", InsufficientCreditsError, error_reply(402, AFFORD_MESSAGE), status=402, check=_affordable
    ),
    Fault(
        "403-moderation",
        PermissionDeniedError,
        error_reply(
            403,
            "Input was flagged by moderation",
            metadata={"reasons": list(MODERATION_REASONS), "flagged_input": "…", "provider_name": "OpenAI"},
        ),
        status=403,
        check=_reasons,
    ),
    Fault("404", ModelNotFoundError, error_reply(404, "No endpoints found for test/alpha"), status=404),
    Fault(
        "408",
        RequestTimeoutError,
        error_reply(408, "Request timed out upstream"),
        status=408,
        cooldown=FAILURE_COOLDOWN,
    ),
    Fault(
        "429-retry-after",
        RateLimitError,
        error_reply(429, "Rate limit exceeded", headers={"Retry-After": "7"}),
        status=429,
        cooldown=7.0,
        check=_retry_after(7.0),
    ),
    Fault(
        "429-no-retry-after",
        RateLimitError,
        error_reply(429, "Rate limit exceeded"),
        status=429,
        cooldown=RATE_LIMIT_COOLDOWN,
        check=_retry_after(None),
    ),
    Fault("500", UpstreamError, error_reply(500, "Internal server error"), status=500, cooldown=FAILURE_COOLDOWN),
    Fault("502", UpstreamError, error_reply(502, "Provider returned error"), status=502, cooldown=FAILURE_COOLDOWN),
    Fault("503", OverloadedError, error_reply(503, "No instances available"), status=503, cooldown=FAILURE_COOLDOWN),
    Fault("529", OverloadedError, error_reply(529, "Overloaded"), status=529, cooldown=FAILURE_COOLDOWN),
    Fault("body-not-json", InvalidResponseError, garbage_reply("<html>502 upstream exploded</html>"), cooldown=300),
    Fault(
        "stream-cut-before-done",
        UpstreamError,
        cut_stream_reply(PARTIAL),
        status=502,
        partial=PARTIAL,
        cooldown=FAILURE_COOLDOWN,
        error_nonstream=InvalidResponseError,
    ),
    Fault(
        "error-chunk-first",
        UpstreamError,
        midstream_error_reply("", code=502, message="Provider disconnected"),
        status=502,
        cooldown=FAILURE_COOLDOWN,
    ),
    Fault(
        "error-chunk-midway",
        UpstreamError,
        midstream_error_reply(PARTIAL, code=502, message="Provider disconnected"),
        status=502,
        partial=PARTIAL,
        cooldown=FAILURE_COOLDOWN,
    ),
    Fault(
        "stall-after-headers",
        RequestTimeoutError,
        stall_reply(30),
        status=408,
        cooldown=FAILURE_COOLDOWN,
        slow=True,
    ),
    Fault("stall-no-bytes", RequestTimeoutError, dead_end="silent", status=408, cooldown=FAILURE_COOLDOWN, slow=True),
    Fault("connection-refused", ConnectionFailedError, dead_end="refused", cooldown=FAILURE_COOLDOWN),
    Fault("unroutable-port", ConnectionFailedError, dead_end="unroutable", cooldown=FAILURE_COOLDOWN),
    Fault("tls-failure", ConnectionFailedError, dead_end="tls", cooldown=FAILURE_COOLDOWN),
)

REPLY_FAULTS = tuple(fault for fault in FAULTS if fault.reply is not None)
DEAD_END_FAULTS = tuple(fault for fault in FAULTS if fault.dead_end is not None)


class DeadEnds:
    """Loopback addresses where no upstream answers, as OpenAI-style base URLs. `silent` accepts connections
    (the kernel completes the handshake) and never sends a byte."""

    def __init__(self, plain_http_port: int) -> None:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
        closed.close()  # nothing listens there any more: connection refused
        self._silent = socket.socket()
        self._silent.bind(("127.0.0.1", 0))
        self._silent.listen(64)
        self.urls = {
            "refused": f"http://127.0.0.1:{refused_port}/api/v1",
            "unroutable": "http://127.0.0.1:0/api/v1",
            "tls": f"https://127.0.0.1:{plain_http_port}/api/v1",
            "silent": f"http://127.0.0.1:{self._silent.getsockname()[1]}/api/v1",
        }

    def close(self) -> None:
        self._silent.close()


@contextmanager
def dead_ends(plain_http_url: str) -> Iterator[DeadEnds]:
    ends = DeadEnds(int(plain_http_url.rsplit(":", 1)[1]))
    try:
        yield ends
    finally:
        ends.close()


def dead_end_models(ends: DeadEnds) -> str:
    """config.toml tables: for each dead end, OpenRouter aliases `<end>` and `<end>2` pointing at it."""
    tables = []
    for name, url in ends.urls.items():
        for suffix in ("", "2"):
            tables.append(
                f'[models.{name}{suffix}]\nprovider = "openrouter"\nmodel = "test/{name}"\nbase_url = "{url}"\n'
            )
    return "\n".join(tables)


def shorten_read_timeout(monkeypatch: pytest.MonkeyPatch, seconds: float = SHORT_READ_TIMEOUT) -> None:
    """Every provider client built from now on gives up after `seconds` without a byte (the default is 300 s,
    and no config key exposes it)."""
    original = ModelResolver.resolve

    def resolve(self: ModelResolver, ref: str, provider: str | None = None) -> ProviderSpec:
        return replace(original(self, ref, provider), timeouts=Timeouts(connect=5.0, read=seconds))

    monkeypatch.setattr(ModelResolver, "resolve", resolve)


class SharedOpenRouter:
    """One fake OpenRouter server for a whole test module, with a fresh `FakeOpenRouter` installed per test: the
    matrices run ~150 cases, and starting and stopping uvicorn for each would cost ~0.2 s apiece."""

    def __init__(self) -> None:
        self._switch = _Switch()
        self._server = ServerThread(self._switch)
        self.url = self._server.url

    def __enter__(self) -> SharedOpenRouter:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def fresh(self, monkeypatch: pytest.MonkeyPatch) -> FakeUpstream:
        """A new fake for this test, and OPENROUTER_BASE_URL / OPENROUTER_API_KEY pointing at it (the contract
        of `tests.fakes.openrouter.fake_openrouter`)."""
        fake = self.install()
        monkeypatch.setenv("OPENROUTER_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
        return fake

    def install(self) -> FakeUpstream:
        """A new fake for the next requests, without touching the environment."""
        app = self._switch.target = FakeOpenRouter()
        return FakeUpstream(app=app, url=self.url, base_url=self.url + "/api/v1")


class _Switch:
    """The shared server's ASGI app: forwards to the current test's fake."""

    def __init__(self) -> None:
        self.target: FakeOpenRouter | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "no FakeOpenRouter is installed"
        await self.target(scope, receive, send)
