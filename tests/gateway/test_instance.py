"""One gateway per data dir: a second `t-koma gateway` on the same data dir refuses to start with one line naming
the first (real processes; the lock is the kernel's, so it goes when its holder dies, even by kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from t_koma.errors import ConfigError
from t_koma.gateway.instance import data_dir_lock

HOLDER = """
import sys
from pathlib import Path
from t_koma.gateway.instance import data_dir_lock
with data_dir_lock(Path(sys.argv[1]), 4242):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    """Another process holding the data dir's gateway lock until its stdin closes."""
    data_dir = Path(os.environ["T_KOMA_DATA_DIR"])
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        try:
            yield process
        finally:
            process.kill()


def test_a_second_gateway_on_the_same_data_dir_is_refused_naming_the_first(
    holder: subprocess.Popen[str],
) -> None:
    data_dir = Path(os.environ["T_KOMA_DATA_DIR"])

    second = subprocess.run(
        [sys.executable, "-m", "t_koma", "gateway", "--port", "0"], capture_output=True, text=True, timeout=60
    )

    assert second.returncode == 2
    assert second.stderr == (
        f"t-koma: another t-koma gateway already runs on the data dir {data_dir} (pid {holder.pid}, port 4242); "
        "use that one, stop it, or give this one its own data dir with T_KOMA_DATA_DIR\n"
    )


def test_the_lock_goes_with_its_holder_even_after_kill_9(holder: subprocess.Popen[str], tmp_path: Path) -> None:
    data_dir = Path(os.environ["T_KOMA_DATA_DIR"])
    with pytest.raises(ConfigError), data_dir_lock(data_dir, 1):
        pass

    holder.send_signal(signal.SIGKILL)
    holder.wait()

    with data_dir_lock(data_dir, 1):
        assert (data_dir / "gateway.lock").read_text() == f"{os.getpid()} 1\n"
