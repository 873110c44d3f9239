"""Applying the access checks of `auth` to requests: WebSocket upgrades (refused before the handshake) and
HTTP requests (refused with OpenAI-shaped JSON errors)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from t_koma.gateway.auth import bearer_token, websocket_credentials
from t_koma.gateway.state import GatewayState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    subprotocol: str | None = None


def _auth_error() -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": "missing or wrong gateway token",
                "type": "authentication_error",
                "code": "invalid_token",
            }
        },
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _origin_error(origin: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": f"origin {origin[:200]!r} is not allowed (add it to [gateway] allowed_origins)",
                "type": "permission_error",
                "code": "origin_not_allowed",
            }
        },
        status_code=403,
    )


async def admit_websocket(websocket: WebSocket, state: GatewayState) -> Admission:
    """Check Origin (403) then the token (401) before accepting; refused upgrades never get a socket."""
    origin = websocket.headers.get("origin")
    if not state.origins.allows(origin):
        log.warning("refused WebSocket %s from origin %r", websocket.url.path, origin)
        await _deny(websocket, _origin_error(origin or ""))
        return Admission(False)
    credentials = websocket_credentials(
        websocket.headers, websocket.scope.get("query_string", b""), websocket.scope.get("subprotocols", ())
    )
    if not state.auth.check(credentials.token):
        log.warning("refused WebSocket %s: missing or wrong token", websocket.url.path)
        await _deny(websocket, _auth_error())
        return Admission(False)
    return Admission(True, credentials.subprotocol)


async def _deny(websocket: WebSocket, response: Response) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(1008)  # servers without the denial extension answer 403


def check_http(request: Request, state: GatewayState) -> Response | None:
    """None when the request may go on, else the error response."""
    origin = request.headers.get("origin")
    if not state.origins.allows(origin):
        return _origin_error(origin or "")
    if not state.auth.check(bearer_token(request.headers)):
        return _auth_error()
    return None
