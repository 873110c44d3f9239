"""The `/health` proof: HMAC-SHA256(token, challenge) in hex, checked in constant time, any JSON value accepted."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from t_koma.handshake import health_proof, new_challenge, proof_matches

TOKEN = "token-0123456789abcdef"


def test_the_proof_is_the_hmac_sha256_of_the_challenge_keyed_by_the_token() -> None:
    expected = hmac.new(TOKEN.encode(), b"nonce-1", hashlib.sha256).hexdigest()
    assert health_proof(TOKEN, "nonce-1") == expected
    assert len(expected) == 64 and TOKEN not in expected


def test_the_proof_depends_on_the_token_and_the_challenge() -> None:
    proofs = {health_proof(TOKEN, "a"), health_proof(TOKEN, "b"), health_proof(TOKEN + "x", "a")}
    assert len(proofs) == 3


def test_challenges_are_fresh() -> None:
    challenges = {new_challenge() for _ in range(100)}
    assert len(challenges) == 100 and all(len(c) == 32 for c in challenges)


def test_only_the_right_proof_matches() -> None:
    assert proof_matches(TOKEN, "nonce", health_proof(TOKEN, "nonce"))
    assert not proof_matches(TOKEN, "nonce", health_proof(TOKEN, "other"))
    assert not proof_matches(TOKEN, "nonce", health_proof("another-token-000000", "nonce"))


@pytest.mark.parametrize("proof", [None, 1, [], {}, "", "é" * 64, "\ud800", "ZZ"])
def test_a_proof_of_any_other_shape_does_not_match(proof: object) -> None:
    assert not proof_matches(TOKEN, "nonce", proof)
