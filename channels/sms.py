"""The SMS channel over Twilio.

Inbound `POST /sms/twilio`: verify X-Twilio-Signature against the public URL → reject (403)
or dedupe on MessageSid (Redis SET NX) → consent keywords recorded at once (so a STOP wins over
a turn in flight) → queued on a durable Redis Stream → empty TwiML, fast. The turn runs in the
worker: one stream (and consumer group) per shard, a conversation always in the same shard, so
its messages are handled in order, one at a time. A message is acknowledged only when its reply
was sent or its failure recorded: a crash mid-turn leaves it pending, and the worker picks it up
again when it starts.

Outbound: plain GSM-7 text, buttons as numbered options, at most 320 characters at once
("Reply MORE" for the rest), through Twilio's REST API; delivery status by signed callback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from channels.consent import SmsRecords
from channels.errors import CareLineError, DuplicateInProgress
from channels.messages import InboundMessage, OutboundMessage
from channels.pipeline import Gateway
from channels.sms_text import (asks_to_stop_texting, keyword_kind, map_numbered_reply, normalise_keyword,
                               numbered_options, plain_text, split_for_sms, to_gsm7, undo_carrier_quirks)
from channels.twilio_sender import SendError, TwilioSender, Unsubscribed

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_SEND = 320


def twiml(status: int = 200) -> Response:
    return Response(EMPTY_TWIML, status_code=status, media_type="text/xml")


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


@dataclass
class SmsTexts:
    clinic_name: str
    clinic_phone: str

    @property
    def help(self) -> str:
        return (f"{self.clinic_name}: this is our automated assistant. Call us at {self.clinic_phone}. "
                "Reply STOP to opt out. Msg&data rates may apply. For emergencies call 911.")

    @property
    def opted_out(self) -> str:
        return (f"You're unsubscribed from {self.clinic_name} texts and will get no more messages. "
                "Reply START to resubscribe. For emergencies call 911.")

    @property
    def opted_in(self) -> str:
        return f"You're subscribed to {self.clinic_name} texts again. Reply HELP for help, STOP to opt out."

    confirm_stop = "Do you want us to stop texting you? Reply STOP to unsubscribe from all our texts."
    media_only = "Sorry, I can only read text, not pictures or files. Please type your message. For emergencies call 911."
    failed = ("Sorry, something went wrong and I couldn't answer. Our staff have been told. "
              "If this is an emergency, call 911 now.")

    def too_long(self, limit: int) -> str:
        return f"Sorry, that message is too long for me. Please send it in parts of under {limit} characters."


class SmsChannel:
    def __init__(self, redis: Redis, gateway: Gateway, sender: TwilioSender, records: SmsRecords,
                 texts: SmsTexts, shards: int = 8, prefix: str = "careline", max_chars: int = 2000,
                 dedupe_ttl: int = 24 * 3600):
        self.redis = redis
        self.gateway = gateway
        self.sender = sender
        self.records = records
        self.texts = texts
        self.shards = shards
        self.prefix = prefix
        self.max_chars = max_chars
        self.dedupe_ttl = dedupe_ttl
        self.group = "sms-workers"
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, "sms", *parts))

    def shard_of(self, key: str) -> int:
        return int(key.rsplit("-", 1)[-1][:8], 16) % self.shards

    # --- inbound ---------------------------------------------------------------------------
    async def accept(self, form: dict[str, str]) -> None:
        """Called after the signature was verified. Never blocks on the turn."""
        sid = form["MessageSid"]
        sender = form["From"]
        key = self.gateway.key_for("sms", sender)
        if not await self.redis.set(self._k("seen", sid), "1", nx=True, ex=self.dedupe_ttl):
            log.info("sms duplicate webhook conversation=%s", key)
            return
        body = undo_carrier_quirks(form.get("Body") or "")
        media = int(form.get("NumMedia") or 0)
        kind = "text"
        keyword = keyword_kind(body)
        if keyword == "opt_out":
            await self.records.opt_out(key, "keyword")
            kind = "opt_out"
        elif keyword == "opt_in" and (normalise_keyword(body) != "YES" or await self.records.opted_out(key)):
            # "YES" re-subscribes only a number that opted out; otherwise it is an answer ("yes" to a question)
            await self.records.opt_in(key, "keyword")
            kind = "opt_in"
        elif keyword == "help":
            kind = "help"
        elif not body.strip() and media:
            kind = "media_only"
        elif len(body) > self.max_chars:
            kind = "too_long"
        elif asks_to_stop_texting(body):
            kind = "confirm_stop"
        entry = {"sid": sid, "from": sender, "to": form.get("To", ""), "body": body, "kind": kind,
                 "received": str(time.time())}
        await self.redis.xadd(self._k("in", str(self.shard_of(key))), entry, maxlen=1_000_000, approximate=True)
        log.info("sms queued conversation=%s kind=%s", key, kind)

    # --- worker ----------------------------------------------------------------------------
    async def start(self) -> None:
        for shard in range(self.shards):
            try:
                await self.redis.xgroup_create(self._k("in", str(shard)), self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._tasks.append(asyncio.create_task(self._consume(shard), name=f"sms-shard-{shard}"))

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _consume(self, shard: int) -> None:
        stream = self._k("in", str(shard))
        # Stable: after a restart the same consumer re-reads its pending messages. One gateway process
        # runs the worker; running several would need per-host consumer names and XAUTOCLAIM of the
        # pending entries of a host that died.
        consumer = f"shard-{shard}"
        backlog = True
        while not self._stopping.is_set():
            try:
                result = await self.redis.xreadgroup(self.group, consumer, {stream: "0" if backlog else ">"},
                                                     count=10, block=None if backlog else 1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sms worker read failed shard=%d", shard)
                await asyncio.sleep(1)
                continue
            entries = result[0][1] if result else []
            if backlog and not entries:
                backlog = False
                continue
            for entry_id, fields in entries:
                data = {_s(k): _s(v) for k, v in (fields or {}).items()}
                if not data:  # already acknowledged and deleted
                    await self.redis.xack(stream, self.group, entry_id)
                    continue
                await self._handle_entry(data)
                await self.redis.xack(stream, self.group, entry_id)
                await self.redis.xdel(stream, entry_id)  # no message text kept after it was answered

    async def _handle_entry(self, data: dict[str, str]) -> None:
        key = self.gateway.key_for("sms", data["from"])
        try:
            await self._turn(key, data)
        except Exception as exc:  # recorded, so the message is never silently lost
            log.exception("sms turn failed conversation=%s", key)
            await self.records.failed(key, data.get("sid"), "not_answered", type(exc).__name__)
            try:
                await self._deliver(key, data, [self.texts.failed], force=False)
            except Exception:
                log.exception("sms failure notice not sent conversation=%s", key)

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
        if await self.records.opted_out(key):
            log.info("sms from an opted-out number conversation=%s: not answered", key)
            await self.records.failed(key, data.get("sid"), "not_sent", "opted_out")
            return
        if kind == "media_only":
            await self._deliver(key, data, [self.texts.media_only])
            return
        if kind == "too_long":
            await self._deliver(key, data, [self.texts.too_long(self.max_chars)])
            return
        if kind == "confirm_stop":
            await self._deliver(key, data, [self.texts.confirm_stop])
            return
        body = data["body"]
        if body.strip().upper() in ("MORE", "MORE.", "MORE!") and await self.redis.exists(self._k("more", key)):
            rest = _s(await self.redis.get(self._k("more", key)))
            await self._send_text(key, data, rest)
            return
        options = await self.redis.get(self._k("options", key))
        if options:
            payload = map_numbered_reply(body, json.loads(options))
            if payload is not None:
                body = payload
        message = InboundMessage("sms", data["from"], body, data["sid"], {"format": "sms"})
        try:
            result = await self.gateway.handle(message)
        except DuplicateInProgress:
            # Only this shard handles this conversation, so a pending claim is from a crash mid-turn.
            await self.gateway.store.release(key, data["sid"])
            result = await self.gateway.handle(message)
        except CareLineError as exc:
            await self._deliver(key, data, [f"Sorry, I couldn't read that: {exc}"])
            return
        await self._send_replies(key, data, result.replies)

    async def _send_replies(self, key: str, data: dict[str, str], replies: list[OutboundMessage]) -> None:
        texts, options = [], {}
        for reply in replies:
            text = plain_text(reply.text)
            if reply.buttons:
                text, options = numbered_options(text, [{"title": b.title, "payload": b.payload} for b in reply.buttons])
            texts.append(text)
        if options:
            await self.redis.set(self._k("options", key), json.dumps(options), ex=24 * 3600)
        else:
            await self.redis.delete(self._k("options", key))
        if texts:
            await self._send_text(key, data, "\n\n".join(t for t in texts if t))

    async def _send_text(self, key: str, data: dict[str, str], text: str) -> None:
        parts, rest = split_for_sms(to_gsm7(text), MAX_SEND)
        if rest:
            await self.redis.set(self._k("more", key), rest, ex=24 * 3600)
        else:
            await self.redis.delete(self._k("more", key))
        await self._deliver(key, data, parts)

    async def _deliver(self, key: str, data: dict[str, str], parts: list[str], force: bool = False) -> None:
        """Send parts in order. A STOP recorded meanwhile wins (unless this is its confirmation);
        a part already sent before a crash is not sent twice."""
        for i, part in enumerate(parts):
            if not force and await self.records.opted_out(key):
                await self.records.failed(key, data.get("sid"), "not_sent", "opted_out")
                return
            marker = self._k("sent", data["sid"], str(i))
            if await self.redis.exists(marker):
                continue
            try:
                sent = await self.sender.send(data["from"], to_gsm7(part))
            except Unsubscribed:
                await self.records.opt_out(key, "twilio_21610")
                await self.records.failed(key, data.get("sid"), "not_sent", "unsubscribed", "21610")
                return
            except SendError as exc:
                await self.records.failed(key, data.get("sid"), "failed", exc.reason, str(exc.code or exc.status or ""))
                log.error("sms send failed conversation=%s reason=%s", key, exc.reason)
                return
            await self.redis.set(marker, sent.sid, ex=self.dedupe_ttl)
            await self.records.sent(key, data.get("sid"), sent.sid, sent.status)


def _s(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def make_router(get_channel, settings) -> APIRouter:
    """Routes for Twilio: the inbound webhook and the status callback, both signature-verified."""
    from twilio.request_validator import RequestValidator

    router = APIRouter()
    validator = RequestValidator(settings.twilio_auth_token)

    async def verified_form(request: Request) -> dict[str, str] | None:
        raw = await request.body()
        if len(raw) > 64 * 1024:
            raw = b""  # no Twilio webhook is this large: it fails the signature check below
        form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        url = public_url(request, settings.public_base_url, settings.trust_forwarded_headers)
        signature = request.headers.get("x-twilio-signature", "")
        if not signature or not validator.validate(url, form, signature):
            log.warning("sms webhook rejected: %s signature path=%s", "missing" if not signature else "invalid",
                        request.url.path)
            return None
        return form

    @router.post("/sms/twilio")
    async def inbound(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        missing = [f for f in ("MessageSid", "From") if not form.get(f)]
        if "Body" not in form and not int(form.get("NumMedia") or 0):
            missing.append("Body")
        if missing:
            log.warning("sms webhook malformed: missing %s", ",".join(missing))
            return Response(f"missing {', '.join(missing)}", status_code=400, media_type="text/plain")
        await get_channel().accept(form)
        return twiml()

    @router.post("/sms/twilio/status")
    async def status(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        sid, state = form.get("MessageSid"), form.get("MessageStatus") or form.get("SmsStatus")
        if not sid or not state:
            return Response("missing MessageSid or MessageStatus", status_code=400, media_type="text/plain")
        channel = get_channel()
        await channel.records.delivery_status(sid, state, form.get("ErrorCode"))
        if form.get("ErrorCode") == "21610":
            await channel.records.opt_out(channel.gateway.key_for("sms", form.get("To", "")), "twilio_21610")
        return Response(status_code=204)

    return router
