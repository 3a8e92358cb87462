"""Encryption at rest for what the gateway must keep to reply: an SMS patient's number (and the
text of a queued SMS until it is answered). Fernet (AES-128-CBC + HMAC-SHA256, from the
`cryptography` package) with the key from DATA_ENCRYPTION_KEY: authenticated, so a value changed
in Redis fails to decrypt instead of reaching a patient."""

from __future__ import annotations

import logging

from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger(__name__)


class DecryptError(Exception):
    """A value at rest could not be decrypted (another key, or tampered with)."""


class Cipher:
    def __init__(self, key: str | None):
        if not key:
            # Development without `make run`: a key for this process only (nothing survives a restart).
            log.warning("DATA_ENCRYPTION_KEY is not set: using a key for this process only")
            key = Fernet.generate_key().decode()
        self._fernet = Fernet(key.encode() if isinstance(key, str) else key)

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str | bytes) -> str:
        try:
            return self._fernet.decrypt(token if isinstance(token, bytes) else token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as exc:
            raise DecryptError("value at rest could not be decrypted") from exc
