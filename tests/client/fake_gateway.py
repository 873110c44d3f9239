"""A small gateway for client tests: a Starlette app that plays the gateway's side of the WebSocket protocol
(docs/protocol.md) with scripted turns, so the client is tested over a real socket without the engine.

Turns are chosen by the message text: `slow` streams until `cancel`, `tool` asks for approval, `fallback`
reports a fallback, `fail` ends with an error, `drop` closes the connection mid-turn (a gateway restart),
`think` streams THOUGHTS as `reasoning_delta` frames first (and counts reasoning tokens), `think-fallback` thinks,
falls back, then thinks again, `think-hostile` thinks in escape sequences, `hostile` answers and runs a tool in
them, `tool-spoof`, `tool-long` and `tool-lines` ask for approval of a command that erases its own line, a
500-character one and a 32-line one; anything else streams "Hello **world**" with fixed usage. A `chat` with a
`reasoning` level the gateway would refuse gets its error.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from t_koma.handshake import CHALLENGE_PARAM, health_proof
from t_koma.messages import parse_reasoning_level

TOKEN = "test-gateway-token-0123456789"
USAGE: dict[str, Any] = {
    "input_tokens": 1200,
    "output_tokens": 34,
    "cache_read_tokens": 1000,
    "cache_creation_tokens": 0,
    "cost": 0.0012,
}
TOOL_OUTPUT = "\n".join(f"line {i}" for i in range(1, 21))
THOUGHTS = "\n".join(f"thought {i}" for i in range(1, 9))
REASONING_USAGE: dict[str, Any] = {**USAGE, "reasoning_tokens": 1500}
DOOMED_THOUGHT = "a doomed first attempt"
HOSTILE_THOUGHT = "evil\x1b[2J\x1b]0;pwned\x07 plan\x9b31m done\x1b]52;c;ZXZpbA==\x07"
HOSTILE_TEXT = "copy\x1b]52;c;ZXZpbA==\x07 retitle\x1b]0;pwned\x07 clear\x1b[2J\x1b[H done"
ANSWER = ["Hello ", "**wor", "ld**", "!"]
SPOOF = "touch X #\x1b[2K\x1b[1G│ $ ls -la"
TOOL_COMMANDS = {
    "tool": "seq 1 20",
    "hostile": "seq 1 20",
    "tool-spoof": SPOOF,
    "tool-long": "echo " + "x" * 491 + " END",
    "tool-lines": "ls -la" + "\n" * 31 + "rm -rf ~/important",
}


def catalog(count: int = 30) -> list[dict[str, Any]]:
    return [
        {
            "id": f"vendor{i}/model-{i}",
            "name": f"Model {i}",
            "description": f"Model number {i}",
            "context_length": 128000,
        }
        for i in range(count)
    ]


@dataclass
class Session:
    id: str
    title: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


class FakeGateway:
    """The ASGI app. `received` records every frame from every client, in order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self.sessions: dict[str, Session] = {}
        self.models = catalog()
        self.providers = [
            {"name": "anthropic", "label": "Anthropic (Claude)", "configured": False, "key_env": "ANTHROPIC_API_KEY"},
            {"name": "openrouter", "label": "OpenRouter", "configured": True, "key_env": "OPENROUTER_API_KEY"},
        ]
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/health", self.health),
                Route("/v1/models", self.v1_models),
                WebSocketRoute("/ws", self.ws),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def of_type(self, frame_type: str) -> list[dict[str, Any]]:
        return [frame for frame in list(self.received) if frame.get("type") == frame_type]

    def new_session(self, title: str = "") -> Session:
        with self._lock:
            session = Session(f"sess-{next(self._ids):04d}-abcdef", title)
        self.sessions[session.id] = session
        return session

    async def health(self, request: Request) -> JSONResponse:
        challenge = request.query_params.get(CHALLENGE_PARAM)
        proof = {"proof": health_proof(TOKEN, challenge)} if challenge else {}
        return JSONResponse({"status": "ok", "version": "fake", **proof})

    async def v1_models(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": {"message": "bad token", "type": "authentication_error"}}, 401)
        data = [{"id": "sonnet", "object": "model", "owned_by": "t-koma"}]
        data += [{"id": f"openrouter/{m['id']}", "owned_by": "openrouter", "name": m["name"]} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def ws(self, websocket: WebSocket) -> None:
        if websocket.headers.get("authorization") != f"Bearer {TOKEN}":
            await websocket.close(code=1008)
            return
        await websocket.accept()
        self.connections += 1
        connection = _Connection(self, websocket)
        await connection.run()


class _Connection:
    def __init__(self, gateway: FakeGateway, websocket: WebSocket) -> None:
        self.gateway = gateway
        self.ws = websocket
        self.session: Session | None = None
        self.selection = ("openrouter", "anthropic/claude-sonnet-4.5")
        self.cancel = asyncio.Event()
        self.approvals: dict[str, asyncio.Future[str]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, frame_type: str, request_id: Any = None, **fields: Any) -> None:
        frame: dict[str, Any] = {"type": frame_type, **fields}
        if request_id is not None:
            frame["id"] = request_id
        await self.ws.send_text(json.dumps(frame))

    async def error(self, request_id: Any, message: str, error_type: str, **details: Any) -> None:
        await self.send("error", request_id, error={"message": message, "type": error_type, **details})

    async def run(self) -> None:
        await self.send(
            "hello",
            version="fake",
            protocol=1,
            session_id=None,
            provider=self.selection[0],
            model=self.selection[1],
            chain=["sonnet"],
            providers=self.gateway.providers,
        )
        try:
            while True:
                frame = json.loads(await self.ws.receive_text())
                self.gateway.received.append(frame)
                await self.handle(frame)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for task in self.tasks:
                task.cancel()

    async def handle(self, frame: dict[str, Any]) -> None:
        kind, rid = frame.get("type"), frame.get("id")
        gateway = self.gateway
        if kind == "ping":
            await self.send("pong", rid)
        elif kind == "list_providers":
            await self.send("providers", rid, providers=gateway.providers)
        elif kind == "list_available_models":
            models = gateway.models if frame.get("all") else gateway.models[:20]
            await self.send("available_models", rid, provider=frame["provider"], models=models)
        elif kind == "select_provider":
            await self.select(rid, frame["provider"], frame["model"])
        elif kind == "create_session":
            self.session = gateway.new_session(frame.get("title") or "")
            await self.send("session_created", rid, session_id=self.session.id, title=self.session.title)
        elif kind == "list_sessions":
            await self.send("session_list", rid, sessions=[self.entry(s) for s in gateway.sessions.values()])
        elif kind == "switch_session":
            session = gateway.sessions.get(frame["session_id"])
            if session is None:
                await self.error(rid, f"no session {frame['session_id']}", "session_not_found")
                return
            self.session = session
            await self.send("session_switched", rid, session_id=session.id, title=session.title)
        elif kind == "get_history":
            session = gateway.sessions[frame.get("session_id") or (self.session.id if self.session else "")]
            await self.send("history", rid, session_id=session.id, messages=session.messages)
        elif kind == "chat":
            try:
                parse_reasoning_level(str(frame.get("reasoning") or "high"))
            except ValueError as exc:
                await self.error(rid, f"chat: field 'reasoning': {exc}", "invalid_message")
                return
            task = asyncio.create_task(self.turn(rid, frame["content"], frame.get("session_id")))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif kind == "cancel":
            self.cancel.set()
        elif kind == "tool_approval":
            future = self.approvals.pop(frame["call_id"], None)
            if future is None:
                await self.error(rid, "no such call", "not_found")
            else:
                future.set_result(frame["decision"])
        else:
            await self.error(rid, f"unknown message type '{kind}'", "unknown_type")

    async def select(self, rid: Any, provider: str, model: str) -> None:
        known = {m["id"] for m in self.gateway.models} | {"sonnet"}
        if provider == "anthropic":
            await self.error(
                rid, "anthropic needs ANTHROPIC_API_KEY", "invalid_model", reason="missing_api_key", key_env="X"
            )
        elif model not in known:
            await self.error(
                rid,
                f"unknown model '{model}'",
                "invalid_model",
                reason="unknown_model",
                suggestions=["vendor1/model-1"],
            )
        else:
            self.selection = (provider, model)
            await self.send("provider_selected", rid, provider=provider, model=model)

    def entry(self, session: Session) -> dict[str, Any]:
        return {
            "id": session.id,
            "title": session.title,
            "created_at": 1767225600.0,
            "updated_at": 1767225600.0 + len(session.messages),
            "message_count": len(session.messages),
            "input_tokens": session.input_tokens,
            "output_tokens": session.output_tokens,
            "cost": session.cost,
            "is_active": session is self.session,
            "busy": False,
        }

    async def turn(self, rid: Any, content: str, session_id: str | None) -> None:
        if session_id is not None:
            self.session = self.gateway.sessions[session_id]
        if self.session is None:
            self.session = self.gateway.new_session()
            await self.send("session_created", rid, session_id=self.session.id, title="")
        session = self.session
        session.messages.append({"role": "user", "content": content, "blocks": [{"type": "text", "text": content}]})
        sid = session.id
        self.cancel.clear()
        if content == "drop":
            await self.send("text_delta", rid, session_id=sid, text="partial")
            await self.ws.close(code=1012)
            return
        if content == "fail":
            await self.error(rid, "Rate limited", "rate_limited", session_id=sid)
            return
        if content == "slow":
            await self.send("text_delta", rid, session_id=sid, text="Working on it")
            await self.cancel.wait()
            await self.finish(rid, session, "Working on it", stop_reason="cancelled")
            return
        thoughts = await self.think(rid, sid, content)
        if content in ("fallback", "think-fallback"):
            await self.send("fallback", rid, session_id=sid, from_model="sonnet", to_model="kimi", error="rate_limited")
        if content == "think-fallback":
            thoughts = await self.think(rid, sid, "think")
        if content in TOOL_COMMANDS:
            await self.tool(rid, sid, TOOL_COMMANDS[content], HOSTILE_TEXT if content == "hostile" else TOOL_OUTPUT)
        pieces = [HOSTILE_TEXT[i : i + 5] for i in range(0, len(HOSTILE_TEXT), 5)] if content == "hostile" else ANSWER
        for piece in pieces:
            await self.send("text_delta", rid, session_id=sid, text=piece)
        await self.finish(rid, session, "".join(pieces), thoughts=thoughts)

    async def think(self, rid: Any, sid: str, content: str) -> str:
        """The reasoning of the `think*` turns, streamed in pieces; returns it ("" for other turns)."""
        thoughts = {"think": THOUGHTS, "think-fallback": DOOMED_THOUGHT, "think-hostile": HOSTILE_THOUGHT}
        text = thoughts.get(content, "")
        for start in range(0, len(text), 7):
            await self.send("reasoning_delta", rid, session_id=sid, text=text[start : start + 7])
        return text

    async def tool(self, rid: Any, sid: str, command: str, output: str) -> None:
        arguments = json.dumps({"command": command})
        call = {"call_id": "call_1", "name": "run_shell_command", "arguments": arguments}
        await self.send("tool_call", rid, session_id=sid, **call)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.approvals["call_1"] = future
        await self.send("tool_approval_request", rid, session_id=sid, **call)
        decision = await future
        if decision == "deny":
            await self.send("tool_result", rid, session_id=sid, call_id="call_1", content="denied", is_error=True)
        else:
            await self.send("tool_result", rid, session_id=sid, call_id="call_1", content=output, is_error=False)

    async def finish(
        self, rid: Any, session: Session, content: str, stop_reason: str = "stop", thoughts: str = ""
    ) -> None:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": content}]
        if thoughts:
            blocks.insert(0, {"type": "reasoning", "origin": "openrouter", "kind": "text", "text": thoughts})
        session.messages.append({"role": "assistant", "content": content, "blocks": blocks, "status": None})
        session.input_tokens += USAGE["input_tokens"]
        session.output_tokens += USAGE["output_tokens"]
        session.cost += USAGE["cost"]
        await self.send(
            "response",
            rid,
            session_id=session.id,
            message_id="m1",
            content=content,
            provider=self.selection[0],
            model=self.selection[1],
            stop_reason=stop_reason,
            done=True,
            usage=REASONING_USAGE if thoughts else USAGE,
        )
