"""The HTTP transport every provider uses: one aiohttp session per provider client, explicit timeouts, and
transport failures mapped to the error hierarchy. aiohttp is used because its per-request cost stays flat under
concurrency (see docs/dependencies.md)."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from t_koma.errors import (
    ConnectionFailedError,
    InvalidResponseError,
    ProviderError,
    RequestTimeoutError,
    UpstreamError,
    scrub,
)
from t_koma.providers.base import Timeouts
from t_koma.providers.sse import SSEDecoder, SSEEvent

DRAIN_SECONDS = 0.1
"""How long `finish_body` waits for the end of a body (it normally arrives with or right after the last event)."""

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest upstream body read (JSON or a whole stream): past it the call fails instead of filling memory."""
MAX_ERROR_BODY_BYTES = 1024 * 1024
"""Largest body of a non-2xx answer read to build its error."""

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@]+@")


def redact_userinfo(text: str) -> str:
    """`text` with the `user:password@` part of every URL in it replaced by `***@`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The password a URL carries in its userinfo (as written and decoded), to be scrubbed wherever it shows up."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return ()
    return tuple({password, urllib.parse.unquote(password)}) if password else ()


def split_userinfo(url: str) -> tuple[str, str | None]:
    """`url` without its `user:password@` part, and that part as a Basic `Authorization` value (or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    password = urllib.parse.unquote(parts.password or "")
    return bare, aiohttp.encode_basic_auth(urllib.parse.unquote(parts.username), password)


ErrorParser = Callable[[int, bytes, Mapping[str, str]], ProviderError]
"""Turns a non-2xx status, its body and headers into the provider's typed error."""


class HttpClient:
    """A lazily opened aiohttp session bound to one base URL and one set of headers."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        provider: str,
        parse_error: ErrorParser,
        secrets: tuple[str, ...] = (),
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        bare, basic = split_userinfo(base_url)
        self.base_url = bare.rstrip("/")
        self._headers = dict(headers)
        if basic is not None and not any(name.lower() == "authorization" for name in self._headers):
            self._headers["Authorization"] = basic  # a key's own header wins over the URL's
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_read=timeouts.read)
        self._provider = provider
        self._parse_error = parse_error
        self._secrets = (*secrets, *url_secrets(base_url)) if "@" in base_url else secrets
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=connector,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                auto_decompress=True,
            )
        return self._session

    @asynccontextmanager
    async def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; yield the 2xx response, or raise the provider's typed error for any other status
        and a transport error for connection failures and timeouts. A POST is never redirected (the conversation
        would go to another server): a 3xx answer is an error naming where it pointed."""
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        url = self.base_url + path
        try:
            async with self._client().request(
                method, url, data=data, headers=headers, allow_redirects=method != "POST"
            ) as response:
                if response.status >= 300:
                    raise await self._status_error(response)
                yield response
        except ProviderError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise RequestTimeoutError(self._describe("timed out", exc), provider=self._provider) from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectionFailedError(self._describe("connection failed", exc), provider=self._provider) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise UpstreamError(self._describe("connection dropped", exc), provider=self._provider) from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailedError(self._describe("request failed", exc), provider=self._provider) from None

    async def _status_error(self, response: aiohttp.ClientResponse) -> ProviderError:
        location = response.headers.get("Location")
        if 300 <= response.status < 400 and location is not None:
            target = urllib.parse.urlsplit(location).hostname or "the same server"
            return UpstreamError(
                self._describe(
                    f"answered {response.status} redirecting to {target}, which t-koma does not follow for a POST",
                    "set the base URL to the address the API is really served at",
                ),
                provider=self._provider,
                status=502,
            )
        raw = await self.read_capped(response, MAX_ERROR_BODY_BYTES)
        return self._parse_error(response.status, raw, response.headers)

    async def read_capped(self, response: aiohttp.ClientResponse, limit: int | None = None) -> bytes:
        """The whole body, or InvalidResponseError once it passes `limit` (default `max_response_bytes`) bytes."""
        limit = self.max_response_bytes if limit is None else limit
        if response.content_length is not None and response.content_length > limit:
            raise self._too_large(limit)
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise self._too_large(limit)
        return bytes(body)

    def _too_large(self, limit: int) -> InvalidResponseError:
        return InvalidResponseError(
            self._describe(f"the response body is larger than {limit} bytes", "check that the base URL is the API's"),
            provider=self._provider,
        )

    async def read_json(self, response: aiohttp.ClientResponse) -> Any:
        """The body as JSON. Leading whitespace (OpenRouter's keep-alive for long non-streaming calls) is fine."""
        raw = await self.read_capped(response)
        try:
            return orjson.loads(raw.strip())
        except orjson.JSONDecodeError:
            preview = scrub(raw[:200].decode("utf-8", "replace"), self._secrets)
            raise InvalidResponseError(
                f"{self._provider} returned a body that is not JSON: {preview!r}", provider=self._provider
            ) from None

    async def iter_sse(self, response: aiohttp.ClientResponse) -> AsyncGenerator[SSEEvent, None]:
        """The response body as SSE events; a stall longer than the read timeout raises RequestTimeoutError."""
        decoder = SSEDecoder()
        received = 0
        try:
            async for chunk in response.content.iter_any():
                received += len(chunk)
                if received > self.max_response_bytes:
                    raise self._too_large(self.max_response_bytes)
                for event in decoder.feed(chunk):
                    yield event
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise RequestTimeoutError(self._describe("stream stalled", exc), provider=self._provider) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError) as exc:
            raise UpstreamError(self._describe("stream dropped", exc), provider=self._provider) from None
        for event in decoder.close():
            yield event

    async def finish_body(self, response: aiohttp.ClientResponse) -> None:
        """Read (and drop) the rest of a body whose content is no longer needed — what follows a stream's last
        event, usually just the chunked-encoding terminator — so that the connection goes back to the pool: aiohttp
        closes a connection released before the end of its body, and the next call then pays a new TCP (and TLS)
        handshake. Waits at most `DRAIN_SECONDS` for bytes still on the way; if they are late the connection is
        simply closed as before."""
        content = response.content
        if content.at_eof():
            return
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while not content.at_eof():
                    await content.readany()
        except (TimeoutError, aiohttp.ClientError):
            pass

    def _describe(self, what: str, exc: BaseException | str) -> str:
        detail = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
        return redact_userinfo(scrub(f"{self._provider}: {what} ({self.base_url}): {detail}", self._secrets))

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def json_error_message(body: Any, fallback: str) -> tuple[str, Mapping[str, Any]]:
    """`(message, metadata)` from the common `{"error": {"message", "metadata"}}` shape (or a plain string)."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            message = error.get("message")
            metadata = error.get("metadata")
            return (str(message) if message else fallback, metadata if isinstance(metadata, Mapping) else {})
        if isinstance(error, str):
            return error, {}
        if isinstance(body.get("message"), str):
            return str(body["message"]), {}
    return fallback, {}
