"""The HTTP transport against a hostile upstream on loopback: bodies past the cap fail with a clear
InvalidResponseError instead of being read whole, a POST is never redirected, and credentials in the base URL
are sent as Basic auth but never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from t_koma.errors import InvalidResponseError, ProviderError, UpstreamError
from t_koma.providers.base import Timeouts
from t_koma.providers.http import MAX_ERROR_BODY_BYTES, HttpClient
from tests.fakes.server import ServerThread, serve

LIMIT = 4096
seen_auth: list[str] = []


async def big_json(request: Request) -> Response:
    return Response(b'{"a": "' + b"x" * LIMIT + b'"}', media_type="application/json")


async def _pieces(count: int, piece: bytes) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield piece


async def big_chunked_json(request: Request) -> Response:
    return StreamingResponse(_pieces(100, b" " * 1000), media_type="application/json")


async def big_stream(request: Request) -> Response:
    event = b'data: {"choices": []}\n\n'
    return StreamingResponse(_pieces(LIMIT, event), media_type="text/event-stream")


async def huge_error(request: Request) -> Response:
    return StreamingResponse(_pieces(MAX_ERROR_BODY_BYTES // 1000 + 10, b"e" * 1000), status_code=500)


async def redirect(request: Request) -> Response:
    return Response(status_code=307, headers={"Location": "http://elsewhere.test:8080/v1/chat/completions"})


async def small(request: Request) -> Response:
    seen_auth.append(request.headers.get("authorization", ""))
    return Response(b'{"ok": true}', media_type="application/json")


APP = Starlette(
    routes=[
        Route("/big-json", big_json, methods=["POST"]),
        Route("/big-chunked-json", big_chunked_json, methods=["POST"]),
        Route("/big-stream", big_stream, methods=["POST"]),
        Route("/huge-error", huge_error, methods=["POST"]),
        Route("/redirect", redirect, methods=["POST"]),
        Route("/small", small, methods=["POST"]),
    ]
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with serve(APP) as server:
        yield server


def _parse_error(status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
    return UpstreamError(f"status {status}, {len(raw)} bytes", status=status)


def _client(base_url: str) -> HttpClient:
    return HttpClient(
        base_url=base_url,
        headers={},
        timeouts=Timeouts(),
        provider="test",
        parse_error=_parse_error,
        max_response_bytes=LIMIT,
    )


async def _post_json(client: HttpClient, path: str) -> object:
    try:
        async with client.request("POST", path, {"q": 1}) as response:
            return await client.read_json(response)
    finally:
        await client.aclose()


@pytest.mark.parametrize("path", ["/big-json", "/big-chunked-json"])
async def test_a_json_body_past_the_cap_is_refused(upstream: ServerThread, path: str) -> None:
    with pytest.raises(InvalidResponseError, match=f"larger than {LIMIT} bytes"):
        await _post_json(_client(upstream.url), path)


async def test_a_stream_past_the_cap_is_refused(upstream: ServerThread) -> None:
    client = _client(upstream.url)
    events = 0
    with pytest.raises(InvalidResponseError, match=f"larger than {LIMIT} bytes"):
        async with client.request("POST", "/big-stream", {"q": 1}) as response:
            async for _ in client.iter_sse(response):
                events += 1
    await client.aclose()
    assert events < LIMIT  # the rest was never read


async def test_an_error_body_is_read_up_to_its_own_cap(upstream: ServerThread) -> None:
    with pytest.raises(InvalidResponseError, match=f"larger than {MAX_ERROR_BODY_BYTES} bytes"):
        await _post_json(_client(upstream.url), "/huge-error")


async def test_a_post_is_never_redirected(upstream: ServerThread) -> None:
    with pytest.raises(UpstreamError) as caught:
        await _post_json(_client(upstream.url), "/redirect")
    message = caught.value.message
    assert "307 redirecting to elsewhere.test" in message and "set the base URL" in message, message
    assert caught.value.status == 502


async def test_base_url_credentials_become_basic_auth_and_are_never_shown(upstream: ServerThread) -> None:
    seen_auth.clear()
    with_creds = upstream.url.replace("http://", "http://admin:s3cret-pw@")
    assert await _post_json(_client(with_creds), "/small") == {"ok": True}
    assert seen_auth == ["Basic YWRtaW46czNjcmV0LXB3"]  # admin:s3cret-pw
    client = _client(with_creds + "/nowhere")
    assert "s3cret" not in client.base_url and "admin" not in client.base_url
    with pytest.raises(UpstreamError) as caught:
        await _post_json(client, "/missing")
    assert "s3cret" not in caught.value.message
