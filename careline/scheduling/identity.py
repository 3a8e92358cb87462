"""Matching people without spreading their details: the normalised name, and the keyed hash of a
phone number, which is the pseudonym of that number's SMS conversation (channels/pseudonym.py).
So an SMS sender is matched to the number on file by the conversation's key alone, and the
gateway never hands a phone number to Rasa."""

from __future__ import annotations

import re
import unicodedata

from channels.pseudonym import conversation_key


def name_key(name: str) -> str:
    """ "  José  O'Neil-Smith " -> "jose oneil smith": case, accents, punctuation and spacing ignored."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    folded = re.sub(r"['’.]", "", folded)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded).split())


def normalise_phone(text: str, default_country: str = "1") -> str | None:
    """A phone number as E.164, or None. "(555) 201-0101" -> "+15552010101" (NANP by default)."""
    digits = re.sub(r"\D", "", text or "")
    if (text or "").strip().startswith("+"):
        return f"+{digits}" if 8 <= len(digits) <= 15 else None
    if len(digits) == 10 and default_country == "1":
        return f"+1{digits}"
    if len(digits) == 11 and digits.startswith("1") and default_country == "1":
        return f"+{digits}"
    return None


def phone_key(secret: str, phone: str) -> str:
    """The SMS conversation key of this number: equal to the tracker's sender id when the patient
    texts from it."""
    return conversation_key(secret, "sms", phone)


def identity_limiter(redis, rate: str, prefix: str = "careline"):
    """callable(name key) -> bool: False once a name had more than `rate` identity tries ("10/hour"),
    counted in Redis across conversations and gateway processes (the `limits` library)."""
    from limits import parse_many
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter

    storage = RedisStorage("redis://", connection_pool=redis.connection_pool, key_prefix=f"{prefix}:ratelimit:identity")
    limiter, items = MovingWindowRateLimiter(storage), parse_many(rate)
    return lambda key: all(limiter.hit(item, "identity", key) for item in items)
