"""Conversation state in Redis: owner, transcript, idempotency keys and the staff queue.

Keys (prefix `careline` by default); `key` is the conversation's pseudonym (channels.pseudonym):
  {p}:conv:{key}        hash: channel, owner, reason, priority, summary, created_at, updated_at, and for
                        SMS only address_enc (the number, encrypted: it is needed to reply). No raw
                        address or web token is kept.
  {p}:transcript:{key}  list of JSON {role, text, buttons, ts, seq}, capped; seq counts from 1 per
                        conversation (the hash's `seq` holds the last one)
  {p}:events:{key}      pub/sub channel: every transcript item as it is appended, and console events
  {p}:dedupe:{key}:{id} the message's digest while pending, then JSON {digest, replies}
  {p}:webtoken:{sha256} a web chat token the server issued (only its hash is kept)
  {p}:retention         sorted set: conversation → time of its first message (the retention sweep)
  {p}:staff:queue       stream of hand-offs {conversation, reason, priority, ts}: ids only, no text
  {p}:staff:waiting     sorted set of conversations waiting for staff, most urgent first (queue_score)
  {p}:staff:assigned    sorted set of conversations staff hold → when claimed (channels/staff/desk.py)
  {p}:staff:events      pub/sub channel of the consoles: queue changes and alerts, ids only
  {p}:notes:{key}       list of JSON staff notes {text, author, author_id, ts}: never shown to the patient

Retention: the conversation hash and transcript expire `retention` seconds after the first
message, and no later message extends that; the staff queue stream drops older entries as it grows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from channels.messages import OutboundMessage


class Owner(StrEnum):
    BOT = "bot"
    WAITING_FOR_STAFF = "waiting_for_staff"
    STAFF = "staff"
    CLOSED = "closed"


PENDING = "pending"
# Rasa's key_prefix for its tracker and lock stores (bot/endpoints.yml), whatever the gateway's prefix.
RASA_KEY_PREFIX = "careline"

log = logging.getLogger(__name__)

_OWNER_FIELDS = ("priority", "handoff_at", "callback", "owner")  # what set_owner reads before writing
ESCALATE_TRIES = 20  # optimistic transactions of one red flag before it is queued regardless

# Staff priority: a safety-screen emergency or crisis first, then urgent triage, then the rest.
PRIORITY_RANK = {"emergency": 0, "crisis": 0, "screen_error": 0, "urgent": 1, "normal": 2}


def queue_score(priority: str, since: float, callback: bool = False) -> float:
    """The staff queue's order: most urgent first; within a priority, call-back requests (left while
    nobody was on shift) first, then the longest waiting. Times stay below 1e10 until 2286."""
    return PRIORITY_RANK.get(priority, 2) * 1e10 + since - (5e9 if callback else 0)


def digest(text: str) -> str:
    """What an idempotency key is bound to: the message it first carried."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# First sight: created_at, owner and channel once, an expiry that later messages never extend, and
# an entry in the retention index, and the encrypted address (SMS) once.
_ENSURE = """
local ck, rk = KEYS[1], KEYS[2]
if redis.call('HSETNX', ck, 'created_at', ARGV[1]) == 1 then
  if redis.call('ZSCORE', rk, ARGV[5]) then
    -- an earlier conversation expired before the sweep removed its Rasa tracker: start afresh
    redis.call('DEL', KEYS[3], KEYS[4])
  end
  redis.call('HSET', ck, 'owner', 'bot', 'channel', ARGV[3])
  redis.call('EXPIRE', ck, tonumber(ARGV[2]))
  redis.call('ZADD', rk, ARGV[1], ARGV[5])
end
if ARGV[4] ~= '' then redis.call('HSETNX', ck, 'address_enc', ARGV[4]) end
return redis.call('HGET', ck, 'owner')
"""

