"""The gateway pipeline: normalise → dedupe → safety screen → route by owner → Rasa → replies.

Channels verify their own requests (signatures, tokens) before calling `Gateway.handle`, and
deliver the returned replies through their outbound adapter.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from channels.errors import DuplicateInProgress, InvalidMessage, MessageTooLong, UpstreamUnavailable
from channels.messages import InboundMessage, OutboundMessage
from channels.pseudonym import conversation_key
from channels.rasa_client import RasaClient
from channels.safety import RedFlagScreen, SafetyScreen, ScreenResult
from channels.store import ConversationStore, Owner

log = logging.getLogger(__name__)

EMERGENCY_LINE = "If this is an emergency, call 911 now. For a mental health crisis, call or text 988."

HOLDING_MESSAGE = OutboundMessage(
    f"Thanks. A member of our team will reply here as soon as they can. {EMERGENCY_LINE}", role="system")
FAIL_CLOSED_MESSAGE = OutboundMessage(
    "Sorry, I can't answer right now, so I've passed your message to our staff, who will reply here. "
    f"{EMERGENCY_LINE}", role="system")
SCREEN_FAILED_MESSAGE = OutboundMessage(
    f"Sorry, I couldn't check your message safely, so I've passed it to our staff. {EMERGENCY_LINE}",
    role="system")

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t]+")


def normalise_text(text: Any, max_chars: int) -> str:
    """NFC, no control characters, trimmed; raises a named error on empty or over-long input."""
    if not isinstance(text, str):
        raise InvalidMessage("text must be a string")
    text = _CONTROL_CHARS.sub("", unicodedata.normalize("NFC", text))
    text = _SPACES.sub(" ", text).strip()
    if not text:
        raise InvalidMessage("text must not be empty")
    if len(text) > max_chars:
        raise MessageTooLong(f"text is longer than {max_chars} characters")
    return text


@dataclass
class HandleResult:
    conversation_key: str
    owner: Owner
    replies: list[OutboundMessage]
    duplicate: bool = False


class Gateway:
    def __init__(self, store: ConversationStore, rasa: RasaClient, secret: str,
                 screen: SafetyScreen | None = None, max_message_chars: int = 2000, audit=None):
        self.store = store
        self.rasa = rasa
        self.secret = secret
        self.screen = screen if screen is not None else RedFlagScreen()
        self.max_message_chars = max_message_chars
        self.audit = audit

    def key_for(self, channel: str, address: str) -> str:
        return conversation_key(self.secret, channel, address)

    async def handle(self, message: InboundMessage) -> HandleResult:
        text = normalise_text(message.text, self.max_message_chars)
        message = InboundMessage(message.channel, message.address, text, message.message_id, message.metadata)
        key = self.key_for(message.channel, message.address)
        owner = await self.store.ensure(key, message.channel, message.address)

        if message.message_id:
            claimed, previous = await self.store.claim(key, message.message_id)
            if not claimed:
                if previous is None:
                    raise DuplicateInProgress()
                log.info("duplicate conversation=%s replayed=%d", key, len(previous))
                return HandleResult(key, owner, previous, duplicate=True)
        try:
            replies, owner = await self._process(key, owner, message)
        except BaseException:
            if message.message_id:
                await self.store.release(key, message.message_id)
            raise
        if message.message_id:
            await self.store.complete(key, message.message_id, replies)
        return HandleResult(key, owner, replies)

    async def _process(self, key: str, owner: Owner, message: InboundMessage) -> tuple[list[OutboundMessage], Owner]:
        await self.store.append(key, "user", text=message.text)

        result = await self._screen(key, message)
        notices: list[OutboundMessage] = []
        if result is not None:
            before = owner
            if result.escalate:
                reason = f"safety:{result.rule}"
                if owner is Owner.STAFF:  # staff keep the conversation; it is flagged to them at top priority
                    await self.store.flag(key, priority=result.outcome, reason=reason)
                else:
                    owner = Owner.WAITING_FOR_STAFF
                    await self.store.set_owner(key, owner, reason=reason, priority=result.outcome,
                                               summary={"reason": reason, "outcome": result.outcome,
                                                        "category": result.category, "rules": list(result.rules)})
                log.warning("safety screen hit conversation=%s outcome=%s rules=%s", key, result.outcome, result.rule)
            await self._audit(key, message, result, before, owner)
            if not result.proceed:
                await self.store.append(key, "system", list(result.replies))
                return list(result.replies), owner
            notices = list(result.replies)

        replies, owner = await self._route(key, owner, message)
        if notices:
            await self.store.append(key, "system", notices)
        return replies + notices, owner

    async def _audit(self, key: str, message: InboundMessage, result: ScreenResult, before: Owner, after: Owner) -> None:
        if self.audit is None:
            return
        action = ("advised" if not result.escalate else
                  "flagged_to_staff" if after is Owner.STAFF else "escalated")
        try:
            await self.audit.record(conversation=key, channel=message.channel, outcome=result.outcome,
                                    category=result.category, rules=list(result.rules) or [result.rule],
                                    owner_before=before.value, owner_after=after.value, action=action)
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
            replies = [] if await self._holding_sent(key) else [HOLDING_MESSAGE]
            await self.store.append(key, "system", replies)
            return replies, owner

        try:
            reply = await self.rasa.send(key, message.text, {"channel": message.channel, **message.metadata})
        except UpstreamUnavailable:
            log.error("rasa unavailable conversation=%s: failing closed to staff", key)
            owner = Owner.WAITING_FOR_STAFF
            await self.store.set_owner(key, owner, reason="assistant_unavailable")
            await self.store.append(key, "system", [FAIL_CLOSED_MESSAGE])
            return [FAIL_CLOSED_MESSAGE], owner

        for control in reply.controls:
            owner = await self._apply_control(key, owner, control)
        await self.store.append(key, "bot", reply.messages)
        log.info("answered conversation=%s replies=%d owner=%s", key, len(reply.messages), owner.value)
        return reply.messages, owner

    async def _screen(self, key: str, message: InboundMessage) -> ScreenResult | None:
        try:
            return await self.screen.screen(message)
        except Exception:  # fail closed: a broken screen must never let a message through unchecked
            log.exception("safety screen failed conversation=%s", key)
            return ScreenResult(rule="screen_error", replies=(SCREEN_FAILED_MESSAGE,), escalate=True,
                                outcome="screen_error")

    async def _holding_sent(self, key: str) -> bool:
        transcript = await self.store.transcript(key)
        for item in reversed(transcript):
            if item.get("role") in ("bot", "staff"):
                return False
            if item.get("text") == HOLDING_MESSAGE.text:
                return True
        return False

    async def _apply_control(self, key: str, owner: Owner, control: dict[str, Any]) -> Owner:
        handoff = control.get("handoff")
        if handoff:
            reason = str(handoff.get("reason", "unspecified")) if isinstance(handoff, dict) else str(handoff)
            summary = handoff.get("summary") if isinstance(handoff, dict) else None
            priority = str(handoff.get("priority") or "normal") if isinstance(handoff, dict) else "normal"
            log.info("handoff conversation=%s reason=%s priority=%s", key, reason, priority)
            await self.store.set_owner(key, Owner.WAITING_FOR_STAFF, reason=reason, summary=summary, priority=priority)
            return Owner.WAITING_FOR_STAFF
        close = control.get("close")
        if close:
            log.info("closed conversation=%s reason=%s", key, close)
            await self.store.set_owner(key, Owner.CLOSED, reason=str(close))
            return Owner.CLOSED
        return owner

