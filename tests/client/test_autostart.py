"""Finding or starting the gateway: real subprocesses and real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from t_koma.client.autostart import ensure_gateway, exit_status, probe, read_token
from t_koma.client.connection import GatewayConnection
from t_koma.client.frames import GatewayUnavailableError
from t_koma.client.verify import ForeignListenerError, HealthCheck
from tests.client.fake_gateway import TOKEN, FakeGateway
from tests.client.foreign_listener import Answer, foreign_listener, like_t_koma, wrong_proof
from tests.fakes.server import serve

HEALTH_SERVER = """
import hashlib, hmac, http.server, json, pathlib, sys, urllib.parse
pathlib.Path(sys.argv[2]).write_text("spawned-token-0123456789")
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        challenge = urllib.parse.parse_qs(url.query)["challenge"][0].encode()
        proof = hmac.new(b"spawned-token-0123456789", challenge, hashlib.sha256).hexdigest()
        body = json.dumps({"status": "ok", "version": "spawned", "proof": proof}).encode()
        self.send_response(200 if url.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("health server starting", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def spawned() -> Iterator[list[int]]:
    """PIDs started by a test; killed afterwards (each one by its own id)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)  # the child leads its own session
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 5
        while exit_status(pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=False)


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    """The token file of the fake gateway."""
    path = tmp_path / "gateway.token"
    path.write_text(TOKEN + "\n")
    return path


def test_a_running_gateway_is_reused_without_starting_anything(tmp_path: Path, token_path: Path) -> None:
    with serve(FakeGateway()) as server:
        status = ensure_gateway(server.url, tmp_path / "gateway.log", token_path, command=["/bin/false"])
    assert status.version == "fake" and status.started_pid is None
    assert not (tmp_path / "gateway.log").exists()


def test_probe_finds_nothing_when_nothing_listens(free_port: int, token_path: Path) -> None:
    assert probe(f"http://127.0.0.1:{free_port}", token_path) == HealthCheck()


@pytest.mark.parametrize(("answer", "problem"), [(like_t_koma, "gave no proof"), (wrong_proof, "gave a wrong proof")])
def test_a_foreign_listener_on_the_port_is_reported_and_no_second_gateway_is_started(
    answer: Answer, problem: str, tmp_path: Path, token_path: Path
) -> None:
    started = tmp_path / "started"
    command = [sys.executable, "-c", f"open({str(started)!r}, 'w').close()"]
    with foreign_listener(answer) as listener, pytest.raises(GatewayUnavailableError) as refused:
        ensure_gateway(listener.url, tmp_path / "gateway.log", token_path, console=quiet(), command=command)
        _connect_like_the_chat(listener.url, TOKEN)
    assert listener.received and not listener.saw(TOKEN)
    assert isinstance(refused.value, ForeignListenerError)
    message = refused.value.message
    assert f"port {listener.port} on 127.0.0.1 is not your t-koma gateway" in message and problem in message
    assert "Stop that process or set another `[gateway] port` in config.toml" in message
    assert f"pid {os.getpid()} " in message and "401" not in message
    assert not started.exists() and not (tmp_path / "gateway.log").exists()


def _connect_like_the_chat(http_url: str, token: str) -> None:
    """What `t-koma chat` does once `ensure_gateway` returned: connect with the token."""
    asyncio.run(GatewayConnection(http_url.replace("http://", "ws://") + "/ws", lambda: token).connect())


def test_a_listener_cannot_be_trusted_before_there_is_a_token(tmp_path: Path) -> None:
    with serve(FakeGateway()) as server, pytest.raises(ForeignListenerError, match="no gateway token file"):
        ensure_gateway(server.url, tmp_path / "gateway.log", tmp_path / "gateway.token", command=["/bin/false"])


def test_no_autostart_names_the_command_to_run(free_port: int, tmp_path: Path, token_path: Path) -> None:
    with pytest.raises(GatewayUnavailableError, match="start one with `t-koma gateway`"):
        ensure_gateway(f"http://127.0.0.1:{free_port}", tmp_path / "gateway.log", token_path, autostart=False)


def test_starts_a_gateway_in_its_own_session_logging_to_the_data_dir(
    free_port: int, tmp_path: Path, spawned: list[int]
) -> None:
    log = tmp_path / "data" / "gateway.log"
    url = f"http://127.0.0.1:{free_port}"
    token = tmp_path / "data" / "gateway.token"  # written by the started server, as the gateway does
    command = [sys.executable, "-c", HEALTH_SERVER, str(free_port), str(token)]
    status = ensure_gateway(url, log, token, console=quiet(), command=command, timeout=15)
    assert status.started_pid is not None
    spawned.append(status.started_pid)
    assert status.version == "spawned"
    assert os.getsid(status.started_pid) == status.started_pid  # detached: survives the chat
    assert "health server starting" in log.read_text()
    assert (log.stat().st_mode & 0o777) == 0o600
    again = ensure_gateway(url, log, token, command=["/bin/false"])
    assert again.started_pid is None  # reused


def test_a_gateway_that_exits_is_reported_with_its_log(free_port: int, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    command = [sys.executable, "-c", "import sys; print('port 3000 already in use'); sys.exit(3)"]
    with pytest.raises(GatewayUnavailableError) as raised:
        ensure_gateway(f"http://127.0.0.1:{free_port}", log, tmp_path / "t", console=quiet(), command=command)
    assert "exited (code 3)" in raised.value.message
    assert "last log line: port 3000 already in use" in raised.value.message
    assert str(log) in raised.value.message


def test_a_gateway_that_never_answers_times_out_with_the_log_path(
    free_port: int, tmp_path: Path, spawned: list[int]
) -> None:
    log = tmp_path / "gateway.log"
    ticks = iter(range(1000))
    command = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]
    with pytest.raises(GatewayUnavailableError) as raised:
        ensure_gateway(
            f"http://127.0.0.1:{free_port}",
            log,
            tmp_path / "gateway.token",
            console=quiet(),
            command=command,
            timeout=3,
            clock=lambda: float(next(ticks)),
        )
    spawned.append(int(_wait_for_line(log)))
    assert "did not answer" in raised.value.message and str(log) in raised.value.message


def test_the_token_is_read_from_its_file(tmp_path: Path) -> None:
    assert read_token(tmp_path / "gateway.token") is None
    (tmp_path / "gateway.token").write_text("abc123\n")
    assert read_token(tmp_path / "gateway.token") == "abc123"


def _wait_for_line(path: Path) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.strip():
            return text.split()[0]
        time.sleep(0.01)
    raise AssertionError("the child wrote nothing")