# Append to a transcript that expires with its conversation (retention counted from the first message).
# Each item gets the conversation's next sequence number (the cursor of GET /api/messages) and is
# published on the conversation's event channel, where the staff console and an open widget listen.
_APPEND = """
local tk, ck, ek = KEYS[1], KEYS[2], KEYS[3]
local n = #ARGV - 3
local last = redis.call('HINCRBY', ck, 'seq', n)
for i = 4, #ARGV do
  local item = string.sub(ARGV[i], 1, -2) .. ',"seq":' .. (last - n + i - 3) .. '}'
  redis.call('RPUSH', tk, item)
  redis.call('PUBLISH', ek, item)
end
redis.call('LTRIM', tk, -tonumber(ARGV[1]), -1)
local kept = redis.call('HGET', ck, 'created_at')
local created = tonumber(kept or ARGV[3])
redis.call('EXPIREAT', tk, math.floor(created + tonumber(ARGV[2])))
if not kept then
  -- erased or expired meanwhile (a staff reply racing the retention sweep): what HINCRBY just
  -- created expires with the transcript, never kept for good
  redis.call('EXPIREAT', ck, math.floor(created + tonumber(ARGV[2])))
end
return last
"""


@dataclass(frozen=True)
class Claim:
    claimed: bool
    previous: list[OutboundMessage] | None = None  # replies of a message already handled
    conflict: bool = False  # the id was first used for another message


