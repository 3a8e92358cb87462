"""Pseudonymous conversation ids: what Rasa, logs and metrics see instead of an address."""

from __future__ import annotations

import hashlib
import hmac


def conversation_key(secret: str, channel: str, address: str) -> str:
    """Keyed HMAC of channel and address; stable for a secret, useless without it."""
    mac = hmac.new(secret.encode(), f"{channel}\x1f{address}".encode(), hashlib.sha256)
    return f"{channel[:3]}-{mac.hexdigest()[:32]}"
