"""Retention, export and erasure: what CareLine holds about a patient, for as long as it needs it.

A conversation is named everywhere by its pseudonym (channels.pseudonym) and lives in:
  Redis, the gateway's keys (prefix p, channels/store.py and channels/sms.py): {p}:conv:{key},
    {p}:transcript:{key}, {p}:notes:{key} (staff notes), {p}:dedupe:{key}:*,
    {p}:sms:options|more|optout:{key} (options and more encrypted), the rate limiter's
    {p}:ratelimit:...{key}..., its member of {p}:retention, {p}:staff:waiting and
    {p}:staff:assigned, its entries in the {p}:staff:queue stream, an SMS still queued in
    {p}:sms:in:{shard} (number and text, encrypted, until answered), and {p}:sms:seen|intent:{sid},
    {p}:sms:sent:{sid}:... (Twilio ids only, 24 h)
  Redis, Rasa's keys (key_prefix in bot/endpoints.yml): {r}:tracker:{key}, {r}:lock:{key}
  SQL: the rows of channels.db.CONVERSATION_DATA (sms_delivery) with conversation = key
Kept, naming the conversation by its pseudonym only: channels.db.KEPT_RECORDS (sms_consent, so a
STOP is still honoured; safety_audit and privacy_audit, the audit trails).

Every Redis key whose name contains the pseudonym is erased (one SCAN walk), so a key that a later
change adds is erased too. Retention is counted from the conversation's first message
({p}:retention); the sweep erases every conversation older than that, in batches, and is safe to
re-run: a conversation leaves the retention index only after all of its data is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Engine

from careline.aio import still_running
from channels.crypto import Cipher, DecryptError
from channels.db import CONVERSATION_DATA, KEPT_RECORDS, privacy_audit, sms_delivery
from channels.pseudonym import conversation_key
from channels.store import RASA_KEY_PREFIX, decoded

log = logging.getLogger(__name__)

CHANNELS = ("sms", "web", "api")
# A pseudonym inside a key name: channel[:3] + "-" + 32 hex digits (channels.pseudonym).
PSEUDONYM = re.compile(r"(?<![0-9A-Za-z])[a-z]{3}-[0-9a-f]{32}(?![0-9a-f])")

# The addresses each channel accepts (as channels/app.py and Twilio give them).
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_WEB_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_API_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")

# Only one sweep at a time across gateway processes and cron.
_SWEEP_LOCK_SECONDS = 900

# Remove from the retention index only members still older than the cutoff: a patient who came back
# after the conversation expired started a new one (a newer first message), which is not erased.
_ZREM_IF_OLD = """
local removed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


class PrivacyError(ValueError):
    """A request that cannot be carried out as asked (unknown channel, malformed address)."""


def normalise_address(channel: str, address: str) -> str:
    """The address exactly as the channel hands it to the gateway, or PrivacyError saying why not.
    An SMS number may be typed with spaces, dashes or brackets; it is compared in E.164."""
    if channel not in CHANNELS:
        raise PrivacyError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
    address = (address or "").strip()
    if channel == "sms":
        address = re.sub(r"[\s().-]", "", address)
        if not _E164.match(address):
            raise PrivacyError("an SMS address is the number in E.164 form, as Twilio sends it, e.g. +15551234567")
    elif channel == "web" and not _WEB_TOKEN.match(address):
        raise PrivacyError(
            "a web address is the patient's chat token (22-64 letters, digits, - or _): "
            "the widget keeps it in the browser's sessionStorage as careline.conversation_token"
        )
    elif channel == "api" and not _API_ID.match(address):
        raise PrivacyError("an API address is the conversation_id the client sent (1-128 letters, digits or ._:@+-)")
    return address


def pseudonyms_in(name: str) -> list[str]:
    return PSEUDONYM.findall(name)