class ConversationStore:
    def __init__(
        self,
        redis: Redis,
        prefix: str = "careline",
        retention: int = 30 * 24 * 3600,
        transcript_max: int = 500,
        dedupe_ttl: int = 24 * 3600,
    ):
        self.redis = redis
        self.prefix = prefix
        self.retention = retention
        self.transcript_max = transcript_max
        self.dedupe_ttl = dedupe_ttl
        self._ensure = redis.register_script(_ENSURE)
        self._append = redis.register_script(_APPEND)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- ownership -------------------------------------------------------------------------
    async def ensure(self, key: str, channel: str, address_enc: str | None = None) -> Owner:
        """Register a conversation on first sight and return its owner. `address_enc` is kept only
        where the address is needed to reply (SMS), and only encrypted."""
        owner = await self._ensure(
            keys=[
                self._k("conv", key),
                self._k("retention"),
                f"{RASA_KEY_PREFIX}:tracker:{key}",
                f"{RASA_KEY_PREFIX}:lock:{key}",
            ],
            args=[repr(time.time()), self.retention, channel, address_enc or "", key],
        )
        return Owner(decoded(owner))

    async def owner(self, key: str) -> Owner | None:
        value = await self.redis.hget(self._k("conv", key), "owner")
        if value is None:
            return None
        return Owner(decoded(value))

    async def info(self, key: str) -> dict[str, Any]:
        raw = await self.redis.hgetall(self._k("conv", key))
        return {decoded(k): decoded(v) for k, v in raw.items()}

    async def set_owner(
        self,
        key: str,
        owner: Owner,
        reason: str | None = None,
        summary: dict[str, Any] | None = None,
        priority: str = "normal",
        callback: bool = False,
    ) -> None:
        """Give the conversation to `owner`. Waiting for staff: queued by priority, its wait counted
        from the first hand-off (a later one neither restarts the clock nor lowers the priority);
        `callback`: nobody was on shift, the patient was told when to expect a reply."""
        current = await self.redis.hmget(self._k("conv", key), *_OWNER_FIELDS)
        async with self.redis.pipeline(transaction=True) as pipe:
            self._queue_owner(pipe, key, owner, current, reason, summary, priority, callback)
            await pipe.execute()

    async def escalate(
        self, key: str, reason: str, summary: dict[str, Any] | None, priority: str, callback: bool = False
    ) -> Owner:
        """A red flag, decided on the owner at that moment and written in the same transaction
        (WATCH on the conversation): staff holding it are alerted (`flag`) and keep it; otherwise
        it is queued for staff. A claim or a hand-back landing meanwhile makes the transaction
        start again, so neither an agent loses a conversation they just claimed nor does a flag
        meant for staff stay on a conversation just handed back to the assistant. Returns the owner."""
        conv = self._k("conv", key)
        for _ in range(ESCALATE_TRIES):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(conv)
                    current = await pipe.hmget(conv, *_OWNER_FIELDS)
                    pipe.multi()
                    if decoded(current[3]) == Owner.STAFF.value:
                        self._queue_flag(pipe, key, priority, reason)
                        owner = Owner.STAFF
                    else:
                        owner = Owner.WAITING_FOR_STAFF
                        self._queue_owner(pipe, key, owner, current, reason, summary, priority, callback)
                    await pipe.execute()
                    return owner
            except WatchError:
                continue
        log.warning("escalation contended conversation=%s: queued for staff", key)
        await self.set_owner(key, Owner.WAITING_FOR_STAFF, reason, summary, priority, callback)
        return Owner.WAITING_FOR_STAFF

    def _queue_owner(
        self,
        pipe,
        key: str,
        owner: Owner,
        current: list,
        reason: str | None,
        summary: dict[str, Any] | None,
        priority: str,
        callback: bool,
    ) -> None:
        """The commands of set_owner, added to a transaction; `current` is _OWNER_FIELDS as read."""
        now = time.time()
        mapping = {"owner": owner.value, "updated_at": str(now)}
        if reason is not None:
            mapping["reason"] = reason
        if summary is not None:
            mapping["summary"] = json.dumps(summary)
        current_priority, handoff_at, was_callback, was_owner = (decoded(v) for v in current)
        waiting = owner is Owner.WAITING_FOR_STAFF
        if waiting:
            # a later, calmer hand-off never lowers a conversation's priority
            if current_priority is not None and PRIORITY_RANK.get(current_priority, 2) < PRIORITY_RANK.get(priority, 2):
                priority = current_priority
            mapping["priority"] = priority
            since = float(handoff_at) if handoff_at and was_owner == Owner.WAITING_FOR_STAFF else now
            mapping["handoff_at"] = str(since)
            callback = callback or was_callback == "1"
            if callback:
                mapping["callback"] = "1"
        pipe.hset(self._k("conv", key), mapping=mapping)
        if waiting:
            pipe.xadd(
                self._k("staff", "queue"),
                {"conversation": key, "reason": reason or "", "priority": priority, "ts": str(now)},
                minid=self._oldest_kept_id(now),
                approximate=True,
            )
            pipe.zadd(self._k("staff", "waiting"), {key: queue_score(priority, since, callback)})
        else:
            pipe.zrem(self._k("staff", "waiting"), key)
            pipe.hdel(self._k("conv", key), "priority", "handoff_at", "callback")
        if owner is not Owner.STAFF:
            pipe.zrem(self._k("staff", "assigned"), key)
            pipe.hdel(self._k("conv", key), "assignee", "assignee_name", "claimed_at")
        pipe.publish(self._k("staff", "events"), json.dumps({"type": owner.value, "id": key, "priority": priority}))

    def _oldest_kept_id(self, now: float) -> str:
        """Stream ids are millisecond times: entries older than the retention are trimmed."""
        return str(int((now - self.retention) * 1000))

    async def flag(self, key: str, priority: str, reason: str) -> None:
        """Alert staff who already own a conversation (a red flag while talking to a person)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self._queue_flag(pipe, key, priority, reason)
            await pipe.execute()

    def _queue_flag(self, pipe, key: str, priority: str, reason: str) -> None:
        now = time.time()
        pipe.hset(self._k("conv", key), mapping={"alert": reason, "alert_priority": priority, "updated_at": str(now)})
        pipe.xadd(
            self._k("staff", "queue"),
            {"conversation": key, "reason": reason, "priority": priority, "ts": str(now), "alert": "1"},
            minid=self._oldest_kept_id(now),
            approximate=True,
        )
        alert = json.dumps({"type": "alert", "id": key, "priority": priority, "reason": reason})
        pipe.publish(self._k("staff", "events"), alert)
        pipe.publish(self.events_channel(key), alert)

    async def waiting_for_staff(self, count: int = 100) -> list[str]:
        """Conversations waiting for staff, most urgent (then longest waiting) first."""
        return [decoded(k) for k in await self.redis.zrange(self._k("staff", "waiting"), 0, count - 1)]

    async def staff_queue(self, count: int = 100) -> list[dict[str, str]]:
        entries = await self.redis.xrange(self._k("staff", "queue"), count=count)
        return [{decoded(k): decoded(v) for k, v in fields.items()} for _id, fields in entries]

    # --- transcript ------------------------------------------------------------------------
    async def append(
        self,
        key: str,
        role: str,
        messages: list[OutboundMessage] | None = None,
        text: str | None = None,
        **extra: Any,
    ) -> int:
        """Append to the transcript; returns the last item's sequence number (0 when nothing was
        added). `extra` fields (e.g. `push`, `sender`) go into every item appended."""
        items = []
        now = time.time()
        if text is not None:
            items.append(json.dumps({"role": role, "text": text, "buttons": [], "ts": now, **extra}))
        for m in messages or ():
            kind = {"kind": m.kind} if m.kind else {}
            items.append(json.dumps({**m.to_dict(), "role": m.role, **kind, "ts": now, **extra}))
        if not items:
            return 0
        return await self._append(
            keys=[self._k("transcript", key), self._k("conv", key), self.events_channel(key)],
            args=[self.transcript_max, self.retention, repr(now), *items],
        )

    def events_channel(self, key: str) -> str:
        """The conversation's pub/sub channel: transcript items and console events (typing, owner)."""
        return self._k("events", key)

    async def publish(self, key: str, event: dict[str, Any]) -> None:
        """An event that is not kept in the transcript (typing, a change of owner)."""
        await self.redis.publish(self.events_channel(key), json.dumps(event))

    async def transcript(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in await self.redis.lrange(self._k("transcript", key), 0, -1)]

    # --- idempotency -----------------------------------------------------------------------
    async def claim(self, key: str, message_id: str, text_digest: str) -> Claim:
        """Claim a message id for the message with this digest. A second claim of the same id for
        the same message finds it pending or its replies; for another message, a conflict."""
        dk = self._k("dedupe", key, message_id)
        if await self.redis.set(dk, f"{PENDING}:{text_digest}", nx=True, ex=self.dedupe_ttl):
            return Claim(True)
        value = await self.redis.get(dk)
        value = decoded(value)
        if value is None:  # expired or released between the two calls: claim again
            return await self.claim(key, message_id, text_digest)
        if value.startswith(PENDING + ":"):
            return Claim(False, conflict=value != f"{PENDING}:{text_digest}")
        stored = json.loads(value)
        if stored.get("digest") != text_digest:
            return Claim(False, conflict=True)
        return Claim(False, previous=[OutboundMessage.from_dict(m) for m in stored["replies"]])

    async def complete(self, key: str, message_id: str, text_digest: str, replies: list[OutboundMessage]) -> None:
        data = json.dumps({"digest": text_digest, "replies": [{**m.to_dict(), "role": m.role} for m in replies]})
        await self.redis.set(self._k("dedupe", key, message_id), data, ex=self.dedupe_ttl)

    async def release(self, key: str, message_id: str) -> None:
        """Forget a claim whose handling failed, so the channel's retry is processed."""
        await self.redis.delete(self._k("dedupe", key, message_id))

    # --- web chat tokens ---------------------------------------------------------------------
    async def issue_web_token(self) -> str:
        """A new random web chat token; only its hash is kept, for as long as the retention."""
        token = secrets.token_urlsafe(32)
        await self.redis.set(self._k("webtoken", token_hash(token)), "1", ex=self.retention)
        return token

    async def web_token_issued(self, token: str) -> bool:
        return bool(await self.redis.exists(self._k("webtoken", token_hash(token))))


def decoded(value: Any, errors: str = "strict") -> Any:
    """A Redis reply as text: bytes decoded as UTF-8 (`errors` as for bytes.decode), anything else
    (None, a number, a str from a client that decodes) as it is."""
    return value.decode("utf-8", errors) if isinstance(value, bytes) else value
