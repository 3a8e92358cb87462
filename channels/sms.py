"""The SMS channel over Twilio.

Inbound `POST /sms/twilio`: the body is read with a cap (413), the X-Twilio-Signature verified
against the public URL, the AccountSid and the To number checked (403, logged without content;
the webhooks' router is channels/routes/sms.py), then `SmsChannel.accept`, in this order, so
that a failure at any step leaves Twilio's retry able to deliver the message exactly once:

1. a consent keyword is recorded in SQL (idempotent, so a retry records it again), then in the
   Redis cache: a STOP wins over a turn in flight, and is honoured even with Redis down;
2. the MessageSid mark is looked up: a message already queued is a duplicate (empty TwiML);
3. one Lua script writes the queue entry (XADD) and the mark (SET) together, or neither.

When Redis or SQL fail or hang (the steps share one deadline, `state_timeout`), the webhook
still answers 200 with a TwiML <Message>: a flagged message (the safety screen needs no state;
it starts alongside a write that is slow) gets its emergency reply, a recorded STOP its
confirmation, HELP its text, anything else StoreUnavailable's "we can't reach our system" with
the emergency numbers. Never silence, never a 500.

The turn runs in the worker: one stream (and consumer group) per shard, a conversation always in
the same shard. Any number of gateway replicas share the streams safely:

* each process has its own consumer name (host, pid, random) and a heartbeat key in Redis;
* a shard is worked by the one process holding its lease (`{p}:sms:lease:{shard}`, renewed
  every third of its TTL); replicas share the shards fairly, and a lease that is not renewed
  (a replica died) expires and another replica takes the shard over;
* a new owner first takes the shard's pending entries: at once from a consumer whose heartbeat
  is gone (XCLAIM), after `claim_idle` seconds from one that is still alive (XAUTOCLAIM), and
  reads nothing new until no other consumer holds any, so a conversation's messages are still
  handled in order, one at a time;
* before handling an entry and before sending each part, the owner checks it still holds the
  lease (fencing), so a process that paused past its lease never answers twice;
* a part already sent is marked (`{p}:sms:sent:{sid}:{tag}:{n}`) and not sent again after a crash;
* every Redis and SQL call of a loop is guarded: a crashed loop restarts with backoff (its
  exception type logged, never content); NOGROUP (a flushed Redis) recreates the group; an entry
  that failed `MAX_DELIVERIES` times gets the failure notice and is dropped, recorded.

A message is acknowledged (and deleted: no text kept) only after its reply was sent or its
failure recorded. Queued entries keep the sender's number and the text encrypted (Fernet, the
`cipher`), and so are the "MORE" rest and the numbered options kept between messages.

Outbound: plain GSM-7 text, buttons as numbered options, at most 320 characters at once
("Reply MORE" for the rest), through Twilio's REST API; delivery status by signed callback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from fastapi import Request
from fastapi.responses import Response
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from careline.aio import cancel_and_wait, still_running
from careline.contracts import PAGE_BREAK
from channels.consent import SmsRecords
from channels.crypto import Cipher, DecryptError, EncryptedValues
from channels.errors import (
    STATE_ERRORS,
    CareLineError,
    DuplicateInProgress,
    InvalidMessage,
    StoreUnavailable,
)
from channels.messages import InboundMessage, OutboundMessage
from channels.paging import Pager, arrange, asks_for_more, sms_metadata
from channels.pipeline import Gateway
from channels.sms_text import (
    asks_to_stop_texting,
    for_sms,
    keyword_kind,
    map_numbered_reply,
    normalise_keyword,
    numbered_options,
    plain_text,
    to_gsm7,
    undo_carrier_quirks,
)
from channels.store import decoded
from channels.twilio_sender import SendError, TwilioSender, Unsubscribed
from knowledge.messages import MessageText, msg

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# An entry handled (and failed or crashed) this many times gets the failure notice and is dropped.
MAX_DELIVERIES = 5
# What a failing Redis or SQL raises (redis-py's errors and timeouts, SQLAlchemy's, the OS's).
# Kinds whose text the safety screen reads at the webhook when the queue cannot be written (the
# worker screens every message it handles), and how long a write may take before the screen
# starts alongside it: a healthy webhook screens nothing twice; a hanging Redis costs no extra wait.
SCREENED = ("text", "too_long", "confirm_stop")
SCREEN_AFTER = 0.1


def twiml(*messages: str) -> str:
    """The webhook's TwiML answer: empty (the reply goes through the REST API), or <Message>s
    that Twilio sends to the patient for us."""
    inner = "".join(f"<Message>{escape(m)}</Message>" for m in messages)
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'


def twiml_response(messages: list[str] | tuple[str, ...] = ()) -> Response:
    return Response(twiml(*messages), status_code=200, media_type="text/xml")


def public_url(request: Request, public_base_url: str | None, trust_forwarded: bool) -> str:
    """The URL Twilio signed: the configured public base URL (or, behind a trusted proxy, the one
    rebuilt from X-Forwarded-Proto/Host) with this request's path and query."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if trust_forwarded and request.headers.get("x-forwarded-host"):
        proto = request.headers.get("x-forwarded-proto", "https").split(",")[0].strip()
        host = request.headers["x-forwarded-host"].split(",")[0].strip()
        return f"{proto}://{host}{path}"
    if public_base_url:
        return public_base_url.rstrip("/") + path
    return str(request.url)


