"""The gateway: one ASGI app serving the WebSocket chat protocol (`/ws`), live logs (`/logs`), an
OpenAI-compatible API (`/v1`) and `/health`, in front of the engine. The protocol is in docs/protocol.md."""

from __future__ import annotations
