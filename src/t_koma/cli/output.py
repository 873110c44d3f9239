"""Machine-readable output shared by the one-shot commands (`models`, `ask`): one JSON document on stdout.

Errors keep the human path too: `fail_json` prints `{"error": {"message", "type", "status"}}` on stdout and
re-raises, so `cli.main` still writes the one-line message on stderr and exits with the error's code.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import orjson

from t_koma.errors import ProviderError, TKomaError


def print_json(obj: Any) -> None:
    """Write one JSON document (UTF-8, not ASCII-escaped) and a newline to stdout."""
    sys.stdout.write(orjson.dumps(obj).decode("utf-8") + "\n")
    sys.stdout.flush()


def error_payload(exc: TKomaError) -> dict[str, Any]:
    """The CLI's error shape; `status` is the upstream HTTP status, or null when there was none."""
    status = exc.status if isinstance(exc, ProviderError) else None
    return {"error": {"message": exc.message, "type": exc.type, "status": status}}


def fail_json(exc: TKomaError) -> NoReturn:
    """Print the error as JSON on stdout, then raise it for `cli.main` to report and exit with its code."""
    print_json(error_payload(exc))
    raise exc