def instance_name() -> str:
    """This process's consumer name: unique per host, process and start."""
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class SmsTexts:
    """The SMS channel's own texts (knowledge/messages/<language>.yml), with the clinic's name and number."""

    clinic_name: str
    clinic_phone: str

    @property
    def help(self) -> str:
        return msg("sms.help", clinic_name=self.clinic_name, clinic_phone=self.clinic_phone)

    @property
    def opted_out(self) -> str:
        return msg("sms.opted_out", clinic_name=self.clinic_name)

    @property
    def opted_in(self) -> str:
        return msg("sms.opted_in", clinic_name=self.clinic_name)

    confirm_stop = MessageText("sms.confirm_stop")
    media_only = MessageText("sms.media_only")
    failed = MessageText("sms.failed")

    def too_long(self, limit: int) -> str:
        return msg("sms.too_long", limit=limit)

    @staticmethod
    def unreadable(reason: str) -> str:
        return msg("sms.unreadable", reason=reason)


class CannotText(Exception):
    """A text that must not or cannot be sent (an opted-out number, a number not kept)."""


class LeaseLost(Exception):
    """This process no longer holds the shard's lease: stop, leave the entry pending for the owner."""


# The queue entry and the MessageSid mark, together or not at all. XADD comes first: if it fails
# (out of memory), nothing was written and Twilio's retry queues the message. No MAXLEN: a trim
# would drop unanswered messages (answered ones are deleted; Redis runs with noeviction).
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[1], id, 'EX', tonumber(ARGV[1]))
return id
"""

# Delete a consumer only if nothing is pending for it, checked and done at once.
_FORGET_CONSUMER = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""

# Take a free lease, or keep (and extend) one this process holds.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Extend every lease this process still holds; 1/0 per key.
_RENEW = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('PEXPIRE', k, ARGV[2]) out[i] = 1 else out[i] = 0 end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class _Progress:
    """How far the webhook got before a failure: what the patient can be told without the queue."""

    kind: str
    opted_out: bool = False
    opted_in: bool = False


class SmsChannel:
    def __init__(
        self,
        redis: Redis,
        gateway: Gateway,
        sender: TwilioSender,
        records: SmsRecords,
        texts: SmsTexts,
        shards: int = 8,
        prefix: str = "careline",
        max_chars: int = 2000,
        dedupe_ttl: int = 24 * 3600,
        cipher: Cipher | None = None,
        claim_idle: float = 60.0,
        lease_seconds: float = 10.0,
        state_timeout: float = 2.0,
        name: str | None = None,
    ):
        self.redis = redis
        self.gateway = gateway
        self.sender = sender
        self.records = records
        self.texts = texts
        self.shards = shards
        self.prefix = prefix
        self.max_chars = max_chars
        self.dedupe_ttl = dedupe_ttl
        self.cipher = cipher or getattr(gateway, "cipher", None) or Cipher(None)
        # the rest of a long reply, for MORE: the gateway's pager, so a NextPage control reads the same pages
        self.pager = getattr(gateway, "pager", None) or Pager(redis, self.cipher, prefix)
        self.claim_idle = claim_idle
        self.lease_seconds = lease_seconds
        self.state_timeout = state_timeout  # the webhook's deadline for all its Redis/SQL steps
        self.name = name or instance_name()
        self.group = "sms-workers"
        self.restarts = 0
        self.regroups = 0
        self._owned: dict[int, float] = {}  # shard → monotonic time its lease was last confirmed
        self._replicas = 1
        self._acquiring = 0
        self._groups_made: set[str] = set()
        self._last_renewal: float | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._enqueue = redis.register_script(_ENQUEUE)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._forget_consumer = redis.register_script(_FORGET_CONSUMER)
        timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
        # a blocking read must return before the client's socket timeout
        self._block_ms = int(min(1.0, timeout / 2 if timeout else 1.0) * 1000)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, "sms", *parts))

    def shard_of(self, key: str) -> int:
        return int(key.rsplit("-", 1)[-1][:8], 16) % self.shards

    def _stream(self, shard: int) -> str:
        return self._k("in", str(shard))

    # --- inbound ---------------------------------------------------------------------------
    def _kind(self, body: str, media: int) -> str:
        keyword = keyword_kind(body)
        if keyword == "opt_out":
            return "opt_out"
        if keyword == "opt_in":
            # "YES" re-subscribes only a number that opted out; otherwise it is an answer ("yes" to a question)
            return "yes" if normalise_keyword(body) == "YES" else "opt_in"
        if keyword == "help":
            return "help"
        if not body.strip() and media:
            return "media_only"
        if len(body) > self.max_chars:
            return "too_long"
        if asks_to_stop_texting(body):
            return "confirm_stop"
        return "text"

    async def accept(self, form: dict[str, str]) -> list[str]:
        """Called after the webhook was verified. Records a consent keyword and queues the message;
        returns what to answer in TwiML: nothing when it was queued (or is a duplicate), a
        message for the patient when the state stores failed. Never raises, never blocks on the turn."""
        sid, sender = form["MessageSid"], form["From"]
        key = self.gateway.key_for("sms", sender)
        body = undo_carrier_quirks(form.get("Body") or "")
        media = int(form["NumMedia"]) if (form.get("NumMedia") or "").isdigit() else 0
        progress = _Progress(self._kind(body, media))
        message = InboundMessage("sms", sender, body, sid, {"format": "sms"})

        async def record() -> None:
            async with asyncio.timeout(self.state_timeout):
                await self._record_and_queue(sid, key, sender, body, progress)

        writing = asyncio.create_task(record())
        screen = None
        try:
            await asyncio.wait({writing}, timeout=SCREEN_AFTER)
            if not writing.done() and progress.kind in SCREENED:
                # Redis or SQL are slow: screen alongside, so a reply is ready when they give up
                screen = asyncio.create_task(self.gateway.screen(message))
            await writing
        except Exception as exc:  # Redis or SQL down, slow, or anything else: the patient still hears from us
            log.error(
                "sms webhook could not queue conversation=%s kind=%s error=%s", key, progress.kind, type(exc).__name__
            )
            if screen is None and progress.kind in SCREENED:
                screen = asyncio.create_task(self.gateway.screen(message))
            return await self._unqueued_reply(key, message, progress, screen)
        finally:
            writing.cancel()  # only if this request itself was cancelled; a no-op otherwise
        if screen is not None:
            screen.cancel()
        return []

    async def _record_and_queue(self, sid: str, key: str, sender: str, body: str, progress: _Progress) -> None:
        if progress.kind in ("opt_out", "opt_in"):
            # First, and in SQL (idempotent: a retry records it again): a STOP is honoured even
            # when Redis is down, and the patient is told so in the webhook's answer.
            await self.records.record(key, progress.kind == "opt_out", "keyword")
            progress.opted_out, progress.opted_in = progress.kind == "opt_out", progress.kind == "opt_in"
            await self.records.cache(key, progress.opted_out)
        mark = self._k("seen", sid)
        if await self.redis.exists(mark):
            log.info("sms duplicate webhook conversation=%s", key)
            return
        if progress.kind == "yes":
            # The decision is kept per MessageSid, so a retry after the opt-in was recorded decides the same.
            intent = self._k("intent", sid)
            if await self.redis.get(intent) is not None or await self.records.opted_out(key):
                await self.redis.set(intent, "opt_in", ex=self.dedupe_ttl)
                await self.records.opt_in(key, "keyword")
                progress.kind, progress.opted_in = "opt_in", True
            else:
                progress.kind = "text"
        entry = {
            "sid": sid,
            "from_enc": self.cipher.encrypt(sender),
            "body_enc": self.cipher.encrypt(body),
            "kind": progress.kind,
            "received": repr(time.time()),
        }
        flat = [x for pair in entry.items() for x in pair]
        queued = await self._enqueue(keys=[mark, self._stream(self.shard_of(key))], args=[self.dedupe_ttl, *flat])
        if queued is None:
            log.info("sms duplicate webhook conversation=%s", key)
            return
        log.info("sms queued conversation=%s kind=%s", key, progress.kind)

    async def queue_from_staff(self, key: str, reply_id: str, text: str) -> None:
        """A staff member's reply to an SMS conversation: queued on the conversation's shard, so it
        goes out in order with the bot's replies, exactly once, through the same sender. Raises
        CannotText when the number opted out or is not kept."""
        if await self.records.opted_out(key):
            raise CannotText("this number has opted out of texts (STOP): it cannot be messaged")
        address_enc = await self.redis.hget(f"{self.prefix}:conv:{key}", "address_enc")
        if not address_enc:
            raise CannotText("the number of this conversation is not kept: it cannot be messaged")
        entry = {
            "sid": f"staff-{reply_id}",
            "from_enc": decoded(address_enc),
            "body_enc": self.cipher.encrypt(text),
            "kind": "staff",
            "received": repr(time.time()),
        }
        flat = [x for pair in entry.items() for x in pair]
        await self._enqueue(
            keys=[self._k("seen", entry["sid"]), self._stream(self.shard_of(key))], args=[self.dedupe_ttl, *flat]
        )
        log.info("sms staff reply queued conversation=%s", key)

    async def _unqueued_reply(
        self, key: str, message: InboundMessage, progress: _Progress, screen: asyncio.Task | None
    ) -> list[str]:
        if progress.opted_out:
            return [self.texts.opted_out]
        if progress.opted_in:
            return [self.texts.opted_in]
        if progress.kind == "help":
            return [self.texts.help]
        result = None
        if screen is not None:
            try:
                result = await screen
            except Exception as exc:  # Gateway.screen never raises; fail closed all the same
                log.error("sms webhook screen failed conversation=%s error=%s", key, type(exc).__name__)
        if result is not None and result.escalate:
            log.warning(
                "sms emergency reply without state conversation=%s outcome=%s rules=%s",
                key,
                result.outcome,
                result.rule,
            )
            await self.gateway.record_reply_without_state(message, result)
            return [for_sms(r.text) for r in result.replies]
        return [StoreUnavailable.patient_message]

    # --- worker: lifecycle and health --------------------------------------------------------
    async def start(self) -> None:
        """Start the lease keeper and one loop per shard. Never fails on Redis: the loops retry."""
        self._stopping.clear()
        self._tasks = [asyncio.create_task(self._supervise("sms-leases", self._lease_loop), name="sms-leases")]
        for shard in range(self.shards):
            self._tasks.append(
                asyncio.create_task(
                    self._supervise(f"sms-shard-{shard}", lambda shard=shard: self._shard_loop(shard)),
                    name=f"sms-shard-{shard}",
                )
            )

    async def stop(self, drain_seconds: float = 8.0) -> None:
        """Let the turns in flight finish (up to `drain_seconds`), then hand the shards over."""
        self._stopping.set()
        loops = self._tasks[1:]
        if loops:
            await asyncio.wait(loops, timeout=drain_seconds)
        stuck = await cancel_and_wait(loops, timeout=self.state_timeout + 2.0)
        # the lease keeper renews until the loops are done
        stuck |= await cancel_and_wait(self._tasks[:1], timeout=self.state_timeout + 2.0)
        if stuck:  # a task that will not end must not hold up the shutdown: its leases expire
            log.error("sms loops did not stop count=%d", len(stuck))
        self._tasks.clear()
        owned, self._owned = list(self._owned), {}
        try:  # hand the shards over at once; entries left pending are taken (we are no longer alive)
            async with asyncio.timeout(self.state_timeout):
                for shard in owned:
                    await self._release(keys=[self._k("lease", str(shard))], args=[self.name])
                await self.redis.delete(self._k("worker", self.name))
                await self.redis.srem(self._k("workers"), self.name)
        except Exception as exc:
            log.warning(
                "sms leases not released error=%s: they expire in %.0fs", type(exc).__name__, self.lease_seconds
            )

    def health(self) -> dict[str, Any]:
        """For /readyz: every loop running and the lease keeper reaching Redis."""
        loops = sum(1 for t in self._tasks[1:] if not t.done())
        renewed = self._last_renewal is not None and time.monotonic() - self._last_renewal < 3 * self.lease_seconds
        ok = bool(self._tasks) and not self._tasks[0].done() and loops == self.shards and renewed
        return {
            "ok": ok,
            "workers": loops,
            "shards": len(self._owned),
            "shards_total": self.shards,
            "replicas": self._replicas,
            "restarts": self.restarts,
            "consumer": self.name,
        }

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop for ever: a crash is logged (its type only) and the loop restarts with backoff."""
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts += 1
                failures = 1 if time.monotonic() - started > 60 else failures + 1
                delay = min(10.0, 0.25 * 2 ** min(failures, 6)) * (0.5 + random.random() / 2)
                log.error("sms loop crashed loop=%s error=%s restart_in=%.1fs", name, type(exc).__name__, delay)
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except TimeoutError:
                    pass

    # --- worker: leases ----------------------------------------------------------------------
    def _holds(self, shard: int) -> bool:
        """Held by the last confirmation, with a margin: we stop before Redis lets it expire."""
        confirmed = self._owned.get(shard)
        return confirmed is not None and time.monotonic() - confirmed < 0.8 * self.lease_seconds

    def _fair_share(self) -> int:
        return math.ceil(self.shards / max(1, self._replicas))

    async def _lease_loop(self) -> None:
        ttl_ms = int(self.lease_seconds * 1000)
        while still_running():  # until cancelled: it renews while stop() drains the shard loops
            try:
                async with asyncio.timeout(self.lease_seconds / 2):
                    await self._heartbeat(ttl_ms)
                    owned = sorted(self._owned)
                    if owned:
                        asked = time.monotonic()
                        kept = await self._renew(
                            keys=[self._k("lease", str(s)) for s in owned], args=[self.name, ttl_ms]
                        )
                        for shard, ok in zip(owned, kept, strict=False):
                            if int(ok):
                                self._owned[shard] = asked
                            elif self._owned.pop(shard, None) is not None:
                                log.warning("sms shard lease lost shard=%d", shard)
                self._last_renewal = time.monotonic()
            except STATE_ERRORS as exc:
                log.warning("sms lease renewal failed error=%s", type(exc).__name__)
                for shard in [s for s in self._owned if not self._holds(s)]:
                    self._owned.pop(shard, None)
                    log.warning("sms shard lease expired shard=%d", shard)
            try:  # consent cache writes that failed while Redis was away
                async with asyncio.timeout(self.lease_seconds / 2):
                    await self.records.repair_cache()
            except STATE_ERRORS as exc:
                log.warning("sms consent cache repair failed error=%s", type(exc).__name__)
            await asyncio.sleep(self.lease_seconds / 3)

    async def _heartbeat(self, ttl_ms: int) -> None:
        """This process is alive for one lease TTL; count the replicas that are."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._k("worker", self.name), "1", px=ttl_ms)
            pipe.sadd(self._k("workers"), self.name)
            pipe.smembers(self._k("workers"))
            *_, members = await pipe.execute()
        names = sorted(decoded(m) for m in members)
        alive = await self.redis.exists(*[self._k("worker", n) for n in names]) if names else 0
        if alive < len(names):
            async with self.redis.pipeline(transaction=False) as pipe:
                for n in names:
                    pipe.exists(self._k("worker", n))
                flags = await pipe.execute()
            dead = [n for n, f in zip(names, flags, strict=False) if not f and n != self.name]
            if dead:
                await self.redis.srem(self._k("workers"), *dead)
            alive = sum(1 for f in flags if f)
        self._replicas = max(1, alive)

    async def _alive(self, consumer: str) -> bool:
        return consumer == self.name or bool(await self.redis.exists(self._k("worker", consumer)))

    async def _try_acquire(self, shard: int) -> bool:
        if self._last_renewal is None or len(self._owned) + self._acquiring >= self._fair_share():
            return False  # not before our heartbeat counted us, and no more than our share
        self._acquiring += 1
        try:
            asked = time.monotonic()
            if int(
                await self._acquire(
                    keys=[self._k("lease", str(shard))], args=[self.name, int(self.lease_seconds * 1000)]
                )
            ):
                self._owned[shard] = asked
                log.info("sms shard acquired shard=%d consumer=%s", shard, self.name)
                return True
            return False
        finally:
            self._acquiring -= 1

    def _should_release(self, shard: int) -> bool:
        """Over our fair share (another replica started): give up the highest shards we hold."""
        extra = len(self._owned) - self._fair_share()
        return extra > 0 and shard in sorted(self._owned)[-extra:]

    async def _give_up(self, shard: int) -> None:
        self._owned.pop(shard, None)
        await self._release(keys=[self._k("lease", str(shard))], args=[self.name])
        log.info("sms shard released shard=%d consumer=%s", shard, self.name)

    async def _fence(self, shard: int) -> None:
        """Raise LeaseLost unless this process still holds the shard. With Redis unreachable,
        the last confirmation decides (nobody else can take the lease meanwhile)."""
        try:
            holder = await self.redis.get(self._k("lease", str(shard)))
        except STATE_ERRORS:
            if self._holds(shard):
                return
            raise LeaseLost() from None
        if decoded(holder) != self.name:
            self._owned.pop(shard, None)
            raise LeaseLost()

    # --- worker: the shard loop --------------------------------------------------------------
    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds * (0.75 + random.random() / 2))
        except TimeoutError:
            pass

    async def _shard_loop(self, shard: int) -> None:
        stream = self._stream(shard)
        ready = False  # taken over and own backlog handled, since the lease was (re)acquired
        while not self._stopping.is_set():
            if not self._holds(shard):
                ready = False
                if not await self._try_acquire(shard):
                    # soon after start (our first heartbeat), else at the renewal pace
                    await self._sleep(0.2 if self._last_renewal is None else self.lease_seconds / 3)
                    continue
            try:
                if not ready:
                    await self._ensure_group(stream)
                    if not await self._take_over(stream):
                        await self._sleep(min(1.0, self.claim_idle / 5))
                        continue
                    backlog = await self._read(stream, "0")
                    if backlog:
                        await self._handle_batch(shard, stream, backlog, history=True)
                        continue
                    ready = True
                if self._should_release(shard):
                    await self._give_up(shard)
                    ready = False
                    continue
                entries = await self._read(stream, ">", block=self._block_ms)
                if entries and not await self._handle_batch(shard, stream, entries, history=False):
                    ready = False
            except LeaseLost:
                log.warning("sms shard lease lost mid-work shard=%d: entries left to the new owner", shard)
                self._owned.pop(shard, None)
                ready = False

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return
        if stream in self._groups_made:  # it existed before: Redis was flushed or lost its data
            self.regroups += 1
            log.warning("sms consumer group missing on %s: recreated", stream.rsplit(":", 1)[-1])
        self._groups_made.add(stream)

    async def _read(self, stream: str, since: str, block: int | None = None) -> list:
        try:
            result = await self.redis.xreadgroup(self.group, self.name, {stream: since}, count=10, block=block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost the group (flushed, restarted without data): make it again and go on.
            self._groups_made.add(stream)
            await self._ensure_group(stream)
            return []
        return result[0][1] if result else []

    async def _take_over(self, stream: str) -> bool:
        """Move every other consumer's pending entries to us: at once from a consumer that is no
        longer alive, after `claim_idle` from one that is. True when none are left elsewhere."""
        summary = await self.redis.xpending(stream, self.group)
        others = [
            (decoded(c["name"]), c["pending"])
            for c in summary.get("consumers") or ()
            if decoded(c["name"]) != self.name
        ]
        if not others:
            return True
        for consumer, pending in others:
            if pending and not await self._alive(consumer):
                rows = await self.redis.xpending_range(stream, self.group, "-", "+", pending, consumername=consumer)
                ids = [r["message_id"] for r in rows]
                if ids:
                    await self.redis.xclaim(stream, self.group, self.name, 0, ids, justid=True)
                    log.warning(
                        "sms took over entries=%d of a stopped consumer on %s", len(ids), stream.rsplit(":", 1)[-1]
                    )
        start = "0-0"
        while True:  # a live consumer's entries idle for longer than claim_idle
            reply = await self.redis.xautoclaim(
                stream, self.group, self.name, int(self.claim_idle * 1000), start, count=100
            )
            if reply[1]:
                log.warning(
                    "sms took over entries=%d idle for %.0fs on %s",
                    len(reply[1]),
                    self.claim_idle,
                    stream.rsplit(":", 1)[-1],
                )
            start = decoded(reply[0])
            if start == "0-0":
                break
        summary = await self.redis.xpending(stream, self.group)
        waiting = [c for c in summary.get("consumers") or () if decoded(c["name"]) != self.name and c["pending"]]
        if waiting:
            return False
        for consumer, _pending in others:  # consumers with nothing pending: forget them
            # in one script: a consumer that read an entry meanwhile keeps it (DELCONSUMER would drop it)
            await self._forget_consumer(keys=[stream], args=[self.group, consumer])
        return True

    async def _others_pending(self, stream: str) -> bool:
        summary = await self.redis.xpending(stream, self.group)
        return any(decoded(c["name"]) != self.name and c["pending"] for c in summary.get("consumers") or ())

    async def _handle_batch(self, shard: int, stream: str, entries: list, history: bool) -> bool:
        """Handle entries in order. False (nothing handled) when another consumer still holds
        entries of this shard: they are older, so they go first (the entries stay ours, pending)."""
        if not history and await self._others_pending(stream):
            return False
        for entry_id, fields in entries:
            if self._stopping.is_set():
                break  # stopping: the rest stay pending, taken at once by the next owner
            if entry_id is None:  # Redis 6.2: a deleted entry claimed from another consumer
                continue
            await self._fence(shard)
            if not fields:  # deleted after it was answered
                await self._done(stream, entry_id)
                continue
            if history and await self._deliveries(stream, entry_id) > MAX_DELIVERIES:
                await self._give_up_entry(shard, stream, entry_id, fields)
                continue
            data = self._decode(fields)
            if data is None:
                await self._done(stream, entry_id)
                continue
            data["shard"] = shard
            await self._handle_entry(data)
            await self._done(stream, entry_id)
        return True

    async def _deliveries(self, stream: str, entry_id) -> int:
        rows = await self.redis.xpending_range(stream, self.group, entry_id, entry_id, 1)
        return int(rows[0]["times_delivered"]) if rows else 0

    async def _done(self, stream: str, entry_id) -> None:
        """Acknowledged and deleted together: no message text is kept after it was answered."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, self.group, entry_id)
                pipe.xdel(stream, entry_id)
                await pipe.execute()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise  # else Redis was flushed meanwhile: the entry is gone already

    def _decode(self, fields: dict) -> dict[str, str] | None:
        data = {decoded(k): decoded(v) for k, v in fields.items()}
        try:
            if "from_enc" in data:  # entries queued before encryption carry "from" and "body" as they are
                data["from"] = self.cipher.decrypt(data.pop("from_enc"))
                data["body"] = self.cipher.decrypt(data.pop("body_enc")) if "body_enc" in data else ""
        except DecryptError:
            # another key (DATA_ENCRYPTION_KEY changed) or tampered with: nobody to answer
            log.error("sms queued entry could not be decrypted sid=%s: dropped", data.get("sid", "?"))
            return None
        if not data.get("from") or not data.get("sid"):
            log.error("sms queued entry malformed sid=%s: dropped", data.get("sid", "?"))
            return None
        data.setdefault("body", "")
        data.setdefault("kind", "text")
        return data

    async def _give_up_entry(self, shard: int, stream: str, entry_id, fields: dict) -> None:
        data = self._decode(fields)
        if data is not None:
            key = self.gateway.key_for("sms", data["from"])
            log.error("sms entry failed %d times conversation=%s: dropped with the failure notice", MAX_DELIVERIES, key)
            data["shard"] = shard
            await self.records.failed(key, data.get("sid"), "not_answered", "too_many_attempts")
            try:
                if data.get("kind") != "staff":  # a person's reply: recorded as failed, no bot notice
                    await self._deliver(key, data, [self.texts.failed], tag="n")
            except LeaseLost:
                raise
            except Exception as exc:
                log.error("sms failure notice not sent conversation=%s error=%s", key, type(exc).__name__)
        await self._done(stream, entry_id)

    # --- worker: the turn --------------------------------------------------------------------
    async def _handle_entry(self, data: dict[str, str]) -> None:
        key = self.gateway.key_for("sms", data["from"])
        try:
            await self._turn(key, data)
        except LeaseLost:
            raise
        except Exception as exc:  # recorded, so the message is never silently lost
            log.error("sms turn failed conversation=%s error=%s", key, type(exc).__name__)
            try:
                await self.records.failed(key, data.get("sid"), "not_answered", type(exc).__name__)
            except STATE_ERRORS as exc2:  # SQL down too: the patient is still told
                log.error("sms failure not recorded conversation=%s error=%s", key, type(exc2).__name__)
            if data.get("kind") == "staff":  # a person's reply that failed: recorded; the bot's notice would mislead
                return
            try:
                await self._deliver(key, data, [self.texts.failed], tag="n")
            except LeaseLost:
                raise
            except Exception as exc2:
                log.error("sms failure notice not sent conversation=%s error=%s", key, type(exc2).__name__)

    async def _turn(self, key: str, data: dict[str, str]) -> None:
        kind = data["kind"]
        if kind == "opt_out":
            await self._deliver(key, data, [self.texts.opted_out], force=True)
            return
        if kind == "opt_in":
            await self._deliver(key, data, [self.texts.opted_in])
            return
        if kind == "help":
            await self._deliver(key, data, [self.texts.help], force=True)
            return
        if kind == "staff":  # a person's reply, sent as written (paged like any reply; no opt-out override)
            await self._send_text(key, data, data["body"])
            return
        if await self.records.opted_out(key):
            log.info("sms from an opted-out number conversation=%s: not answered", key)
            await self.records.failed(key, data.get("sid"), "not_sent", "opted_out")
            return
        if kind == "media_only":
            await self._deliver(key, data, [self.texts.media_only])
            return
        if kind in ("too_long", "confirm_stop") and not await self._flagged(data):
            # a crisis in a long message or in "stop texting me, I want to die" goes on to the gateway
            await self._deliver(
                key, data, [self.texts.too_long(self.max_chars) if kind == "too_long" else self.texts.confirm_stop]
            )
            return
        body = data["body"]
        if asks_for_more(body):
            parts = await self.pager.sms_more(key)
            if parts:
                await self._deliver(key, data, parts)
                return
        options = await self._get_secret(self._k("options", key))
        if options:
            payload = map_numbered_reply(body, json.loads(options))
            if payload is not None:
                body = payload
        # bound to the text as sent: a numbered reply may map to another option on a retry
        message = InboundMessage("sms", data["from"], body, data["sid"], sms_metadata(), dedupe_text=data["body"])
        try:
            try:
                result = await self.gateway.handle(message)
            except DuplicateInProgress:
                # Only the lease holder handles this conversation, so a pending claim is from a crash mid-turn.
                await self.gateway.store.release(key, data["sid"])
                result = await self.gateway.handle(message)
        except StoreUnavailable as exc:
            log.error("sms turn without state conversation=%s", key)
            await self._deliver(key, data, [exc.patient_message], tag="n")
            return
        except InvalidMessage as exc:
            await self._deliver(key, data, [self.texts.unreadable(str(exc))])
            return
        except CareLineError as exc:
            replies = [m.text for m in getattr(exc, "replies", None) or ()] or [exc.patient_message]
            await self._deliver(key, data, replies, tag="n")
            return
        await self._send_replies(key, data, result.replies)

    async def _flagged(self, data: dict[str, str]) -> bool:
        result = await self.gateway.screen(
            InboundMessage("sms", data["from"], data["body"], data["sid"], {"format": "sms"})
        )
        return result is not None and result.escalate

    async def _get_secret(self, redis_key: str) -> str | None:
        """A value kept encrypted between messages (the numbered options); absent if unreadable."""
        return await EncryptedValues(self.redis, self.cipher, "sms").get(redis_key)

    async def _put_secret(self, redis_key: str, value: str | None) -> None:
        # a numbered reply will not work if this fails; the answer still goes out
        await EncryptedValues(self.redis, self.cipher, "sms").put(redis_key, value, 24 * 3600)

    async def _send_replies(self, key: str, data: dict[str, str], replies: list[OutboundMessage]) -> None:
        texts, options = [], {}
        for reply in replies:
            text = PAGE_BREAK.join(plain_text(page) for page in reply.text.split(PAGE_BREAK))
            if reply.buttons:
                text, options = numbered_options(
                    text, [{"title": b.title, "payload": b.payload} for b in reply.buttons]
                )
            texts.append(text)
        await self._put_secret(self._k("options", key), json.dumps(options) if options else None)
        if texts:
            await self._send_text(key, data, arrange(texts))

    async def _send_text(self, key: str, data: dict[str, str], text: str) -> None:
        await self._deliver(key, data, await self.pager.sms_parts(key, to_gsm7(text)))

    async def _deliver(
        self, key: str, data: dict[str, str], parts: list[str], force: bool = False, tag: str = "r"
    ) -> None:
        """Send parts in order. A STOP recorded meanwhile wins (unless this is its confirmation);
        a part already sent before a crash is not sent twice; a process that lost the shard's
        lease sends nothing. `tag` keeps a notice's markers apart from a reply's.

        Each part: its "sending" mark (with the time), the send, its "sent" mark. A "sending"
        mark without a "sent" one means an earlier attempt died around the send: Twilio's list of
        recent messages tells whether that one went out (a part with this text, since then, that
        we have no record of), and then it is recorded instead of sent again."""
        shard = data.get("shard")
        for i, part in enumerate(parts):
            if not force and await self.records.opted_out(key):
                await self.records.failed(key, data.get("sid"), "not_sent", "opted_out")
                return
            marker = self._k("sent", data["sid"], tag, str(i))
            sending = self._k("sending", data["sid"], tag, str(i))
            body = to_gsm7(part)
            try:
                done, tried = await self.redis.mget(marker, sending)
            except STATE_ERRORS:
                done = tried = None  # cannot tell: sending again is better than not at all
            if done is not None:  # sent by an earlier attempt; it may have died before recording it
                try:
                    await self.records.sent_once(key, data.get("sid"), decoded(done))
                except STATE_ERRORS as exc:
                    log.error("sms delivery row not written conversation=%s error=%s", key, type(exc).__name__)
                continue
            if shard is not None:
                await self._fence(int(shard))
            sent = None
            if tried is not None:
                sent = await self.sender.find_sent(
                    data["from"], body, float(tried), exclude=await self.records.message_sids(key)
                )
                if sent is not None:
                    log.warning("sms part found sent by an attempt that died conversation=%s", key)
            try:
                await self.redis.set(sending, repr(time.time()), ex=self.dedupe_ttl, nx=True)
            except STATE_ERRORS:
                pass
            try:
                sent = sent or await self.sender.send(data["from"], body)
            except Unsubscribed:
                await self.records.opt_out(key, "twilio_21610")
                await self.records.failed(key, data.get("sid"), "not_sent", "unsubscribed", "21610")
                return
            except SendError as exc:
                await self.records.failed(key, data.get("sid"), "failed", exc.reason, str(exc.code or exc.status or ""))
                log.error("sms send failed conversation=%s reason=%s", key, exc.reason)
                return
            try:
                await self.redis.set(marker, sent.sid, ex=self.dedupe_ttl)
            except STATE_ERRORS as exc:
                log.warning("sms sent marker not kept conversation=%s error=%s", key, type(exc).__name__)
            try:
                await self.records.sent(key, data.get("sid"), sent.sid, sent.status)
            except STATE_ERRORS as exc:  # the part went out; only its bookkeeping row is missing
                log.error("sms delivery row not written conversation=%s error=%s", key, type(exc).__name__)
