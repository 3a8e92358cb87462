"""The gateway pipeline: normalise → safety screen → state (owner, dedupe) → route by owner →
Rasa → replies.

The screen runs first and needs no state: when Redis or SQL fail or hang, a flagged message still
gets its emergency reply and any other message gets StoreUnavailable (the emergency numbers and
"try again"), never silence. Channels verify their own requests (signatures, tokens) before
calling `Gateway.handle`, and deliver the returned replies through their outbound adapter.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careline.contracts import Control, Handoff, NextPage
from channels.errors import (
    STATE_ERRORS,
    CareLineError,
    DuplicateInProgress,
    IdempotencyConflict,
    InvalidMessage,
    MessageTooLong,
    StoreUnavailable,
    UpstreamUnavailable,
)
from channels.messages import AWAY, HOLDING, InboundMessage, OutboundMessage
from channels.pseudonym import conversation_key
from channels.rasa_client import RasaClient
from channels.safety import RedFlagScreen, SafetyScreen, ScreenOutcome, ScreenResult
from channels.store import ConversationStore, Owner, digest
from knowledge.messages import msg

log = logging.getLogger(__name__)


def holding_message() -> OutboundMessage:
    """While the conversation waits for staff: said once, then staff answer."""
    return OutboundMessage(msg("gateway.holding"), role="system", kind=HOLDING)


def fail_closed_message() -> OutboundMessage:
    """Rasa or the action server failed or said nothing: the emergency numbers and a person."""
    return OutboundMessage(msg("gateway.fail_closed"), role="system")


def screen_failed_message() -> OutboundMessage:
    return OutboundMessage(msg("gateway.screen_failed"), role="system")


def describe_opening(opening: datetime) -> str:
    """When staffed hours begin, as a patient reads it in the clinic's time zone: "today at 8:00 AM",
    "tomorrow at 8:00 AM", "Monday at 8:00 AM"."""
    now = datetime.now(opening.tzinfo)
    ahead = (opening.date() - now.date()).days
    day = "today" if ahead == 0 else "tomorrow" if ahead == 1 else opening.strftime("%A")
    return f"{day} at {opening.strftime('%I:%M %p').lstrip('0')}"


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t]+")


def normalise_text(text: Any, max_chars: int | None) -> str:
    """NFC, no control characters, trimmed; raises a named error on empty or over-long input
    (`max_chars` None: no length check)."""
    if not isinstance(text, str):
        raise InvalidMessage(msg("errors.text_not_a_string"))
    text = _CONTROL_CHARS.sub("", unicodedata.normalize("NFC", text))
    text = _SPACES.sub(" ", text).strip()
    if not text:
        raise InvalidMessage(msg("errors.text_empty"))
    if max_chars is not None and len(text) > max_chars:
        raise MessageTooLong(msg("errors.text_too_long", limit=max_chars))
    return text


@dataclass
class HandleResult:
    conversation_key: str
    owner: Owner
    replies: list[OutboundMessage]
    duplicate: bool = False
    degraded: bool = False  # the state stores were down: an emergency reply without state


class Gateway:
    def __init__(
        self,
        store: ConversationStore,
        rasa: RasaClient,
        secret: str,
        screen: SafetyScreen | None = None,
        max_message_chars: int = 2000,
        audit=None,
        cipher=None,
        pager=None,
        shift=None,
    ):
        self.store = store
        self.rasa = rasa
        self.secret = secret
        self.screener = screen if screen is not None else RedFlagScreen()
        self.max_message_chars = max_message_chars
        self.audit = audit
        self.cipher = cipher  # encrypts the one address kept at rest: an SMS number, needed to reply
        self.pager = pager  # channels.paging.Pager: the kept pages of SMS replies
        self.shift = shift  # channels.staff.shifts.Shift: is anyone on shift to take a hand-off
        self.schedule_replies = None  # channels.schedule_replies.ScheduleReplies: C/R/X/YES/NO to the schedule's SMS

    def key_for(self, channel: str, address: str) -> str:
        return conversation_key(self.secret, channel, address)

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        """The safety screen alone, for a channel that cannot reach the state stores. Never raises."""
        return await self._screen(self.key_for(message.channel, message.address), message)

    async def record_reply_without_state(self, message: InboundMessage, result: ScreenResult) -> None:
        """A channel answered a flagged message with its emergency reply while the state stores were
        down: the audit trail still records it (if SQL is up)."""
        await self._audit(self.key_for(message.channel, message.address), message, result, None, None)

    async def handle(self, message: InboundMessage) -> HandleResult:
        text = normalise_text(message.text, None)
        message = InboundMessage(
            message.channel, message.address, text, message.message_id, message.metadata, message.dedupe_text
        )
        key = self.key_for(message.channel, message.address)
        result = await self._screen(key, message)
        flagged = result is not None and result.escalate
        if len(text) > self.max_message_chars and not flagged:
            # too long to answer, but screened all the same: a crisis is never told "too long"
            raise MessageTooLong(msg("errors.text_too_long", limit=self.max_message_chars))
        try:
            return await self._handle_with_state(key, message, result)
        except CareLineError:
            raise
        except Exception as exc:  # a flagged message gets its emergency reply whatever else failed
            log.error("turn failed conversation=%s error=%s", key, type(exc).__name__)
            if flagged:
                await self._audit(key, message, result, None, None)
                return HandleResult(key, Owner.WAITING_FOR_STAFF, list(result.replies), degraded=True)
            raise StoreUnavailable() from exc

    def _address_at_rest(self, message: InboundMessage) -> str | None:
        if message.channel == "sms" and self.cipher is not None:
            return self.cipher.encrypt(message.address)
        return None

    async def _handle_with_state(self, key: str, message: InboundMessage, result: ScreenResult | None) -> HandleResult:
        owner = await self.store.ensure(key, message.channel, self._address_at_rest(message))
        text_digest = digest(message.dedupe_text or message.text)
        if message.message_id:
            claim = await self.store.claim(key, message.message_id, text_digest)
            if claim.conflict:
                # The key was first used for another message. This one is still screened and acted on.
                log.warning("idempotency conflict conversation=%s", key)
                flagged = result is not None and result.escalate
                replies = list(result.replies) if flagged else []
                if flagged:
                    await self.store.append(key, "user", text=message.text)
                    owner, away = await self._act_on_screen(key, owner, message, result)
                    replies += away
                    await self.store.append(key, "system", replies)
                raise IdempotencyConflict(replies=replies)
            if not claim.claimed:
                if claim.previous is None:
                    raise DuplicateInProgress()
                log.info("duplicate conversation=%s replayed=%d", key, len(claim.previous))
                return HandleResult(key, owner, claim.previous, duplicate=True)
        try:
            replies, owner = await self._process(key, owner, message, result)
        except BaseException:
            if message.message_id:
                try:
                    await self.store.release(key, message.message_id)
                except STATE_ERRORS:
                    log.error("idempotency claim not released conversation=%s", key)
            raise
        if message.message_id:
            await self.store.complete(key, message.message_id, text_digest, replies)
        return HandleResult(key, owner, replies)

    async def _act_on_screen(
        self, key: str, owner: Owner, message: InboundMessage, result: ScreenResult
    ) -> tuple[Owner, list[OutboundMessage]]:
        """A flagged message: the conversation goes to staff at top priority (or, if staff own it,
        they are alerted), and the audit trail records it. Returns the owner and any notice for
        the patient (nobody on shift)."""
        before = owner
        notices: list[OutboundMessage] = []
        if result.escalate:
            # staff who hold it at this moment keep it and are alerted; otherwise it is queued for
            # staff at top priority: decided and written in one transaction (store.escalate)
            reason = f"safety:{result.rule}"
            summary = {
                "reason": reason,
                "outcome": result.outcome,
                "category": result.category,
                "rules": list(result.rules),
            }
            notice = await self._off_shift_notice()  # before: whether to queue it as a call-back
            owner = await self.store.escalate(key, reason, summary, result.outcome, callback=bool(notice))
            notices = [notice] if notice is not None and owner is Owner.WAITING_FOR_STAFF else []
            log.warning("safety screen hit conversation=%s outcome=%s rules=%s", key, result.outcome, result.rule)
        await self._audit(key, message, result, before, owner)
        return owner, notices

    async def _to_staff(self, key: str, reason: str, summary: dict | None, priority: str) -> list[OutboundMessage]:
        """Queue the conversation for staff; when nobody is on shift, it is a call-back request and
        the patient is told honestly when to expect a reply (with the emergency numbers)."""
        notice = await self._off_shift_notice()
        await self.store.set_owner(
            key, Owner.WAITING_FOR_STAFF, reason=reason, summary=summary, priority=priority, callback=bool(notice)
        )
        return [notice] if notice else []

    async def _off_shift_notice(self) -> OutboundMessage | None:
        if self.shift is None:
            return None
        try:
            staffed, opening = await self.shift.staffed()
        except Exception as exc:  # unknown: say nothing more than the holding message already says
            log.error("staff presence unavailable error=%s", type(exc).__name__)
            return None
        if staffed:
            return None
        if opening is None:
            return OutboundMessage(msg("staff.nobody_online"), role="system", kind=AWAY)
        return OutboundMessage(
            msg("staff.after_hours", when=describe_opening(opening), clinic_phone=self.shift.clinic_phone),
            role="system",
            kind=AWAY,
        )

    async def _process(
        self, key: str, owner: Owner, message: InboundMessage, result: ScreenResult | None
    ) -> tuple[list[OutboundMessage], Owner]:
        await self.store.append(key, "user", text=message.text)
        notices: list[OutboundMessage] = []
        if result is not None:
            owner, away = await self._act_on_screen(key, owner, message, result)
            if not result.proceed:
                replies = list(result.replies) + away
                await self.store.append(key, "system", replies)
                return replies, owner
            notices = list(result.replies) + away

        replies, owner = await self._route(key, owner, message)
        if notices:
            await self.store.append(key, "system", notices)
        return replies + notices, owner

    async def _audit(
        self, key: str, message: InboundMessage, result: ScreenResult, before: Owner | None, after: Owner | None
    ) -> None:
        """`before`/`after` None: the state stores were down, the emergency reply went out without state."""
        if self.audit is None:
            return
        action = (
            "advised"
            if not result.escalate
            else "replied_store_down"
            if after is None
            else "flagged_to_staff"
            if after is Owner.STAFF
            else "escalated"
        )
        try:
            # bounded: a hanging SQL server must not hold up the patient's emergency message
            await asyncio.wait_for(
                self.audit.record(
                    conversation=key,
                    channel=message.channel,
                    outcome=result.outcome,
                    category=result.category,
                    rules=list(result.rules) or [result.rule],
                    owner_before=before.value if before else "unknown",
                    owner_after=after.value if after else "unknown",
                    action=action,
                ),
                timeout=3.0,
            )
        except Exception:  # the patient's safety message must go out even if the audit store is down
            log.exception("safety audit write failed conversation=%s", key)

    async def _route(self, key: str, owner: Owner, message: InboundMessage) -> tuple[list[OutboundMessage], Owner]:

        if owner is Owner.CLOSED:
            owner = Owner.BOT
            await self.store.set_owner(key, owner, reason="reopened")
        if owner is Owner.STAFF:
            log.info("routed conversation=%s to=staff", key)
            return [], owner
        if owner is Owner.WAITING_FOR_STAFF:
            log.info("routed conversation=%s to=staff_queue", key)
            replies = [] if await self._holding_sent(key) else [holding_message()]
            await self.store.append(key, "system", replies)
            return replies, owner

        text = message.text
        if self.schedule_replies is not None and message.channel == "sms":  # after the screen, bot-owned only
            answered, text = await self.schedule_replies.answer(key, text)
            if answered:
                await self.store.append(key, "bot", answered)
                return answered, owner
        try:
            reply = await self.rasa.send(key, text, {"channel": message.channel, **message.metadata})
        except UpstreamUnavailable:
            log.error("rasa unavailable conversation=%s: failing closed to staff", key)
            return await self._fail_closed(key, "assistant_unavailable")
        if not reply.messages and not reply.controls:
            # Rasa answered but said nothing (the action server is down, an action failed): a patient
            # must never be left in silence.
            log.error("assistant gave no reply conversation=%s: failing closed to staff", key)
            return await self._fail_closed(key, "assistant_silent")

        away: list[OutboundMessage] = []
        for control in reply.controls:
            owner, notices = await self._apply_control(key, control, owner)
            away += notices
        messages = reply.messages
        if any(isinstance(control, NextPage) for control in reply.controls):
            messages = await self._next_page(key) or messages
        if not messages and owner is Owner.WAITING_FOR_STAFF:
            messages = [holding_message()]
        await self.store.append(key, "bot", messages)
        await self.store.append(key, "system", away)
        messages = messages + away
        log.info("answered conversation=%s replies=%d owner=%s", key, len(messages), owner.value)
        return messages, owner

    async def _fail_closed(self, key: str, reason: str) -> tuple[list[OutboundMessage], Owner]:
        away = await self._to_staff(key, reason, None, "normal")
        messages = [fail_closed_message(), *away]
        await self.store.append(key, "system", messages)
        return messages, Owner.WAITING_FOR_STAFF

    async def _screen(self, key: str, message: InboundMessage) -> ScreenResult | None:
        try:
            return await self.screener.screen(message)
        except Exception as exc:  # fail closed: a message that was not screened is never let through
            log.error("safety screen failed conversation=%s error=%s", key, type(exc).__name__)
            return ScreenResult(
                rule="screen_error",
                replies=(screen_failed_message(),),
                escalate=True,
                outcome=ScreenOutcome.SCREEN_ERROR,
            )

    async def _holding_sent(self, key: str) -> bool:
        """Was the holding message said since the bot or staff last spoke? Known by its kind, so a
        reworded or translated one still counts; an item kept before kinds existed, by its text."""
        transcript = await self.store.transcript(key)
        for item in reversed(transcript):
            if item.get("role") in ("bot", "staff") and "scheduled" not in item:  # not a reminder the worker texted
                return False
            if item.get("kind") == HOLDING or ("kind" not in item and item.get("text") == msg("gateway.holding")):
                return True
        return False

    async def _next_page(self, key: str) -> list[OutboundMessage] | None:
        """The kept pages of a paged SMS reply, as this turn's reply (the channel sends the first)."""
        rest = await self.pager.rest(key) if self.pager is not None else None
        return [OutboundMessage(rest)] if rest else None

    async def _apply_control(self, key: str, control: Control, owner: Owner) -> tuple[Owner, list[OutboundMessage]]:
        """What an action asked for (careline.contracts, read by the Rasa client), and any notice."""
        if isinstance(control, NextPage):
            return owner, []
        if isinstance(control, Handoff):
            log.info("handoff conversation=%s reason=%s priority=%s", key, control.reason, control.priority)
            away = await self._to_staff(key, control.reason, control.summary, control.priority)
            return Owner.WAITING_FOR_STAFF, away
        log.info("closed conversation=%s reason=%s", key, control.reason)
        await self.store.set_owner(key, Owner.CLOSED, reason=control.reason)
        return Owner.CLOSED, []
