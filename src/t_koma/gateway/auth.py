"""The gateway's access checks: the bearer token kept in `gateway.token` and the `Origin` allow-list.

A local server that runs shell commands for a model is a target for every web page the user opens, so every
route but `/health` needs the token and browsers' `Origin` must be allowed explicitly. `/health?challenge=` lets a
client check, before it sends the token, that the listener on the port knows the token (see `t_koma.handshake`)."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from t_koma.errors import ConfigError
from t_koma.files import ensure_private_dir, is_private
from t_koma.handshake import health_proof

log = logging.getLogger(__name__)

SUBPROTOCOL = "t-koma"
TOKEN_SUBPROTOCOL_PREFIX = "t-koma.token."


def load_or_create_token(path: Path) -> str:
    """The token in `path`, created (mode 0600, in a private directory) if missing. A token file that others could
    read is replaced by a new token: the old one must be taken as known."""
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if is_private(path):
            return _read_token(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        log.warning("gateway token file %s was readable by others (mode %o); replaced it with a new token", path, mode)
        return _replace_token(path)
    return _write_token(fd, path)


def _replace_token(path: Path) -> str:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    token = _write_token(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), temporary)
    os.replace(temporary, path)
    return token


def _write_token(fd: int, path: Path) -> str:
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    log.info("created gateway token file %s", path)
    return token


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the gateway token file {path} ({type(exc).__name__}); delete it") from None
    if len(token) < 16:
        raise ConfigError(f"gateway token file {path} is empty or too short; delete it to create a new one")
    return token


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented: the token (or None) and, for WebSocket, the subprotocol to select."""

    token: str | None
    subprotocol: str | None = None


class TokenAuth:
    """Checks a presented token against the gateway's in constant time."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    def prove(self, challenge: str) -> str:
        """The `/health` proof for a client's `challenge`: shows the token is known without revealing it."""
        return health_proof(self.secret, challenge)

    @property
    def secret(self) -> str:
        return self._token.decode()


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, credential = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def websocket_credentials(headers: Mapping[str, str], query_string: bytes, subprotocols: Sequence[str]) -> Credentials:
    """The token from the Authorization header, else `?token=`, else a `t-koma.token.<token>` subprotocol."""
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in subprotocols else None
    token = bearer_token(headers)
    if token is None:
        token = dict(parse_qsl(query_string.decode("latin-1"))).get("token")
    if token is None:
        for offered in subprotocols:
            if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                token = offered[len(TOKEN_SUBPROTOCOL_PREFIX) :]
                # A browser fails the handshake unless one of its offers is selected.
                subprotocol = subprotocol or offered
                break
    return Credentials(token, subprotocol)


class OriginPolicy:
    """Requests without `Origin` (non-browser clients) pass; browser requests need an allowed origin."""

    __slots__ = ("_allowed",)

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)

    def allows(self, origin: str | None) -> bool:
        if origin is None:
            return True
        return origin.rstrip("/").lower() in self._allowed
