"""SMS consent and delivery records in SQL (SQLite by default, PostgreSQL by DATABASE_URL).

Keyed by the conversation's pseudonymous key: no phone number is stored here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from channels.db import sms_consent, sms_delivery
from channels.errors import STATE_ERRORS

log = logging.getLogger(__name__)

# What a failing Redis raises (redis-py's errors and timeouts, the OS's).


class SmsRecords:
    """SQL is the record; an optional Redis cache answers "opted out?" before every send without a
    database round trip (written through on every change, so a STOP is seen at once).

    Redis failing never stops a consent change or hides one: the SQL row is written first, a cache
    write that fails is remembered and repaired (`repair_cache`, called by the SMS worker), a cache
    read that fails asks SQL. A cached "not opted out" lives only `negative_ttl` seconds, which
    bounds how long another replica could read a stale one; the cache is filled with SET NX, so a
    read racing a STOP never overwrites the STOP's "1"."""

    def __init__(
        self, engine: Engine, redis=None, prefix: str = "careline", cache_ttl: int = 24 * 3600, negative_ttl: int = 600
    ):
        self.engine = engine
        self.redis = redis
        self.prefix = prefix
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self._repairs: set[str] = set()  # conversations whose cached value may be stale

    def _ck(self, conversation: str) -> str:
        return f"{self.prefix}:sms:optout:{conversation}"

    # --- consent ---------------------------------------------------------------------------
    def _set_consent(self, conversation: str, status: str, source: str) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(
                select(sms_consent.c.conversation).where(sms_consent.c.conversation == conversation)
            ).first()
            if found:
                conn.execute(
                    update(sms_consent)
                    .where(sms_consent.c.conversation == conversation)
                    .values(status=status, source=source)
                )
            else:
                conn.execute(sms_consent.insert().values(conversation=conversation, status=status, source=source))

    async def cache(self, conversation: str, opted_out: bool, overwrite: bool = True) -> None:
        """Write the cached value; a write that fails (or is cancelled by a deadline) is repaired later."""
        if self.redis is None:
            return
        if len(self._repairs) < 100_000:
            self._repairs.add(conversation)  # until the write is confirmed
        try:
            await self.redis.set(
                self._ck(conversation),
                "1" if opted_out else "0",
                ex=self.cache_ttl if opted_out else self.negative_ttl,
                nx=not overwrite,
            )
            self._repairs.discard(conversation)
        except STATE_ERRORS as exc:
            log.warning("sms consent cache not written conversation=%s error=%s", conversation, type(exc).__name__)

    async def record(self, conversation: str, opted_out: bool, source: str) -> None:
        """The SQL record alone (idempotent: recording the same choice again changes nothing)."""
        await asyncio.to_thread(self._set_consent, conversation, "opted_out" if opted_out else "opted_in", source[:32])

    async def opt_out(self, conversation: str, source: str) -> None:
        await self.record(conversation, True, source)
        await self.cache(conversation, True)

    async def opt_in(self, conversation: str, source: str) -> None:
        await self.record(conversation, False, source)
        await self.cache(conversation, False)

    def _opted_out(self, conversation: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(sms_consent.c.status).where(sms_consent.c.conversation == conversation)).first()
        return bool(row and row[0] == "opted_out")

    async def opted_out(self, conversation: str) -> bool:
        cache = self.redis is not None and conversation not in self._repairs
        if cache:
            try:
                cached = await self.redis.get(self._ck(conversation))
            except STATE_ERRORS as exc:
                log.warning("sms consent cache unreadable conversation=%s error=%s", conversation, type(exc).__name__)
                cached, cache = None, False
            if cached is not None:
                return cached in (b"1", "1")
        value = await asyncio.to_thread(self._opted_out, conversation)
        if cache:
            await self.cache(conversation, value, overwrite=False)
        return value

    async def repair_cache(self) -> int:
        """Rewrite the cached values that failed to be written, from SQL. Returns how many."""
        repaired = 0
        for conversation in list(self._repairs):
            value = await asyncio.to_thread(self._opted_out, conversation)
            await self.cache(conversation, value)
            if conversation in self._repairs:
                break  # Redis still down: try again later
            repaired += 1
        return repaired

    # --- delivery --------------------------------------------------------------------------
    def _insert(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sms_delivery.insert().values(**row))

    async def sent(self, conversation: str, inbound_sid: str | None, message_sid: str, status: str) -> None:
        await asyncio.to_thread(
            self._insert,
            {
                "conversation": conversation,
                "inbound_sid": inbound_sid,
                "message_sid": message_sid,
                "status": status or "queued",
            },
        )

    async def failed(
        self, conversation: str, inbound_sid: str | None, status: str, detail: str, error_code: str | None = None
    ) -> None:
        await asyncio.to_thread(
            self._insert,
            {
                "conversation": conversation,
                "inbound_sid": inbound_sid,
                "message_sid": None,
                "status": status,
                "detail": detail[:200],
                "error_code": error_code,
            },
        )

    def _insert_once(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            if conn.execute(select(sms_delivery.c.id).where(sms_delivery.c.message_sid == row["message_sid"])).first():
                return
            conn.execute(sms_delivery.insert().values(**row))

    async def sent_once(
        self, conversation: str, inbound_sid: str | None, message_sid: str, status: str = "queued"
    ) -> None:
        """Record a sent part unless it is recorded already (an attempt that died after sending it)."""
        await asyncio.to_thread(
            self._insert_once,
            {"conversation": conversation, "inbound_sid": inbound_sid, "message_sid": message_sid, "status": status},
        )

    def _message_sids(self, conversation: str) -> set[str]:
        query = select(sms_delivery.c.message_sid).where(
            sms_delivery.c.conversation == conversation, sms_delivery.c.message_sid.is_not(None)
        )
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(query)}

    async def message_sids(self, conversation: str) -> set[str]:
        """The Twilio sids of every part recorded as sent in this conversation."""
        return await asyncio.to_thread(self._message_sids, conversation)

    def _status(self, message_sid: str, status: str, error_code: str | None) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                update(sms_delivery)
                .where(sms_delivery.c.message_sid == message_sid)
                .values(status=status, error_code=error_code)
            ).rowcount

    async def delivery_status(self, message_sid: str, status: str, error_code: str | None) -> int:
        return await asyncio.to_thread(self._status, message_sid, status[:24], (error_code or None))

    def rows(self, conversation: str | None = None) -> list[dict[str, Any]]:
        query = select(sms_delivery).order_by(sms_delivery.c.id)
        if conversation:
            query = query.where(sms_delivery.c.conversation == conversation)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
