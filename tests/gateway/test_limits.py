"""Security limits of a running gateway: credentials in a `base_url` never leave it, `/v1` refuses `n` other
than 1 and oversized bodies, and a WebSocket client that stops reading is dropped before its queue grows past
its byte budget."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from t_koma.config.loader import load_config
from t_koma.gateway import http_protocol, openai_api, ws
from t_koma.gateway.logs import MAX_LINE_CHARS, RateLimitFilter
from tests.fakes.openrouter import TEST_KEY, FakeUpstream
from tests.fakes.replies import text_reply
from tests.gateway.conftest import BASE_CONFIG, RunningGateway, run_gateway, until, write_config

URL_PASSWORD = "hunter2-url-password"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _post(gateway: RunningGateway, body: Any, **headers: str) -> tuple[int, str]:
    async with gateway.http() as http:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with http.post(
            "/v1/chat/completions", data=data, headers={**gateway.auth_headers, **headers}
        ) as response:
            return response.status, await response.text()


@contextmanager
def _log_file(gateway: RunningGateway) -> Iterator[io.StringIO]:
    """A log handler filtered as `serve` filters the one writing gateway.log."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(gateway.state.logs.scrubber)
    logger = logging.getLogger("t_koma")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


async def test_base_url_credentials_never_reach_errors_frames_or_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", f"http://admin:{URL_PASSWORD}@127.0.0.1:{_closed_port()}/api/v1")
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    write_config(BASE_CONFIG)
    async with run_gateway(load_config(warn=lambda _: None)) as gateway:
        status, text = await _post(gateway, {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 502, text
        assert "connection failed (http://127.0.0.1:" in text, text
        client = await gateway.connect()
        await client.send(type="chat", id="c1", content="hi")
        _, failed = await client.until("error")
        await client.close()
        assert "connection failed (http://127.0.0.1:" in failed["error"]["message"], failed
        with _log_file(gateway) as log_file:
            logging.getLogger("t_koma.test").warning("retrying http://admin:%s@example.test/v1", URL_PASSWORD)
        log_lines = [*gateway.state.logs.backlog(), log_file.getvalue()]
        assert any("connection failed" in line for line in log_lines)
        assert all("http://***@example.test/v1" in line for line in log_lines[-2:]), log_lines[-2:]
        shown = [text for text in (*gateway.seen, *log_lines) if "t_koma.test" not in text and "retrying" not in text]
        leaked = [text for text in (*shown, *log_lines) if URL_PASSWORD in text or "admin:" in text]
        assert not leaked, leaked[:3]


@pytest.mark.parametrize("n", [3, 0, "2", True])
async def test_n_other_than_one_is_refused_with_400(gateway: RunningGateway, fake: FakeUpstream, n: Any) -> None:
    status, text = await _post(gateway, {"model": "fast", "n": n, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400, text
    error = orjson.loads(text)["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "n")
    assert "'n' must be 1" in error["message"]
    assert fake.app.chat_requests == []


async def test_n_of_one_is_served(gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(text_reply("one"))
    status, text = await _post(gateway, {"model": "fast", "n": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, text
    assert len(orjson.loads(text)["choices"]) == 1


async def _raw_exchange(gateway: RunningGateway, head: str, body: bytes) -> tuple[int, bytes, bytes]:
    """Send a request head and part of a body over a raw socket, never finishing it; the status line, the
    response body and what followed (b"" when the gateway closed the connection)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        headers = f"Authorization: Bearer {gateway.token}\r\nContent-Type: application/json\r\n"
        writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{headers}{head}\r\n".encode() + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(
            next(line for line in response_head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        response_body = await reader.readexactly(length)
        rest = await asyncio.wait_for(reader.read(), 10)
        return int(status_line.split()[1]), response_body, rest
    finally:
        writer.close()


@pytest.fixture
async def small_body_gateway(fake: FakeUpstream) -> AsyncIterator[RunningGateway]:
    write_config(BASE_CONFIG + "\n[gateway]\nmax_body_bytes = 4096\n")
    async with run_gateway(load_config()) as running:
        yield running


def _assert_too_large(status: int, body: bytes) -> None:
    assert status == 413, body
    error = orjson.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large"), error
    assert "larger than 4096 bytes" in error["message"] and "max_body_bytes" in error["message"]


async def test_a_declared_oversized_body_is_refused_before_it_is_sent(small_body_gateway: RunningGateway) -> None:
    declared = 200 * 1024 * 1024
    status, body, rest = await _raw_exchange(small_body_gateway, f"Content-Length: {declared}\r\n", b"{" * 1000)
    _assert_too_large(status, body)
    assert rest == b""  # the connection is closed, the other 200 MB never read


async def test_a_chunked_body_is_cut_off_at_the_limit(small_body_gateway: RunningGateway, fake: FakeUpstream) -> None:
    chunk = b"x" * 1500
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4))  # 6000 bytes, no final chunk
    status, body, rest = await _raw_exchange(small_body_gateway, "Transfer-Encoding: chunked\r\n", chunks)
    _assert_too_large(status, body)
    assert rest == b""
    assert fake.app.chat_requests == []


async def test_a_body_within_the_limit_is_served(small_body_gateway: RunningGateway, fake: FakeUpstream) -> None:
    fake.app.enqueue(text_reply("fits"))
    status, text = await _post(small_body_gateway, {"model": "fast", "messages": [{"role": "user", "content": "x"}]})
    assert status == 200, text


QUEUE_LIMIT = 256 * 1024


async def test_a_client_that_never_reads_is_dropped_within_its_byte_budget(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws, "SLOW_CLIENT_SECONDS", 0.5)
    write_config(BASE_CONFIG + f"\n[gateway]\nsend_queue_bytes = {QUEUE_LIMIT}\n")
    big = "x" * 6_000_000  # far more than the kernel buffers between the gateway and a reader that reads nothing
    fake.app.enqueue(text_reply(big, chunk_size=4000, keepalive=False))
    async with run_gateway(load_config()) as gateway:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])))
        sock.setblocking(False)
        slow = await gateway.connect(sock=sock, max_queue=1)
        await slow.send(type="chat", content="flood me")  # and never read again
        await until(lambda: any("stopped reading" in line for line in gateway.seen), timeout=30)
        closing = next(line for line in gateway.seen if "stopped reading" in line)
        peak = int(re.search(r"at most (\d+) queued", closing).group(1))  # type: ignore[union-attr]
        assert 0 < peak <= QUEUE_LIMIT, closing
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(slow.connection.recv(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        await until(lambda: len(gateway.state.turns) == 0, timeout=30)


async def _open(gateway: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = gateway.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _health(gateway: RunningGateway) -> int:
    async with gateway.http() as http, http.get("/health") as response:
        return response.status


@pytest.fixture
async def capped_gateway(fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_SECONDS", 0.5)
    write_config(BASE_CONFIG + "\n[gateway]\nmax_connections = 20\n")
    async with run_gateway(load_config()) as running:
        yield running


async def test_idle_connections_past_the_cap_are_refused_then_time_out(capped_gateway: RunningGateway) -> None:
    idle = [await _open(capped_gateway) for _ in range(1500)]  # more than the old soft file limit of 1024
    answers = await asyncio.gather(*(asyncio.wait_for(reader.read(), 30) for reader, _ in idle))
    refused = [answer for answer in answers if answer.startswith(b"HTTP/1.1 503")]
    timed_out = [answer for answer in answers if answer.startswith(b"HTTP/1.1 408")]
    # Every socket got an answer and was closed: refused at the cap, or (the first 20, and any that found a slot
    # freed by a timeout) closed at the head deadline.
    assert len(refused) + len(timed_out) == 1500 and len(timed_out) >= 20, {answer[:20] for answer in answers}
    assert len(refused) >= 1
    body = orjson.loads(refused[0].split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "too_many_connections" and "max_connections" in body["error"]["message"]
    for _, writer in idle:
        writer.close()
    assert await _health(capped_gateway) == 200  # every idle socket was closed by the gateway


@pytest.mark.parametrize("partial", [b"", b"GET /health HTTP/1.1\r\nHost: x\r\n", b"GET /ws HTTP/1.1\r\nUpgrade: web"])
async def test_an_incomplete_request_head_is_closed(capped_gateway: RunningGateway, partial: bytes) -> None:
    reader, writer = await _open(capped_gateway)
    writer.write(partial)
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer


async def test_a_keep_alive_connection_gets_the_head_deadline_again(capped_gateway: RunningGateway) -> None:
    reader, writer = await _open(capped_gateway)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b'"}'), 10)
    assert first.startswith(b"HTTP/1.1 200"), first
    writer.write(b"GET /health HTTP/1.1\r\n")  # and never the rest
    assert (await asyncio.wait_for(reader.read(), 30)).startswith(b"HTTP/1.1 408")
    writer.close()


def test_the_soft_file_limit_is_raised_to_the_hard_one() -> None:
    script = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from t_koma.gateway.server import prepare_process\n"
        "prepare_process()\n"
        "target = hard if hard != resource.RLIM_INFINITY else 1 << 20\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE) == (target, hard))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True", result


async def test_refused_websocket_attempts_log_a_bounded_number_of_lines_and_no_error(gateway: RunningGateway) -> None:
    for _ in range(50):
        with pytest.raises(InvalidStatus):
            await gateway.connect(additional_headers={"Authorization": "Bearer wrong-token-123"})
    refusals = [line for line in gateway.seen if line.startswith("refused WebSocket")]
    assert len(refusals) == 10, len(refusals)
    assert not [line for line in gateway.seen if "without completing handshake" in line]
    assert all('"level":"ERROR"' not in line for line in gateway.state.logs.backlog())


def test_the_rate_limit_reports_what_it_dropped() -> None:
    now = [0.0]
    limit = RateLimitFilter(burst=2, window=60.0, clock=lambda: now[0])
    logger = logging.getLogger("t_koma.test.refusals")

    def record(message: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, __file__, 0, message, None, None)

    assert [limit.filter(record(f"refused {n}")) for n in range(5)] == [True, True, False, False, False]
    assert limit.filter(logger.makeRecord("other", logging.WARNING, __file__, 0, "another logger", None, None))
    now[0] = 61.0
    summary = record("refused again")
    assert limit.filter(summary)
    assert summary.getMessage() == "refused again (3 similar lines dropped in the previous 60 s)"


ROTATING_GATEWAY = """
import logging, sys
from pathlib import Path
from t_koma.gateway import logs, server
logs.LOG_FILE_MAX_BYTES = 2000
server._configure_logging("info", Path(sys.argv[1]))
for n in range(200):
    logging.getLogger("t_koma.test").warning("line %03d %s", n, "x" * 40)
print("stray stdout", flush=True)
raise SystemExit("stray stderr")
"""


def test_gateway_log_rotates_by_size_and_stray_output_follows(tmp_path: Path) -> None:
    log_file = tmp_path / "data" / "gateway.log"
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # as the client's autostart does
    try:
        subprocess.run(
            [sys.executable, "-c", ROTATING_GATEWAY, str(log_file)], stdout=fd, stderr=fd, check=False, timeout=60
        )
    finally:
        os.close(fd)
    files = sorted(path.name for path in log_file.parent.glob("gateway.log*"))
    assert files == ["gateway.log", "gateway.log.1", "gateway.log.2", "gateway.log.3"], files
    for path in log_file.parent.glob("gateway.log*"):
        assert path.stat().st_size <= 2000 + 100, (path, path.stat().st_size)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    current = log_file.read_text()
    assert "line 199" in current and "stray stdout" in current and "stray stderr" in current


async def test_a_body_that_trickles_in_times_out(
    small_body_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_api, "BODY_TIMEOUT_SECONDS", 0.3)
    status, body, rest = await _raw_exchange(small_body_gateway, "Content-Length: 100\r\n", b'{"model": ')
    assert status == 408, body
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_timeout" and "did not arrive" in error["message"], error
    assert rest == b""


async def test_log_lines_sent_to_logs_subscribers_are_bounded(gateway: RunningGateway) -> None:
    logging.getLogger("t_koma").warning("body=%s", "b" * 5_000_000)
    line = orjson.loads(gateway.state.logs.backlog()[-1])
    assert len(line["message"]) < MAX_LINE_CHARS + 100
    assert line["message"].endswith(f"({5_000_005 - MAX_LINE_CHARS} more characters cut)")


async def test_invalid_http_requests_log_a_bounded_number_of_lines(gateway: RunningGateway) -> None:
    for _ in range(30):
        reader, writer = await _open(gateway)
        writer.write(b"\x00\x01 not http\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400")
        writer.close()
    assert len([line for line in gateway.seen if "Invalid HTTP request" in line]) == 10
