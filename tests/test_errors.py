"""`scrub`: a key is redacted from any text in every form output commonly takes."""

from __future__ import annotations

import base64

import pytest

from t_koma.errors import scrub

KEY = "sk-or-v1-SECRET-abcdef123456"


@pytest.mark.parametrize("prefix", ["", "x", "xy", "OPENROUTER_API_KEY=", "line one\n"])
@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text,
        str.lower,
        str.upper,
        lambda text: base64.b64encode(text.encode()).decode(),
        lambda text: base64.urlsafe_b64encode(text.encode()).decode(),
    ],
    ids=["plain", "lower", "upper", "base64", "base64url"],
)
def test_a_key_is_redacted_in_every_form_at_every_alignment(prefix: str, encode: object) -> None:
    text = encode(f"HOME=/home/me\n{prefix}{KEY}\nPATH=/bin")  # type: ignore[operator]

    redacted = scrub(text, [KEY])

    assert "***" in redacted
    assert "SECRET" not in redacted.upper()
    assert encode(KEY)[4:-4] not in redacted  # type: ignore[operator]


def test_short_and_missing_secrets_are_ignored_and_bearer_tokens_always_redacted() -> None:
    assert scrub("abc Bearer abcdefgh12345", ["abc", None, ""]) == "abc Bearer ***"
