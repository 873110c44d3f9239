"""The client's check that the listener on the gateway's port is the user's gateway, before anything is sent to it.

`GET /health?challenge=<nonce>` must answer `proof = HMAC-SHA256(token, nonce)` (`t_koma.handshake`). Another
program on the port (another local user's, or an unrelated server) cannot give it, so it never receives the token
or a prompt; the user gets one line naming the port, the process when it can be found, and the fix. The request
uses the standard library's urllib: one tiny GET, cheaper than importing an async HTTP client."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from t_koma.client.frames import GatewayUnavailableError
from t_koma.client.port_owner import describe_port_owner
from t_koma.handshake import CHALLENGE_PARAM, new_challenge, proof_matches

MAX_HEALTH_BYTES = 64 * 1024
_LOCAL_HOSTS = ("localhost", "::1", "0.0.0.0", "::", "")

TokenSource = Callable[[], str | None]
"""Reads the gateway token (from its file) when the answer is judged, so a just-created token file is seen."""


class ForeignListenerError(GatewayUnavailableError):
    """Something listens on the gateway's port but did not prove it is the user's gateway; it was sent nothing."""

    error_type = "foreign_listener"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """What answered `/health`: `version` when the user's gateway proved itself; `problem` when something else
    answered (`timed_out` if it stayed silent); neither when nothing listens."""

    version: str | None = None
    problem: str | None = None
    timed_out: bool = False


class _NotTKoma(Exception):
    """The listener's answer, or lack of one, is not a t-koma `/health` answer."""

    def __init__(self, problem: str, *, timed_out: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.timed_out = timed_out


def check_gateway(http_url: str, token: TokenSource, timeout: float) -> HealthCheck:
    """Ask the listener at `http_url` to prove it knows the token. Never uses a proxy; sends no token."""
    challenge = new_challenge()
    try:
        body = _fetch_health(f"{http_url.rstrip('/')}/health?{CHALLENGE_PARAM}={challenge}", timeout)
    except _NotTKoma as exc:
        return HealthCheck(problem=exc.problem, timed_out=exc.timed_out)
    if body is None:
        return HealthCheck()
    return _judge(body, token(), challenge)


def require_gateway(http_url: str, token: TokenSource, timeout: float) -> str:
    """The version of the user's gateway at `http_url`; raises `ForeignListenerError` for anything else there and
    `GatewayUnavailableError` when nothing listens."""
    found = check_gateway(http_url, token, timeout)
    if found.version is not None:
        return found.version
    if found.problem is not None:
        raise ForeignListenerError(foreign_listener_message(http_url, found.problem))
    raise GatewayUnavailableError(f"cannot connect to the gateway at {http_url}: nothing listens there")


def foreign_listener_message(http_url: str, problem: str) -> str:
    """One line: the port, what is wrong, the process when it can be found, and the fix."""
    parts = urlsplit(http_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    owner = describe_port_owner(port) if _is_local(host) else None
    it_is = f"; it is {owner}" if owner else ""
    return (
        f"port {port} on {host} is not your t-koma gateway: the listener there {problem}{it_is}. Nothing was sent "
        f"to it (no token, no prompt). Stop that process or set another `[gateway] port` in config.toml"
    )


def http_base(ws_url: str) -> str:
    """`ws://host:port/ws` → `http://host:port` (and `wss` → `https`)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def _is_local(host: str) -> bool:
    return host.startswith("127.") or host in _LOCAL_HOSTS


def _fetch_health(url: str, timeout: float) -> dict[str, object] | None:
    """The JSON object `/health` answered; None when nothing listens (connection refused)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as reply:
            raw = reply.read(MAX_HEALTH_BYTES)
    except urllib.error.HTTPError as exc:
        raise _NotTKoma(f"answered /health with HTTP {exc.code}") from exc
    except (OSError, http.client.HTTPException) as exc:
        _raise_unless_refused(exc, timeout)
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or str(body.get("status", "")).lower() != "ok":
        raise _NotTKoma("does not answer /health like t-koma")
    return body


def _raise_unless_refused(exc: BaseException, timeout: float) -> None:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        raise _NotTKoma(f"did not answer /health within {timeout:g} s", timed_out=True) from exc
    if isinstance(reason, ConnectionResetError) or not isinstance(reason, OSError):
        raise _NotTKoma("does not speak HTTP (it closed the connection or answered garbage)") from exc
    # refused or unreachable: nothing listens


def _judge(body: dict[str, object], token: str | None, challenge: str) -> HealthCheck:
    if token is None:
        return HealthCheck(problem="cannot be checked: there is no gateway token file yet")
    if "proof" not in body:
        return HealthCheck(problem="gave no proof that it knows the gateway token (another program, or an old t-koma)")
    if not proof_matches(token, challenge, body["proof"]):
        return HealthCheck(problem="gave a wrong proof (another program, or a gateway with another token)")
    return HealthCheck(version=str(body.get("version") or ""))
