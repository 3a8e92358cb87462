"""Short SMS replies to the schedule's texts: C / CONFIRM, R / RESCHEDULE, X to a reminder, and
YES / Y, NO / N to a waitlist offer.

The scheduling worker (careline/scheduling/worker.py) keeps, per number it texted, what the last
reminder or offer was (`<prefix>:sched:last:<conversation key>`). A message whose whole text is
one of these words, in a conversation the bot owns that has such a key, is answered here:

- C: the appointment is confirmed (Scheduler.confirm) and the patient told so;
- YES: the offer is accepted (careline/scheduling/waitlist.py: the first YES gets the slot);
- NO: the offer is declined (the patient stays on the waitlist);
- R and X go on to the assistant as `/reschedule_appointment{"appointment_id": "<id>"}` or
  `/cancel_appointment{...}`: the conversation checks that the appointment belongs to the
  sender's number and walks the patient through it.

Anything else goes to the assistant as before. CANCEL is not one of these words: it is a carrier
opt-out keyword, handled (as STOP) before a message gets here. The gateway calls this after the
safety screen (channels/pipeline.py, Gateway._route), so every message is screened first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from careline.scheduling import waitlist
from careline.scheduling.model import Appointment, BackendUnavailable, NotAllowed, NotFound, Scheduler
from careline.scheduling.reminders import describe_when
from channels.errors import STATE_ERRORS
from channels.messages import OutboundMessage
from channels.sms_text import normalise_keyword
from knowledge.messages import msg

log = logging.getLogger(__name__)

TO_REMINDER = {"C": "confirm", "CONFIRM": "confirm", "R": "reschedule", "RESCHEDULE": "reschedule", "X": "cancel"}
TO_OFFER = {"YES": "yes", "Y": "yes", "NO": "no", "N": "no"}


class ScheduleReplies:
    def __init__(
        self,
        redis,
        engine,
        scheduler: Scheduler,
        prefix: str = "careline",
        clinic_tz: str = "America/New_York",
        clinic_phone: str = "",
        clinic_name: str | None = None,
    ):
        self.redis, self.engine, self.scheduler = redis, engine, scheduler
        self.prefix = prefix
        self.tz = ZoneInfo(clinic_tz)
        self.clinic_phone = clinic_phone
        self.clinic_name = clinic_name

    def _key(self, conversation: str) -> str:
        return f"{self.prefix}:sched:last:{conversation}"

    async def answer(self, conversation: str, text: str, now: datetime | None = None) -> tuple[list, str]:
        """(replies, text): replies when the message was answered here; else none, and the text
        for the assistant (the message as it came, or R / X as the payload naming the appointment)."""
        word = normalise_keyword(text)
        if word not in TO_REMINDER and word not in TO_OFFER:
            return [], text
        last = await self._last(conversation)
        if last is None:
            return [], text
        if last.get("kind") == "reminder" and word in TO_REMINDER and last.get("appointment_id"):
            return await self._reminder(TO_REMINDER[word], str(last["appointment_id"]), text, conversation)
        if last.get("kind") == "offer" and word in TO_OFFER and last.get("offer_id"):
            return await self._offer(TO_OFFER[word], str(last["offer_id"]), text, conversation, now)
        return [], text

    async def _last(self, conversation: str) -> dict | None:
        try:
            raw = await self.redis.get(self._key(conversation))
        except STATE_ERRORS as exc:
            log.warning("schedule reply context unreadable conversation=%s error=%s", conversation, type(exc).__name__)
            return None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    async def _forget(self, conversation: str) -> None:
        try:
            await self.redis.delete(self._key(conversation))
        except STATE_ERRORS:
            pass  # a later YES is answered from the offer's own state

    def _say(self, key: str, **params) -> list[OutboundMessage]:
        return [OutboundMessage(msg(key, **params) if params else msg(key))]

    def _unavailable(self) -> list[OutboundMessage]:
        return [OutboundMessage(msg("scheduling.reply.unavailable", clinic_phone=self.clinic_phone))]

    async def _reminder(self, action: str, appointment_id: str, text: str, conversation: str) -> tuple[list, str]:
        if action in ("reschedule", "cancel"):
            log.info("reminder reply conversation=%s action=%s", conversation, action)
            return [], f"/{action}_appointment" + json.dumps({"appointment_id": appointment_id})
        try:
            appointment = await asyncio.to_thread(self.scheduler.confirm, appointment_id)
        except (NotAllowed, NotFound):
            return self._say("scheduling.reply.not_active"), text
        except BackendUnavailable:
            return self._unavailable(), text
        log.info("reminder reply conversation=%s action=confirm appointment=%s", conversation, appointment.id)
        return self._say("scheduling.reply.confirmed", when=describe_when(appointment.start, self.tz)), text

    async def _offer(self, action: str, offer_id: str, text: str, conversation: str, now) -> tuple[list, str]:
        try:
            if action == "no":
                status = await asyncio.to_thread(waitlist.decline_offer, self.engine, offer_id, now)
                replies = self._declined(status)
            else:
                result = await asyncio.to_thread(
                    waitlist.accept_offer, self.engine, self.scheduler, offer_id, now, self.clinic_name
                )
                replies = self._accepted(result)
        except BackendUnavailable:
            return self._unavailable(), text
        log.info("offer reply conversation=%s action=%s offer=%s", conversation, action, offer_id)
        await self._forget(conversation)
        return replies, text

    def _declined(self, status: str) -> list[OutboundMessage]:
        if status == "gone":
            return self._say("scheduling.reply.offer_gone")
        if status in ("expired", "not_found"):
            return self._say("scheduling.reply.offer_expired")
        return self._say("scheduling.reply.offer_declined")

    def _accepted(self, result: waitlist.AcceptResult) -> list[OutboundMessage]:
        if result.outcome == "lost":
            return self._say("scheduling.reply.offer_gone")
        if result.outcome != "won":
            return self._say("scheduling.reply.offer_expired")
        appointment: Appointment | None = result.appointment
        if appointment is None:  # a second YES to an offer this patient took: the assistant answers it
            return []
        params = {
            "when": describe_when(appointment.start, self.tz),
            "provider": appointment.provider_name,
            "location": appointment.location_name,
        }
        if result.replaced_id:
            return self._say("scheduling.reply.offer_moved", **params)
        return self._say("scheduling.reply.offer_won", **params)
