"""The gateway's proof of identity on `/health?challenge=<nonce>`: `HMAC-SHA256(token, nonce)` in hex.

A client sends its token only to a listener that proved it knows the token already, so another program on the
gateway's port learns nothing. The proof reveals nothing about the token. Shared by the gateway and the client
(which must not import the gateway package), so it lives here."""

from __future__ import annotations

import hashlib
import hmac
import secrets

CHALLENGE_PARAM = "challenge"
MAX_CHALLENGE_CHARS = 256


def new_challenge() -> str:
    """A fresh random nonce for one `/health` request."""
    return secrets.token_hex(16)


def health_proof(token: str, challenge: str) -> str:
    """`HMAC-SHA256(token, challenge)` as lower-case hex."""
    return hmac.new(token.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def proof_matches(token: str, challenge: str, proof: object) -> bool:
    """Whether `proof` (as found in a `/health` answer, any JSON value) is the proof for `challenge`."""
    if not isinstance(proof, str):
        return False
    try:
        presented = proof.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(presented, health_proof(token, challenge).encode("ascii"))
