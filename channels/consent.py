"""SMS consent and delivery records in SQL (SQLite by default, PostgreSQL by DATABASE_URL).

Keyed by the conversation's pseudonymous key: no phone number is stored here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from careline.db import sms_consent, sms_delivery


class SmsRecords:
    """SQL is the record; an optional Redis cache answers "opted out?" before every send without a
    database round trip (written through on every change, so a STOP is seen at once)."""

    def __init__(self, engine: Engine, redis=None, prefix: str = "careline", cache_ttl: int = 24 * 3600):
        self.engine = engine
        self.redis = redis
        self.prefix = prefix
        self.cache_ttl = cache_ttl

    def _ck(self, conversation: str) -> str:
        return f"{self.prefix}:sms:optout:{conversation}"

    # --- consent ---------------------------------------------------------------------------
    def _set_consent(self, conversation: str, status: str, source: str) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(select(sms_consent.c.conversation).where(sms_consent.c.conversation == conversation)).first()
            if found:
                conn.execute(update(sms_consent).where(sms_consent.c.conversation == conversation)
                             .values(status=status, source=source))
            else:
                conn.execute(sms_consent.insert().values(conversation=conversation, status=status, source=source))

    async def opt_out(self, conversation: str, source: str) -> None:
        await asyncio.to_thread(self._set_consent, conversation, "opted_out", source[:32])
        if self.redis is not None:
            await self.redis.set(self._ck(conversation), "1", ex=self.cache_ttl)

    async def opt_in(self, conversation: str, source: str) -> None:
        await asyncio.to_thread(self._set_consent, conversation, "opted_in", source[:32])
        if self.redis is not None:
            await self.redis.set(self._ck(conversation), "0", ex=self.cache_ttl)

    def _opted_out(self, conversation: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(sms_consent.c.status).where(sms_consent.c.conversation == conversation)).first()
        return bool(row and row[0] == "opted_out")

    async def opted_out(self, conversation: str) -> bool:
        if self.redis is not None:
            cached = await self.redis.get(self._ck(conversation))
            if cached is not None:
                return cached in (b"1", "1")
        value = await asyncio.to_thread(self._opted_out, conversation)
        if self.redis is not None:
            await self.redis.set(self._ck(conversation), "1" if value else "0", ex=self.cache_ttl)
        return value

    # --- delivery --------------------------------------------------------------------------
    def _insert(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sms_delivery.insert().values(**row))

    async def sent(self, conversation: str, inbound_sid: str | None, message_sid: str, status: str) -> None:
        await asyncio.to_thread(self._insert, {"conversation": conversation, "inbound_sid": inbound_sid,
                                               "message_sid": message_sid, "status": status or "queued"})

    async def failed(self, conversation: str, inbound_sid: str | None, status: str, detail: str,
                     error_code: str | None = None) -> None:
        await asyncio.to_thread(self._insert, {"conversation": conversation, "inbound_sid": inbound_sid,
                                               "message_sid": None, "status": status, "detail": detail[:200],
                                               "error_code": error_code})

    def _status(self, message_sid: str, status: str, error_code: str | None) -> int:
        with self.engine.begin() as conn:
            return conn.execute(update(sms_delivery).where(sms_delivery.c.message_sid == message_sid)
                                .values(status=status, error_code=error_code)).rowcount

    async def delivery_status(self, message_sid: str, status: str, error_code: str | None) -> int:
        return await asyncio.to_thread(self._status, message_sid, status[:24], (error_code or None))

    def rows(self, conversation: str | None = None) -> list[dict[str, Any]]:
        query = select(sms_delivery).order_by(sms_delivery.c.id)
        if conversation:
            query = query.where(sms_delivery.c.conversation == conversation)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
