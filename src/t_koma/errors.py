"""One typed error hierarchy for all of t-koma.

::

    TKomaError                      message, type, exit_code; serialises as {"error": {"message", "type"}}
    ├── ConfigError                 bad or missing configuration (exit 2)
    │   └── MissingKeyError         a used model's key variable is unset (names the variable, never a value)
    ├── InvalidModelError           a model ID that is malformed or not in the catalog (exit 4)
    ├── ProviderError               anything an upstream did wrong; `retryable`, `status`, `partial_text`
    │   ├── BadRequestError         400
    │   ├── AuthenticationError     401                                        (exit 3)
    │   ├── InsufficientCreditsError 402, `affordable_tokens` when the upstream says "can only afford N"
    │   ├── PermissionDeniedError   403 moderation / permission, `reasons`
    │   ├── ModelNotFoundError      404                                        (exit 4)
    │   ├── RequestTimeoutError     408 and client-side timeouts               (retryable)
    │   ├── RateLimitError          429, `retry_after` seconds from the header (retryable)
    │   ├── UpstreamError           500/502 and other 5xx, `upstream_provider`, `raw` (retryable)
    │   ├── OverloadedError         503/529, `retry_after` when the header says (retryable)
    │   ├── InvalidResponseError    unparseable body or stream                 (retryable)
    │   └── ConnectionFailedError   connection refused, DNS, TLS               (retryable)
    ├── AllModelsExhaustedError     every model of a fallback chain failed; lists each model and why
    ├── SessionNotFoundError        a session ID that does not exist
    ├── ReasoningExhaustedError     the model spent every output token reasoning and gave no answer
    ├── StoreError                  the database cannot be used: locked, disk full, read-only, damaged (exit 1)
    └── TurnCancelledError          a turn stopped by the user

No message ever contains an API key: providers pass their key to `scrub()` before building an error.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UPSTREAM = 5


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret (and of bearer tokens) in `text` with `***`: as written, lower- and
    upper-cased, and base64-encoded (standard or URL-safe, at any alignment inside a longer encoded text)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            for form in secret_forms(secret):
                if form in text:
                    text = text.replace(form, "***")
    return _BEARER.sub("Bearer ***", text)


@functools.lru_cache(maxsize=64)
def secret_forms(secret: str) -> tuple[str, ...]:
    """The ways a secret shows up in output that `scrub` recognises, longest first. Base64 pieces are the
    characters that depend on the secret's bytes only, for each of the three byte alignments."""
    forms = {secret, secret.lower(), secret.upper()}
    raw = secret.encode()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = -(-offset * 8 // 6)  # the first character with no padding bits in it
        end = (offset + len(raw)) * 8 // 6  # the last character with no bits of what follows
        piece = encoded[start:end]
        if len(piece) >= 8:
            forms.update((piece, piece.replace("+", "-").replace("/", "_")))
    return tuple(sorted(forms, key=len, reverse=True))


_BEARER = re.compile(r"Bearer\s+[A-Za-z0-9._\-]{8,}")


class TKomaError(Exception):
    """Base of every error t-koma raises on purpose."""

    error_type: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_UPSTREAM

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def type(self) -> str:
        return self.error_type

    def to_dict(self) -> dict[str, Any]:
        """The spec's error shape: `{"error": {"message", "type"}}`."""
        return {"error": {"message": self.message, "type": self.type}}


class ConfigError(TKomaError):
    error_type = "config_error"
    exit_code = EXIT_USAGE


class MissingKeyError(ConfigError):
    error_type = "missing_api_key"

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


class InvalidModelError(TKomaError):
    error_type = "invalid_model"
    exit_code = EXIT_NOT_FOUND

    def __init__(self, message: str, *, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.suggestions = suggestions


class SessionNotFoundError(TKomaError):
    error_type = "session_not_found"
    exit_code = EXIT_USAGE


class StoreError(TKomaError):
    """The local database failed for a reason the user can fix (another process holds it, the disk is full …)."""

    error_type = "store_error"
    exit_code = 1


class TurnCancelledError(TKomaError):
    error_type = "cancelled"
    exit_code = EXIT_UPSTREAM


class ReasoningExhaustedError(TKomaError):
    """A reasoning model stopped at its output limit with no visible answer and no tool call: its reasoning used
    the whole budget. Not retried: the same call would end the same way."""

    error_type = "reasoning_exhausted"
    exit_code = EXIT_UPSTREAM

    def __init__(self, output_tokens: int | None, model: str) -> None:
        spent = f"all {output_tokens} output tokens" if output_tokens else "all its output tokens"
        super().__init__(
            f"{model}: reasoning used {spent} and left no answer; raise max_tokens or lower reasoning effort "
            '(reasoning = { effort = "low" } in config.toml, or --reasoning low)'
        )
        self.output_tokens = output_tokens


class ProviderError(TKomaError):
    """An upstream call failed. `partial_text` keeps what a stream produced before it failed."""

    error_type = "provider_error"
    retryable: ClassVar[bool] = False
    default_status: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        upstream_provider: str | None = None,
        raw: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status if status is not None else self.default_status
        self.provider = provider
        self.upstream_provider = upstream_provider
        self.raw = raw
        self.partial_text = partial_text

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.status is not None:
            body["error"]["status"] = self.status
        return body


class BadRequestError(ProviderError):
    error_type = "invalid_request_error"
    exit_code = EXIT_USAGE
    default_status = 400


class AuthenticationError(ProviderError):
    error_type = "authentication_error"
    exit_code = EXIT_AUTH
    default_status = 401


class InsufficientCreditsError(ProviderError):
    error_type = "insufficient_credits"
    exit_code = EXIT_AUTH
    default_status = 402

    def __init__(self, message: str, *, affordable_tokens: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.affordable_tokens = affordable_tokens


class PermissionDeniedError(ProviderError):
    error_type = "permission_denied"
    exit_code = EXIT_AUTH
    default_status = 403

    def __init__(self, message: str, *, reasons: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reasons = reasons


class ModelNotFoundError(ProviderError):
    error_type = "model_not_found"
    exit_code = EXIT_NOT_FOUND
    default_status = 404


class RequestTimeoutError(ProviderError):
    error_type = "timeout"
    retryable = True
    default_status = 408


class RateLimitError(ProviderError):
    error_type = "rate_limited"
    retryable = True
    default_status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UpstreamError(ProviderError):
    error_type = "upstream_error"
    retryable = True
    default_status = 502


class OverloadedError(ProviderError):
    error_type = "overloaded"
    retryable = True
    default_status = 503

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InvalidResponseError(ProviderError):
    error_type = "invalid_response"
    retryable = True


class ConnectionFailedError(ProviderError):
    error_type = "connection_error"
    retryable = True


class AllModelsExhaustedError(TKomaError):
    """Every model of a fallback chain failed or is cooling down. `attempts` lists each model (its label)
    and why, in the order they were tried; `last_error` is the last upstream error, if any."""

    error_type = "all_models_exhausted"
    exit_code = EXIT_UPSTREAM

    def __init__(self, attempts: Iterable[tuple[str, str]], *, last_error: ProviderError | None = None) -> None:
        self.attempts: tuple[tuple[str, str], ...] = tuple(attempts)
        self.last_error = last_error
        listed = "; ".join(f"{label}: {why}" for label, why in self.attempts) or "the chain is empty"
        super().__init__(f"all models in the fallback chain failed ({listed})")

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["error"]["attempts"] = [{"model": label, "error": why} for label, why in self.attempts]
        return body


_AFFORD = re.compile(r"can only afford (\d+)")


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str | None = None,
    upstream_provider: str | None = None,
    raw: str | None = None,
    retry_after: float | None = None,
    reasons: tuple[str, ...] = (),
    partial_text: str = "",
) -> ProviderError:
    """Map an upstream HTTP status (or an in-body error code) to its error class. One flat table."""
    common: dict[str, Any] = {
        "status": status,
        "provider": provider,
        "upstream_provider": upstream_provider,
        "raw": raw,
        "partial_text": partial_text,
    }
    if status == 400 or status in (413, 422):
        return BadRequestError(message, **common)
    if status == 401:
        return AuthenticationError(message, **common)
    if status == 402:
        match = _AFFORD.search(message)
        return InsufficientCreditsError(message, affordable_tokens=int(match.group(1)) if match else None, **common)
    if status == 403:
        return PermissionDeniedError(message, reasons=reasons, **common)
    if status == 404:
        return ModelNotFoundError(message, **common)
    if status in (408, 504):
        return RequestTimeoutError(message, **common)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, **common)
    if status in (503, 529):
        return OverloadedError(message, retry_after=retry_after, **common)
    if status >= 500:
        return UpstreamError(message, **common)
    return BadRequestError(message, **common)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` header given in seconds; None when absent or not a number."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
