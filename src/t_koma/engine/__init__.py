"""The conversation engine: the tool loop, the fallback chain and its circuit breaker. Every turn — CLI,
WebSocket or /v1 — runs through here."""
