"""`create_app(config, engine)`: the gateway's Starlette app. Starlette because it is small (one dependency,
anyio), has WebSocket routes and streaming responses, and adds little per request; see server.py for the
server."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from t_koma import __version__
from t_koma.config.model import Config
from t_koma.engine.engine import Engine
from t_koma.gateway.access import admit_websocket
from t_koma.gateway.auth import OriginPolicy, TokenAuth, load_or_create_token
from t_koma.gateway.logs import LogHub, stream_logs
from t_koma.gateway.openai_api import chat_completions, list_models
from t_koma.gateway.state import GatewayState
from t_koma.gateway.ws import websocket_endpoint
from t_koma.handshake import CHALLENGE_PARAM, MAX_CHALLENGE_CHARS

log = logging.getLogger(__name__)


async def health(request: Request) -> Response:
    """`{"status": "ok", "version"}`; with `?challenge=<nonce>` also `proof`, HMAC-SHA256(token, nonce) in hex."""
    body = {"status": "ok", "version": __version__}
    challenge = request.query_params.get(CHALLENGE_PARAM)
    if challenge is None:
        return JSONResponse(body)
    if not 0 < len(challenge) <= MAX_CHALLENGE_CHARS:
        message = f"challenge must be 1 to {MAX_CHALLENGE_CHARS} characters"
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=400)
    return JSONResponse({**body, "proof": gateway_state(request.app).auth.prove(challenge)})


async def logs_endpoint(websocket: WebSocket) -> None:
    state: GatewayState = websocket.app.state.gateway
    admission = await admit_websocket(websocket, state)
    if not admission.ok:
        return
    await websocket.accept(subprotocol=admission.subprotocol)
    await stream_logs(websocket, state.logs)


def create_app(config: Config, engine: Engine, *, token: str | None = None) -> Starlette:
    """The app; `app.state.gateway` is its `GatewayState`. The token comes from `config.token_path` (created
    on first use) unless given. Call `close_app(app)` when done, to detach the log handler."""
    secret = token if token is not None else load_or_create_token(config.token_path)
    auth = TokenAuth(secret)
    hub = LogHub((*config.secrets.all_values(), secret))
    hub.attach()
    logging.getLogger("t_koma").setLevel(config.logging.level.upper())
    state = GatewayState(config, engine, auth, OriginPolicy(config.gateway.allowed_origins), hub)
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            WebSocketRoute("/ws", websocket_endpoint),
            WebSocketRoute("/logs", logs_endpoint),
        ]
    )
    app.state.gateway = state
    return app


def gateway_state(app: Starlette) -> GatewayState:
    state: GatewayState = app.state.gateway
    return state


def close_app(app: Starlette) -> None:
    gateway_state(app).logs.detach()