# An export or erasure never stops at one value that is not UTF-8.
_text = partial(decoded, errors="replace")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(float(ts), UTC).isoformat()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _stream_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class Privacy:
    """Export, erasure and the retention sweep over the gateway's Redis, Rasa's tracker store and
    the SQL records. `secret` is CONVERSATION_SECRET; `cipher` decrypts an SMS number for export."""

    def __init__(
        self,
        redis: Redis,
        engine: Engine,
        *,
        secret: str,
        retention_seconds: int,
        prefix: str = "careline",
        rasa_prefix: str = RASA_KEY_PREFIX,
        cipher: Cipher | None = None,
        batch: int = 500,
        max_conversations: int = 20_000,
    ):
        self.redis = redis
        self.engine = engine
        self.secret = secret
        self.retention = retention_seconds
        self.prefix = prefix
        self.rasa_prefix = rasa_prefix
        self.cipher = cipher
        self.batch = batch
        self.max_conversations = max_conversations
        self._zrem_if_old = redis.register_script(_ZREM_IF_OLD)

    @classmethod
    def from_settings(cls, redis: Redis, engine: Engine, settings, cipher: Cipher | None = None, **kwargs) -> Privacy:
        """`cipher`: the gateway's own (in development without DATA_ENCRYPTION_KEY it holds a key
        for that process only); by default one from DATA_ENCRYPTION_KEY, or none."""
        if cipher is None and settings.data_encryption_key:
            cipher = Cipher(settings.data_encryption_key)
        return cls(
            redis,
            engine,
            secret=settings.conversation_secret,
            retention_seconds=settings.retention_seconds,
            prefix=settings.redis_key_prefix,
            cipher=cipher,
            **kwargs,
        )

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def key_for(self, channel: str, address: str) -> str:
        return conversation_key(self.secret, channel, address)

    def _direct_keys(self, key: str) -> list[str]:
        """The keys a conversation certainly has, deleted first (the SCAN walk finds the rest)."""
        return [
            self._k("conv", key),
            self._k("transcript", key),
            self._k("notes", key),
            self._k("sms", "options", key),
            self._k("sms", "more", key),
            self._k("sms", "optout", key),
            f"{self.rasa_prefix}:tracker:{key}",
            f"{self.rasa_prefix}:lock:{key}",
        ]

    # --- export ----------------------------------------------------------------------------
    async def export(self, channel: str, address: str, actor: str = "") -> dict[str, Any]:
        """Everything held about the patient at this address, as JSON-ready data. Writes a
        privacy_audit row (counts only)."""
        address = normalise_address(channel, address)
        key = self.key_for(channel, address)
        redis_part = await self._export_redis(key, channel, address)
        sql_part = await asyncio.to_thread(self._export_sql, key)
        counts = {
            "transcript": len(redis_part["transcript"]),
            "tracker_events": len((redis_part["rasa_tracker"] or {}).get("events", [])),
            "staff_queue_entries": len(redis_part["staff_queue"]),
            "other_redis_keys": len(redis_part["other_redis_keys"]),
            **{f"sql_{name}": len(rows) for name, rows in sql_part.items()},
        }
        found = any(v for k, v in counts.items() if k != "sql_privacy_audit") or bool(redis_part["conversation_state"])
        await asyncio.to_thread(self._audit, "export", channel, key, actor, counts)
        return {
            "conversation": key,
            "channel": channel,
            "found": found,
            "exported_at": datetime.now(UTC).isoformat(),
            **redis_part,
            "sql": sql_part,
        }

    async def _export_redis(self, key: str, channel: str, address: str) -> dict[str, Any]:
        r = self.redis
        conv = await self._export_conversation_state(key)
        first = await r.zscore(self._k("retention"), key)
        waiting = await r.zscore(self._k("staff", "waiting"), key)
        transcript = [self._plain(_text(x)) for x in await r.lrange(self._k("transcript", key), 0, -1)]
        notes = [self._plain(_text(x)) for x in await r.lrange(self._k("notes", key), 0, -1)]
        tracker_raw = await r.get(f"{self.rasa_prefix}:tracker:{key}")
        try:
            tracker = json.loads(tracker_raw) if tracker_raw is not None else None
        except ValueError:
            tracker = {"unparsed": _text(tracker_raw)}
        staff_queue = [
            {"id": eid, **fields}
            for eid, fields in await self._walk_stream(
                self._k("staff", "queue"), lambda _eid, f: f.get("conversation") == key
            )
        ]
        sms = await self._export_sms_state(key, channel, address)
        idempotency, other = await self._export_other_keys(key, channel, address)
        return {
            "retention": {
                "first_message_at": _iso(first),
                "erased_after": _iso(first + self.retention) if first is not None else None,
            },
            "conversation_state": conv,
            "transcript": transcript,
            "staff_notes": notes,
            "staff": {"waiting": waiting is not None},
            "staff_queue": staff_queue,
            "rasa_tracker": tracker,
            "sms_state": sms,
            "idempotency": idempotency,
            "other_redis_keys": other,
        }

    async def _export_conversation_state(self, key: str) -> dict[str, Any]:
        """The conversation's hash, with the address decrypted (or a note why not) and the summary parsed."""
        conv = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self._k("conv", key))).items()}
        if "address_enc" in conv:
            token = conv.pop("address_enc")
            if self.cipher is None:
                conv["address"] = None
                conv["address_note"] = "kept encrypted; DATA_ENCRYPTION_KEY is not set, so it was not decrypted"
            else:
                try:
                    conv["address"] = self.cipher.decrypt(token)
                except DecryptError:
                    conv["address"] = None
                    conv["address_note"] = "kept encrypted; it did not decrypt with this DATA_ENCRYPTION_KEY"
        if "summary" in conv:
            try:
                conv["summary"] = json.loads(conv["summary"])
            except ValueError:
                pass
        return conv

    async def _export_sms_state(self, key: str, channel: str, address: str) -> dict[str, Any]:
        """SMS options, MORE and opt-out state, and (for SMS) the patient's messages still queued."""
        r = self.redis
        sms: dict[str, Any] = {}
        for part in ("options", "more", "optout"):
            value = await r.get(self._k("sms", part, key))
            if value is not None:
                sms[part] = self._plain(_text(value))
        if channel == "sms":
            queued = []
            async for stream in r.scan_iter(match=self._k("sms", "in", "*"), count=1000, _type="stream"):
                for eid, fields in await self._walk_stream(
                    _text(stream), lambda _eid, f: self._sms_entry_is(f, key, address)
                ):
                    queued.append({"id": eid, **self._sms_entry_plain(fields)})
            sms["queued_messages"] = queued
        return sms

    async def _export_other_keys(self, key: str, channel: str, address: str) -> tuple[dict, dict]:
        """Every other key naming the conversation: its idempotency keys, and the rest by name."""
        r = self.redis
        known = set(self._direct_keys(key))
        idempotency, other = {}, {}
        async for raw in r.scan_iter(match=f"*{key}*", count=1000):
            name = _text(raw)
            if name in known:
                continue
            value = await self._dump(name)
            if name.startswith(self._k("dedupe", key) + ":"):
                idempotency[name.rsplit(":", 1)[-1]] = value
            else:
                other[name] = value
        if channel == "web":
            from channels.store import token_hash

            if await r.exists(self._k("webtoken", token_hash(address))):
                other[self._k("webtoken", "<hash of the chat token>")] = "issued"
        return idempotency, other

    async def _dump(self, name: str) -> Any:
        """A key's value whatever its type, decoded (JSON where it is JSON)."""
        r = self.redis
        kind = _text(await r.type(name))
        if kind == "string":
            value = await r.get(name)
            return None if value is None else self._plain(_text(value))
        if kind == "hash":
            return {_text(k): _text(v) for k, v in (await r.hgetall(name)).items()}
        if kind == "list":
            return [_text(v) for v in await r.lrange(name, 0, -1)]
        if kind == "set":
            return sorted(_text(v) for v in await r.smembers(name))
        if kind == "zset":
            return [[_text(m), s] for m, s in await r.zrange(name, 0, -1, withscores=True)]
        if kind == "stream":
            return [
                {"id": _text(i), **{_text(k): _text(v) for k, v in f.items()}}
                for i, f in await r.xrange(name, count=1000)
            ]
        return None

    def _plain(self, value: str) -> Any:
        """A stored string as the patient should read it: decrypted where it is kept encrypted (a
        Fernet token), then parsed where it is JSON."""
        if self.cipher is not None and value.startswith("gAAAAA"):
            try:
                value = self.cipher.decrypt(value)
            except DecryptError:
                return {"encrypted": True, "note": "it did not decrypt with this DATA_ENCRYPTION_KEY"}
        try:
            return json.loads(value)
        except ValueError:
            return value

    def _export_sql(self, key: str) -> dict[str, list[dict[str, Any]]]:
        tables = [*CONVERSATION_DATA, *KEPT_RECORDS]
        out = {}
        with self.engine.connect() as conn:
            for table in tables:
                query = select(table).where(table.c.conversation == key)
                if "id" in table.c:
                    query = query.order_by(table.c.id)
                out[table.name] = [_jsonable(dict(r._mapping)) for r in conn.execute(query)]
        return out

    # --- erasure ---------------------------------------------------------------------------
    async def erase(self, channel: str, address: str, actor: str = "") -> dict[str, Any]:
        """Remove everything about the patient at this address except the records in KEPT_RECORDS.
        Safe to repeat. Writes a privacy_audit row (counts only, no address)."""
        address = normalise_address(channel, address)
        return await self._erase(self.key_for(channel, address), channel, address, actor)

    async def erase_conversation(self, key: str, actor: str = "gateway") -> dict[str, Any]:
        """The same by pseudonym alone, for the gateway (e.g. leftovers of an expired conversation
        found when its patient writes again). Without the address a web token's hash is left to expire."""
        return await self._erase(key, key.split("-", 1)[0], None, actor)

    async def _erase(self, key: str, channel: str, address: str | None, actor: str) -> dict[str, Any]:
        sids = await asyncio.to_thread(self._sms_sids, key) if channel == "sms" else set()
        removed = await self._erase_redis_one(key, channel, address, sids)
        removed["sql_rows"] = await asyncio.to_thread(self._delete_sql, [key], None)
        await asyncio.to_thread(self._audit, "erase", channel, key, actor, {"removed": removed})
        kept = await asyncio.to_thread(self._kept_counts, key)
        log.info("erased conversation=%s redis_keys=%d", key, removed.get("redis_keys", 0))
        return {
            "conversation": key,
            "channel": channel,
            "removed": removed,
            "kept": {table.name: {"rows": kept[table.name], "why": why} for table, why in KEPT_RECORDS.items()},
            "note": "the kept rows name the conversation by its pseudonym only: no address, name or message text",
        }

    async def _erase_redis_one(self, key: str, channel: str, address: str | None, sids: set[str]) -> dict[str, int]:
        r = self.redis
        removed = Counter()
        removed["redis_keys"] += await r.unlink(*self._direct_keys(key))
        removed["redis_keys"] += await self._scan_delete(f"*{key}*", lambda name: key in name)
        if sids:
            sms_prefix = self._k("sms") + ":"

            def twilio_ids(name: str) -> bool:
                parts = name[len(sms_prefix) :].split(":")
                return len(parts) >= 2 and parts[0] in ("seen", "sent", "intent") and parts[1] in sids

            removed["redis_keys"] += await self._scan_delete(self._k("sms", "*"), twilio_ids)
        if channel == "web" and address:
            from channels.store import token_hash

            removed["redis_keys"] += await r.unlink(self._k("webtoken", token_hash(address)))
        removed["staff_waiting"] += await r.zrem(self._k("staff", "waiting"), key)
        removed["staff_waiting"] += await r.zrem(self._k("staff", "assigned"), key)
        removed["staff_queue_entries"] += await self._xdel_where(
            self._k("staff", "queue"), lambda _eid, f: f.get("conversation") == key
        )
        if channel == "sms":
            async for stream in r.scan_iter(match=self._k("sms", "in", "*"), count=1000, _type="stream"):
                removed["sms_queue_entries"] += await self._xdel_where(
                    _text(stream), lambda _eid, f: self._sms_entry_is(f, key, address)
                )
        removed["retention_index"] += await r.zrem(self._k("retention"), key)
        return dict(removed)

    def _sms_entry_is(self, fields: dict[str, str], key: str, address: str | None) -> bool:
        """An inbound SMS queue entry of this conversation (by its pseudonym, or its number)."""
        return (address is not None and fields.get("from") == address) or self._sms_entry_key(fields) == key

    def _sms_entry_key(self, fields: dict[str, str]) -> str | None:
        """The pseudonym of a queued SMS's conversation."""
        if fields.get("conversation"):
            return fields["conversation"]
        number = fields.get("from")
        if not number and fields.get("from_enc") and self.cipher is not None:
            try:
                number = self.cipher.decrypt(fields["from_enc"])
            except DecryptError:
                return None
        return self.key_for("sms", number) if number else None

    def _sms_entry_plain(self, fields: dict[str, str]) -> dict[str, str]:
        """A queued SMS for export: encrypted fields (`x_enc`) decrypted where the key allows."""
        out = {}
        for name, value in fields.items():
            if name.endswith("_enc") and self.cipher is not None:
                try:
                    out[name[:-4]] = self.cipher.decrypt(value)
                    continue
                except DecryptError:
                    pass
            out[name] = value
        return out

    def _sms_sids(self, key: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(sms_delivery.c.inbound_sid, sms_delivery.c.message_sid).where(sms_delivery.c.conversation == key)
            ).all()
        return {sid for row in rows for sid in row if sid}

    # --- retention sweep -------------------------------------------------------------------
    async def sweep(self, now: float | None = None, actor: str = "gateway") -> dict[str, Any]:
        """Erase every conversation whose first message is older than the retention, and conversation
        data older than that whatever its conversation. Returns counts; re-runnable; one at a time."""
        now = time.time() if now is None else now
        cutoff = now - self.retention
        lock, token = self._k("privacy", "sweep_lock"), secrets.token_hex(8)
        if not await self.redis.set(lock, token, nx=True, ex=_SWEEP_LOCK_SECONDS):
            return {"skipped": "another sweep is running"}
        try:
            counts = await self._sweep(now, cutoff)
        finally:
            if _text(await self.redis.get(lock)) == token:
                await self.redis.delete(lock)
        if any(v for k, v in counts.items() if k not in ("cutoff", "more")):
            await asyncio.to_thread(self._audit, "sweep", None, None, actor, counts)
        log.info("retention sweep conversations=%d redis_keys=%d", counts["conversations"], counts["redis_keys"])
        return counts

    async def _sweep(self, now: float, cutoff: float) -> dict[str, Any]:
        r = self.redis
        counts: Counter = Counter()
        counts["adopted"] = await self._adopt_unindexed(now)
        expired = await self._expired(cutoff)
        gone: set[str] = set()
        for batch in _chunks(expired, self.batch):
            # still expired: a conversation whose hash already expired may have been started again
            scores = await r.zmscore(self._k("retention"), batch)
            batch = [k for k, s in zip(batch, scores, strict=False) if s is not None and s <= cutoff]
            if not batch:
                continue
            async with r.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.unlink(*self._direct_keys(key))
                pipe.zrem(self._k("staff", "waiting"), *batch)
                pipe.zrem(self._k("staff", "assigned"), *batch)
                results = await pipe.execute()
            counts["redis_keys"] += sum(results[:-2])
            counts["staff_waiting"] += results[-2] + results[-1]
            rows = await asyncio.to_thread(self._delete_sql, batch, None)
            for table, n in rows.items():
                counts[f"sql_{table}"] += n
            gone.update(batch)
        if gone:
            counts["redis_keys"] += await self._scan_delete(
                "*", lambda name: any(p in gone for p in pseudonyms_in(name))
            )
        cutoff_ms = int(cutoff * 1000)
        counts["staff_queue_entries"] = await self._xdel_where(
            self._k("staff", "queue"), lambda eid, f: f.get("conversation") in gone or _stream_ms(eid) < cutoff_ms
        )
        # Only entries older than the retention: a message queued since is a patient writing again
        # (a new conversation), and must still be answered.
        async for stream in r.scan_iter(match=self._k("sms", "in", "*"), count=1000, _type="stream"):
            counts["sms_queue_entries"] += await self._xdel_where(
                _text(stream), lambda eid, f: _stream_ms(eid) < cutoff_ms
            )
        old_rows = await asyncio.to_thread(self._delete_sql, None, datetime.fromtimestamp(cutoff, UTC))
        for table, n in old_rows.items():
            counts[f"sql_{table}"] += n
        for batch in _chunks(sorted(gone), self.batch):
            counts["conversations"] += await self._zrem_if_old(keys=[self._k("retention")], args=[cutoff, *batch])
        return {
            "conversations": 0,
            "redis_keys": 0,
            **counts,
            "cutoff": _iso(cutoff),
            "more": len(expired) >= self.max_conversations,
        }

    async def _expired(self, cutoff: float) -> list[str]:
        found: list[str] = []
        while len(found) < self.max_conversations:
            page = await self.redis.zrangebyscore(
                self._k("retention"),
                "-inf",
                cutoff,
                start=len(found),
                num=min(self.batch, self.max_conversations - len(found)),
            )
            if not page:
                break
            found.extend(_text(k) for k in page)
        return found

    async def _adopt_unindexed(self, now: float) -> int:
        """Put into the retention index the conversations it does not know: those from before it
        existed, a Rasa tracker saved again after its conversation was erased (a turn in flight), a
        conversation hash re-created by a late write. Their age is read from the data itself. A
        legacy hash's plain `address` is removed (encrypted first for SMS, which needs it to reply)."""
        adopted = 0
        for prefix, first_seen in (
            (self._k("conv") + ":", self._conv_first),
            (f"{self.rasa_prefix}:tracker:", self._tracker_first),
        ):
            page: list[str] = []
            async for raw in self.redis.scan_iter(match=prefix + "*", count=1000):
                page.append(_text(raw))
                if len(page) >= self.batch:
                    adopted += await self._adopt(page, prefix, first_seen, now)
                    page = []
            if page:
                adopted += await self._adopt(page, prefix, first_seen, now)
        return adopted

    async def _adopt(self, names: list[str], prefix: str, first_seen, now: float) -> int:
        keys = [name[len(prefix) :] for name in names]
        scores = await self.redis.zmscore(self._k("retention"), keys)
        adopted = 0
        for name, key, score in zip(names, keys, scores, strict=False):
            if score is not None:
                continue
            first = await first_seen(name, now)
            if first is not None:
                adopted += await self.redis.zadd(self._k("retention"), {key: first}, nx=True)
        return adopted

    async def _conv_first(self, name: str, now: float) -> float | None:
        r = self.redis
        conv = {_text(k): _text(v) for k, v in (await r.hgetall(name)).items()}
        if not conv:
            return None
        if "address" in conv:
            if conv.get("channel") == "sms" and self.cipher is not None and "address_enc" not in conv:
                await r.hset(name, "address_enc", self.cipher.encrypt(conv["address"]))
            await r.hdel(name, "address")
        try:
            return float(conv["created_at"])
        except (KeyError, ValueError):
            # the store always writes created_at with the hash: one without it is a leftover of a
            # conversation already erased (a write that raced the erasure), so it is old
            return 0.0

    async def _tracker_first(self, name: str, now: float) -> float | None:
        raw = await self.redis.get(name)
        if raw is None:
            return None
        try:
            stamps = [float(e["timestamp"]) for e in json.loads(raw).get("events", []) if "timestamp" in e]
        except (ValueError, TypeError, AttributeError):
            stamps = []
        return min(stamps) if stamps else now

    # --- Redis and SQL helpers ---------------------------------------------------------------
    async def _scan_delete(self, match: str, wanted: Callable[[str], bool]) -> int:
        removed, pending = 0, []
        async for raw in self.redis.scan_iter(match=match, count=1000):
            if wanted(_text(raw)):
                pending.append(raw)
            if len(pending) >= self.batch:
                removed += await self.redis.unlink(*pending)
                pending = []
        if pending:
            removed += await self.redis.unlink(*pending)
        return removed

    async def _walk_stream(
        self, stream: str, wanted: Callable[[str, dict[str, str]], bool]
    ) -> list[tuple[str, dict[str, str]]]:
        """A stream's entries (id, fields) for which `wanted` is true, read page by page."""
        chosen, start = [], "-"
        while True:
            entries = await self.redis.xrange(stream, min=start, max="+", count=self.batch)
            for eid, fields in entries:
                eid, fields = _text(eid), {_text(k): _text(v) for k, v in (fields or {}).items()}
                if wanted(eid, fields):
                    chosen.append((eid, fields))
            if len(entries) < self.batch:
                return chosen
            start = "(" + _text(entries[-1][0])

    async def _xdel_where(self, stream: str, wanted: Callable[[str, dict[str, str]], bool]) -> int:
        doomed = [eid for eid, _fields in await self._walk_stream(stream, wanted)]
        removed = 0
        for batch in _chunks(doomed, self.batch):
            removed += await self.redis.xdel(stream, *batch)
        return removed

    def _delete_sql(self, keys: list[str] | None, older_than: datetime | None) -> dict[str, int]:
        """Delete conversation data rows of these conversations, and/or older than a time."""
        removed = {}
        with self.engine.begin() as conn:
            for table, time_column in CONVERSATION_DATA.items():
                conditions = []
                if keys:
                    conditions.append(table.c.conversation.in_(keys))
                if older_than is not None:
                    conditions.append(table.c[time_column] < older_than)
                if conditions:
                    removed[table.name] = conn.execute(delete(table).where(or_(*conditions))).rowcount
        return removed

    def _kept_counts(self, key: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                t.name: len(conn.execute(select(t.c.conversation).where(t.c.conversation == key)).all())
                for t in KEPT_RECORDS
            }

    def _audit(self, action: str, channel: str | None, key: str | None, actor: str, counts: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                privacy_audit.insert().values(
                    action=action,
                    channel=channel,
                    conversation=key,
                    actor=(actor or "")[:64],
                    counts=json.dumps(counts, default=str),
                )
            )


async def sweep(
    redis: Redis, engine: Engine, settings, now: float | None = None, cipher: Cipher | None = None
) -> dict[str, Any]:
    """One retention sweep with the gateway's settings (RETENTION_DAYS, the key prefix)."""
    return await Privacy.from_settings(redis, engine, settings, cipher).sweep(now)


async def run_periodically(
    redis: Redis, engine: Engine, settings, interval: float = 3600.0, cipher: Cipher | None = None
) -> None:
    """The gateway's background sweep: one now, then every `interval` seconds (sooner while a sweep
    reaches its batch limit). Errors are logged and retried at the next interval; cancel to stop."""
    privacy = Privacy.from_settings(redis, engine, settings, cipher)
    while True:
        delay = interval
        try:
            counts = await privacy.sweep()
            if counts.get("more"):
                delay = 1.0
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention sweep failed")
        if not still_running():  # a cancellation swallowed inside a Redis command (careline/aio.py)
            raise asyncio.CancelledError
        await asyncio.sleep(delay)
