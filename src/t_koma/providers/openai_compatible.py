"""A client for any OpenAI-compatible `/v1` server (vLLM, llama.cpp, Ollama, LM Studio, OpenAI itself …): the
plain chat-completions format with no OpenRouter-only fields; the key is optional."""

from __future__ import annotations

from t_koma.providers.base import ProviderSpec
from t_koma.providers.openai_chat import OpenAIChatProvider


class OpenAICompatibleProvider(OpenAIChatProvider):
    """`POST {base}/v1/chat/completions` and `GET {base}/v1/models`; no `Authorization` header without a key."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec, base_url=v1_base(spec.base_url), headers={})


def v1_base(base_url: str) -> str:
    """The server's `/v1` root: `base_url` trimmed of "/", with `/v1` appended unless it already ends in it."""
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"
