"""What the staff console needs beyond the desk: the hand-off packet, replies delivered over the
patient's own channel, and handing back to the assistant.

Delivery by channel: every message to the patient is appended to the transcript with `push`, which
publishes it (channels/store.py): an open widget shows it at once, a closed one gets it with its
history on resume, an API integration polls `GET /api/messages`; SMS also queues it on the
conversation's shard, so it is texted in order, exactly once (channels/sms.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from channels.crypto import Cipher, DecryptError
from channels.messages import OutboundMessage
from channels.rasa_client import RasaClient
from channels.sms import CannotText, SmsChannel
from channels.staff.canned import CannedReplies
from channels.staff.desk import REPLY_MAX_CHARS, Actor, CannotSend, StaffDesk
from channels.staff.fanout import Fanout
from channels.staff.shifts import Presence, Shift
from channels.store import Owner, decoded
from knowledge.messages import msg

# Skills a conversation may be handed back into (the bot is sent the intent, as a button would).
RESUMABLE = ("book_appointment", "cancel_appointment", "reschedule_appointment", "report_symptom")
PENDING = "pending"
REPLY_DEDUPE_SECONDS = 24 * 3600  # as long as a patient message's idempotency key
# Bot messages that were grounded answers: they carry the citation line (knowledge/messages).
_CITED = re.compile(r"https?://\S+")


@dataclass
class StaffConsole:
    desk: StaffDesk
    presence: Presence
    shift: Shift
    canned: CannedReplies
    fanout: Fanout
    cipher: Cipher
    rasa: RasaClient
    sms: SmsChannel | None = None

    # --- what the agent reads --------------------------------------------------------------
    async def conversation(self, key: str, reveal: bool = False) -> dict[str, Any]:
        info = await self.desk.info(key)
        transcript = await self.desk.store.transcript(key)
        item = self.desk._item(key, info, time.time())
        return {
            **item,
            "packet": packet(info, transcript, item),
            "patient": await self._patient(key, info, reveal),
            "transcript": [_visible(m) for m in transcript],
            "notes": await self.desk.notes(key),
            "cursor": int(info.get("seq") or 0),
        }

    async def _patient(self, key: str, info: dict[str, Any], reveal: bool) -> dict[str, Any]:
        channel = info.get("channel", "")
        if channel != "sms":
            return {"channel": channel}
        number = None
        if info.get("address_enc"):
            try:
                number = self.cipher.decrypt(info["address_enc"])
            except DecryptError:
                number = None
        opted_out = await self.sms.records.opted_out(key) if self.sms is not None else False
        shown = number if reveal else mask(number)
        return {"channel": channel, "number": shown, "revealed": reveal and number is not None, "opted_out": opted_out}

    # --- what the agent does ---------------------------------------------------------------
    async def reply(self, key: str, actor: Actor, text: str, client_id: Any = None) -> dict[str, Any]:
        """Send the agent's reply. With `client_id` (the console's id of this reply), a retry of a
        request whose answer was lost gets the first answer instead of a second message."""
        if not isinstance(text, str) or not text.strip():
            raise CannotSend("a reply needs some text")
        text = text.strip()
        if len(text) > REPLY_MAX_CHARS:
            raise CannotSend(f"a reply is at most {REPLY_MAX_CHARS} characters")
        if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 128):
            raise CannotSend("client_message_id must be a string of at most 128 characters")
        info = await self.desk.check_assignee(key, actor)
        mark = self._reply_mark(key, client_id) if client_id else None
        if mark is not None and not await self.desk.redis.set(mark, PENDING, nx=True, ex=REPLY_DEDUPE_SECONDS):
            earlier = decoded(await self.desk.redis.get(mark))
            if earlier in (None, PENDING):
                raise CannotSend("this reply is being sent already")
            return {**json.loads(earlier), "text": text, "duplicate": True}
        message = OutboundMessage(text, role="staff")
        try:
            reply_id = mark.rsplit(":", 1)[-1] if mark else None
            seq = await self.deliver(key, info.get("channel", ""), [message], reply_id=reply_id, sender=actor.name)
        except BaseException:
            if mark is not None:
                await self.desk.redis.delete(mark)
            raise
        if mark is not None:  # the sequence number only: no message text is kept beside the transcript
            await self.desk.redis.set(mark, json.dumps({"seq": seq}), ex=REPLY_DEDUPE_SECONDS)
        return {"seq": seq, "text": text}

    def _reply_mark(self, key: str, client_id: str) -> str:
        digest = hashlib.sha256(f"{key}:{client_id}".encode()).hexdigest()[:32]
        return f"{self.desk.prefix}:staffreply:{key}:{digest}"

    async def deliver(
        self, key: str, channel: str, messages: list[OutboundMessage], reply_id: str | None = None, **extra: Any
    ) -> int:
        """Send messages to the patient over their channel, outside a patient's turn. `reply_id`
        makes the SMS entry of a single message idempotent (channels/sms.py de-duplicates by it)."""
        if channel == "sms":
            if self.sms is None:
                raise CannotSend("the SMS channel is not configured on this gateway")
            for i, message in enumerate(messages):
                try:
                    await self.sms.queue_from_staff(
                        key, f"{reply_id}-{i}" if reply_id else uuid.uuid4().hex, message.text
                    )
                except CannotText as exc:
                    raise CannotSend(str(exc)) from exc
        seq = 0
        for message in messages:
            seq = await self.desk.store.append(key, message.role, [message], push=True, **extra)
        return seq

    async def hand_back(self, key: str, actor: Actor, owner: Owner, resume: str | None = None) -> None:
        """Return to the assistant (optionally into a skill) or close, telling the patient."""
        if resume is not None and resume not in RESUMABLE:
            raise CannotSend(f"resume must be one of {', '.join(RESUMABLE)}")
        info = await self.desk.info(key)
        channel = info.get("channel", "")
        notice = OutboundMessage(
            msg("staff.returned") if owner is Owner.BOT else msg("staff.closed"), role="system", kind="staff_notice"
        )
        await self.desk.hand_back(key, actor, owner, None)
        try:
            await self.deliver(key, channel, [notice])
            if owner is Owner.BOT and resume is not None:
                reply = await self.rasa.send(key, f"/{resume}", {"channel": channel, "resumed_by": "staff"})
                if reply.messages:
                    await self.deliver(key, channel, reply.messages)
        except CannotSend:  # an opted-out number: handed back all the same, and not texted
            pass

    async def claim(self, key: str, actor: Actor) -> dict[str, Any]:
        """Claim (one winner; channels/staff/desk.py) and tell the patient who has joined."""
        result = await self.desk.claim(key, actor)
        await self._joined(key, actor)
        return result

    async def transfer(self, key: str, actor: Actor, to: Actor) -> None:
        await self.desk.transfer(key, actor, to)
        await self._joined(key, to)

    async def _joined(self, key: str, who: Actor) -> None:
        info = await self.desk.info(key)
        notice = OutboundMessage(msg("staff.joined", name=who.name), role="system", kind="staff_notice")
        try:
            await self.deliver(key, info.get("channel", ""), [notice])
        except CannotSend:  # an opted-out number: the agent sees that on the conversation itself
            pass

    async def typing(self, key: str, actor: Actor) -> None:
        await self.desk.check_assignee(key, actor)
        await self.desk.store.publish(key, {"type": "typing", "name": actor.name})


def mask(number: str | None) -> str | None:
    """An SMS number as agents see it: the last four digits only."""
    if not number:
        return None
    digits = re.sub(r"\D", "", number)
    return "•••-•••-" + digits[-4:] if len(digits) >= 4 else "••••"


def _visible(item: dict[str, Any]) -> dict[str, Any]:
    keep = ("role", "text", "buttons", "ts", "seq", "sender", "kind")
    return {k: item[k] for k in keep if k in item}


def packet(info: dict[str, Any], transcript: list[dict[str, Any]], item: dict[str, Any]) -> dict[str, Any]:
    """The hand-off packet pinned above the transcript: why, what fired, what triage found, what the
    assistant already answered, the channel and the wait."""
    try:
        summary = json.loads(info.get("summary") or "{}")
    except ValueError:
        summary = {}
    triage = {
        k: summary[k] for k in ("complaint", "level", "answers", "reasons", "sources") if summary.get(k) is not None
    }
    answers = [
        {"text": m.get("text", "")[:400], "sources": _CITED.findall(m.get("text", ""))}
        for m in transcript
        if m.get("role") == "bot" and _CITED.search(m.get("text", ""))
    ]
    return {
        "reason": info.get("reason", ""),
        "priority": item["priority"],
        "rules": summary.get("rules", []),
        "safety": {k: summary[k] for k in ("outcome", "category") if summary.get(k)},
        "triage": triage,
        "recent_intents": summary.get("recent_intents", []),
        "answers_given": answers[-5:],
        "channel": item["channel"],
        "waiting_seconds": item["waiting_seconds"],
        "callback": item["callback"],
        "alert": info.get("alert"),
    }
