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
from channels.messages import HOLDING, InboundMessage, OutboundMessage
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
    ):
        self.store = store
        self.rasa = rasa
        self.secret = secret
        self.screener = screen if screen is not None else RedFlagScreen()
        self.max_message_chars = max_message_chars
        self.audit = audit
        self.cipher = cipher  # encrypts the one address kept at rest: an SMS number, needed to reply
        self.pager = pager  # channels.paging.Pager: the kept pages of SMS replies

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
                if flagged:
                    await self.store.append(key, "user", text=message.text)
                    owner = await self._act_on_screen(key, owner, message, result)
                    await self.store.append(key, "system", list(result.replies))
                raise IdempotencyConflict(replies=list(result.replies) if flagged else [])
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

    async def _act_on_screen(self, key: str, owner: Owner, message: InboundMessage, result: ScreenResult) -> Owner:
        """A flagged message: the conversation goes to staff at top priority (or, if staff own it,
        they are alerted), and the audit trail records it."""
        before = owner
        if result.escalate:
            reason = f"safety:{result.rule}"
            if owner is Owner.STAFF:  # staff keep the conversation; it is flagged to them at top priority
                await self.store.flag(key, priority=result.outcome, reason=reason)
            else:
                owner = Owner.WAITING_FOR_STAFF
                await self.store.set_owner(
                    key,
                    owner,
                    reason=reason,
                    priority=result.outcome,
                    summary={
                        "reason": reason,
                        "outcome": result.outcome,
                        "category": result.category,
                        "rules": list(result.rules),
                    },
                )
            log.warning("safety screen hit conversation=%s outcome=%s rules=%s", key, result.outcome, result.rule)
        await self._audit(key, message, result, before, owner)
        return owner

    async def _process(
        self, key: str, owner: Owner, message: InboundMessage, result: ScreenResult | None
    ) -> tuple[list[OutboundMessage], Owner]:
        await self.store.append(key, "user", text=message.text)
        notices: list[OutboundMessage] = []
        if result is not None:
            owner = await self._act_on_screen(key, owner, message, result)
            if not result.proceed:
                await self.store.append(key, "system", list(result.replies))
                return list(result.replies), owner
            notices = list(result.replies)

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

        try:
            reply = await self.rasa.send(key, message.text, {"channel": message.channel, **message.metadata})
        except UpstreamUnavailable:
            log.error("rasa unavailable conversation=%s: failing closed to staff", key)
            return await self._fail_closed(key, "assistant_unavailable")
        if not reply.messages and not reply.controls:
            # Rasa answered but said nothing (the action server is down, an action failed): a patient
            # must never be left in silence.
            log.error("assistant gave no reply conversation=%s: failing closed to staff", key)
            return await self._fail_closed(key, "assistant_silent")

        for control in reply.controls:
            owner = await self._apply_control(key, control, owner)
        messages = reply.messages
        if any(isinstance(control, NextPage) for control in reply.controls):
            messages = await self._next_page(key) or messages
        if not messages and owner is Owner.WAITING_FOR_STAFF:
            messages = [holding_message()]
        await self.store.append(key, "bot", messages)
        log.info("answered conversation=%s replies=%d owner=%s", key, len(messages), owner.value)
        return messages, owner

    async def _fail_closed(self, key: str, reason: str) -> tuple[list[OutboundMessage], Owner]:
        owner = Owner.WAITING_FOR_STAFF
        await self.store.set_owner(key, owner, reason=reason)
        message = fail_closed_message()
        await self.store.append(key, "system", [message])
        return [message], owner

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
            if item.get("role") in ("bot", "staff"):
                return False
            if item.get("kind") == HOLDING or ("kind" not in item and item.get("text") == msg("gateway.holding")):
                return True
        return False

    async def _next_page(self, key: str) -> list[OutboundMessage] | None:
        """The kept pages of a paged SMS reply, as this turn's reply (the channel sends the first)."""
        rest = await self.pager.rest(key) if self.pager is not None else None
        return [OutboundMessage(rest)] if rest else None

    async def _apply_control(self, key: str, control: Control, owner: Owner) -> Owner:
        """What an action asked for (careline.contracts, read by the Rasa client)."""
        if isinstance(control, NextPage):
            return owner
        if isinstance(control, Handoff):
            log.info("handoff conversation=%s reason=%s priority=%s", key, control.reason, control.priority)
            await self.store.set_owner(
                key, Owner.WAITING_FOR_STAFF, reason=control.reason, summary=control.summary, priority=control.priority
            )
            return Owner.WAITING_FOR_STAFF
        log.info("closed conversation=%s reason=%s", key, control.reason)
        await self.store.set_owner(key, Owner.CLOSED, reason=control.reason)
        return Owner.CLOSED
