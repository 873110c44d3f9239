"""The shared JSON output of one-shot commands: one document per line, errors in the CLI's error shape."""

from __future__ import annotations

import orjson
import pytest

from t_koma.cli.output import error_payload, fail_json, print_json
from t_koma.errors import ConfigError, RateLimitError


def test_print_json_writes_one_utf8_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_json([{"id": "a/b", "name": "Café ✓", "context_length": None}])

    out = capsys.readouterr().out
    assert out == '[{"id":"a/b","name":"Café ✓","context_length":null}]\n'


def test_error_payload_has_status_only_for_upstream_errors() -> None:
    assert error_payload(ConfigError("bad")) == {"error": {"message": "bad", "type": "config_error", "status": None}}
    limited = RateLimitError("slow down", retry_after=7)
    assert error_payload(limited) == {"error": {"message": "slow down", "type": "rate_limited", "status": 429}}


def test_fail_json_prints_then_reraises(capsys: pytest.CaptureFixture[str]) -> None:
    error = ConfigError("no key")

    with pytest.raises(ConfigError) as caught:
        fail_json(error)

    assert caught.value is error
    assert orjson.loads(capsys.readouterr().out) == error_payload(error)
