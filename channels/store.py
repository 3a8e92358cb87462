"""Conversation state in Redis: owner, transcript, idempotency keys and the staff queue.

Keys (prefix `careline` by default):
  {p}:conv:{key}        hash: channel, address, owner, reason, updated_at
  {p}:transcript:{key}  list of JSON {role, text, buttons, ts}, capped and expiring
  {p}:dedupe:{key}:{id} "pending" or the JSON replies of a handled message
  {p}:staff:queue       stream of hand-offs {conversation, reason, priority, ts}: ids only, no text
  {p}:staff:waiting     sorted set of conversations waiting for staff, most urgent first
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from channels.messages import OutboundMessage


class Owner(StrEnum):
    BOT = "bot"
    WAITING_FOR_STAFF = "waiting_for_staff"
    STAFF = "staff"
    CLOSED = "closed"


PENDING = "pending"

# Staff priority: a safety-screen emergency or crisis first, then urgent triage, then the rest.
PRIORITY_RANK = {"emergency": 0, "crisis": 0, "screen_error": 0, "urgent": 1, "normal": 2}


def _score(priority: str, now: float) -> float:
    return PRIORITY_RANK.get(priority, 2) * 1e10 + now


class ConversationStore:
    def __init__(self, redis: Redis, prefix: str = "careline", transcript_ttl: int = 7 * 24 * 3600,
                 transcript_max: int = 500, dedupe_ttl: int = 24 * 3600):
        self.redis = redis
        self.prefix = prefix
        self.transcript_ttl = transcript_ttl
        self.transcript_max = transcript_max
        self.dedupe_ttl = dedupe_ttl

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- ownership -------------------------------------------------------------------------
    async def ensure(self, key: str, channel: str, address: str) -> Owner:
        """Register a conversation on first sight and return its owner."""
        ck = self._k("conv", key)
        await self.redis.hsetnx(ck, "owner", Owner.BOT.value)
        await self.redis.hset(ck, mapping={"channel": channel, "address": address})
        await self.redis.hsetnx(ck, "created_at", str(time.time()))
        owner = await self.redis.hget(ck, "owner")
        return Owner(owner.decode() if isinstance(owner, bytes) else owner)

    async def owner(self, key: str) -> Owner | None:
        value = await self.redis.hget(self._k("conv", key), "owner")
        if value is None:
            return None
        return Owner(value.decode() if isinstance(value, bytes) else value)

    async def info(self, key: str) -> dict[str, Any]:
        raw = await self.redis.hgetall(self._k("conv", key))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def set_owner(self, key: str, owner: Owner, reason: str | None = None,
                        summary: dict[str, Any] | None = None, priority: str = "normal") -> None:
        now = time.time()
        mapping = {"owner": owner.value, "updated_at": str(now)}
        if reason is not None:
            mapping["reason"] = reason
        if summary is not None:
            mapping["summary"] = json.dumps(summary)
        current = await self.redis.hget(self._k("conv", key), "priority")
        if owner is Owner.WAITING_FOR_STAFF:
            # a later, calmer hand-off never lowers a conversation's priority
            if current is not None and PRIORITY_RANK.get(_s(current), 2) < PRIORITY_RANK.get(priority, 2):
                priority = _s(current)
            mapping["priority"] = priority
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._k("conv", key), mapping=mapping)
            if owner is Owner.WAITING_FOR_STAFF:
                pipe.xadd(self._k("staff", "queue"),
                          {"conversation": key, "reason": reason or "", "priority": priority, "ts": str(now)},
                          maxlen=100_000, approximate=True)
                pipe.zadd(self._k("staff", "waiting"), {key: _score(priority, now)})
            else:
                pipe.zrem(self._k("staff", "waiting"), key)
                pipe.hdel(self._k("conv", key), "priority")
            await pipe.execute()

    async def flag(self, key: str, priority: str, reason: str) -> None:
        """Alert staff who already own a conversation (a red flag while talking to a person)."""
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._k("conv", key), mapping={"alert": reason, "alert_priority": priority, "updated_at": str(now)})
            pipe.xadd(self._k("staff", "queue"),
                      {"conversation": key, "reason": reason, "priority": priority, "ts": str(now), "alert": "1"},
                      maxlen=100_000, approximate=True)
            await pipe.execute()

    async def waiting_for_staff(self, count: int = 100) -> list[str]:
        """Conversations waiting for staff, most urgent (then longest waiting) first."""
        return [_s(k) for k in await self.redis.zrange(self._k("staff", "waiting"), 0, count - 1)]

    async def staff_queue(self, count: int = 100) -> list[dict[str, str]]:
        entries = await self.redis.xrange(self._k("staff", "queue"), count=count)
        return [{_s(k): _s(v) for k, v in fields.items()} for _id, fields in entries]

    # --- transcript ------------------------------------------------------------------------
    async def append(self, key: str, role: str, messages: list[OutboundMessage] | None = None,
                     text: str | None = None) -> None:
        items = []
        now = time.time()
        if text is not None:
            items.append(json.dumps({"role": role, "text": text, "buttons": [], "ts": now}))
        for m in messages or ():
            items.append(json.dumps({**m.to_dict(), "role": m.role, "ts": now}))
        if not items:
            return
        tk = self._k("transcript", key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(tk, *items)
            pipe.ltrim(tk, -self.transcript_max, -1)
            pipe.expire(tk, self.transcript_ttl)
            pipe.expire(self._k("conv", key), self.transcript_ttl)
            await pipe.execute()

    async def transcript(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in await self.redis.lrange(self._k("transcript", key), 0, -1)]

    # --- idempotency -----------------------------------------------------------------------
    async def claim(self, key: str, message_id: str) -> tuple[bool, list[OutboundMessage] | None]:
        """Claim a message id. Returns (claimed, previous replies if it was handled already)."""
        dk = self._k("dedupe", key, message_id)
        if await self.redis.set(dk, PENDING, nx=True, ex=self.dedupe_ttl):
            return True, None
        value = await self.redis.get(dk)
        value = _s(value) if value is not None else None
        if value is None or value == PENDING:
            return False, None
        return False, [OutboundMessage.from_dict(m) for m in json.loads(value)]

    async def complete(self, key: str, message_id: str, replies: list[OutboundMessage]) -> None:
        data = json.dumps([{**m.to_dict(), "role": m.role} for m in replies])
        await self.redis.set(self._k("dedupe", key, message_id), data, ex=self.dedupe_ttl)

    async def release(self, key: str, message_id: str) -> None:
        """Forget a claim whose handling failed, so the channel's retry is processed."""
        await self.redis.delete(self._k("dedupe", key, message_id))


def _s(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
