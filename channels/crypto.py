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


class EncryptedValues:
    """Short-lived values kept encrypted in Redis between messages (SMS pages, numbered options).
    A store that fails, or a value that no longer decrypts, costs the value, never the reply."""

    def __init__(self, redis, cipher: Cipher, what: str):
        self.redis = redis
        self.cipher = cipher
        self.what = what  # names the values in log lines (never the values)

    async def get(self, key: str) -> str | None:
        from channels.errors import STATE_ERRORS

        try:
            value = await self.redis.get(key)
        except STATE_ERRORS as exc:
            log.warning("%s state read failed error=%s", self.what, type(exc).__name__)
            return None
        if value is None:
            return None
        try:
            return self.cipher.decrypt(value)
        except DecryptError:
            return None

    async def put(self, key: str, value: str | None, ttl: int) -> None:
        from channels.errors import STATE_ERRORS

        try:
            if value:
                await self.redis.set(key, self.cipher.encrypt(value), ex=ttl)
            else:
                await self.redis.delete(key)
        except STATE_ERRORS as exc:
            log.warning("%s state write failed error=%s", self.what, type(exc).__name__)
