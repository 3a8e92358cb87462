"""The shared kernel: what the action server and the gateway say to each other, defined once.

Actions never change a conversation's owner themselves: they send a control payload
(`{"careline": {"handoff": {...}}}` or `{"careline": {"close": ...}}`) built by `to_payload()`, and
the gateway applies what `parse_control` reads from it. A long SMS answer travels as pages joined
by PAGE_BREAK; the gateway sends one page a turn (channels/paging.py).

Standard library only: both services import it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "careline"  # the key of our payloads among Rasa's custom messages

# Between the pages of one SMS answer; the gateway never sends it (GSM-7's own page break, as it happens).
PAGE_BREAK = "\f"
# Message metadata the gateway sends with an SMS turn: how many characters a page may hold, so the
# action can end every page with its citation and the gateway's "Reply MORE" prompt still fits.
PAGE_CHARS_KEY = "page_chars"


class HandoffReason(StrEnum):
    REQUEST_HUMAN = "request_human"
    TRIAGE_EMERGENCY = "triage:emergency"
    TRIAGE_URGENT = "triage:urgent"
    TRIAGE_ERROR = "triage_error"
    # Scheduling (careline/scheduling/dialogue.py) hands to a person when a patient's change is
    # inside the cancellation cut-off, identity cannot be checked, no urgent slot is free, or the
    # schedule cannot be reached.
    SCHEDULING_CUTOFF = "scheduling:cutoff"
    SCHEDULING_IDENTITY = "scheduling:identity"
    SCHEDULING_NO_SLOT = "scheduling:no_slot"
    SCHEDULING_ERROR = "scheduling_error"
    UNSPECIFIED = "unspecified"  # a payload that names no reason, or one this gateway does not know

    @classmethod
    def triage(cls, level: str) -> HandoffReason:
        """The reason for a triage outcome that escalates (emergency, or urgent with red flags)."""
        return cls(f"triage:{level}")


class Priority(StrEnum):
    """The staff queue's priority (channels/store.py ranks them): the safety screen's outcomes
    first, then urgent triage, then the rest."""

    EMERGENCY = "emergency"
    CRISIS = "crisis"
    SCREEN_ERROR = "screen_error"
    URGENT = "urgent"
    NORMAL = "normal"


class ScreenOutcome(StrEnum):
    """What the safety screen decided about a message (knowledge/triage/redflags.py decides it,
    in the gateway's worker processes; None when there is nothing to act on). An escalating
    outcome is also the staff queue's priority."""

    EMERGENCY = "emergency"  # happening now: the emergency message, and staff at top priority
    CRISIS = "crisis"  # a mental health crisis now: likewise, with 988
    ADVISE = "advise"  # asks about one: the answer goes on, with "if this is happening now, call 911"
    SCREEN_ERROR = "screen_error"  # the gateway's: the screen failed or overran, so it failed closed


class CloseReason(StrEnum):
    OPT_OUT = "opt_out"
    UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class Handoff:
    """Give the conversation to staff, with a summary for them (ids and answers, no message text)."""

    reason: HandoffReason
    priority: Priority = Priority.NORMAL
    summary: dict[str, Any] | None = None

    def to_payload(self) -> dict[str, Any]:
        handoff: dict[str, Any] = {"reason": self.reason.value, "priority": self.priority.value}
        if self.summary is not None:
            handoff["summary"] = self.summary
        return {NAMESPACE: {"handoff": handoff}}


@dataclass(frozen=True)
class Close:
    """Close the conversation: the bot sends nothing more until the patient writes again."""

    reason: CloseReason

    def to_payload(self) -> dict[str, Any]:
        return {NAMESPACE: {"close": self.reason.value}}


@dataclass(frozen=True)
class NextPage:
    """The patient asked for the rest of a paged SMS reply in words the gateway's MORE keyword does
    not cover ("what else?"): the gateway sends the next kept page instead of this turn's reply (the
    action's own reply, sent with this, stands when no page is kept)."""

    def to_payload(self) -> dict[str, Any]:
        return {NAMESPACE: {"next_page": True}}


Control = Handoff | Close | NextPage


def _member(kind: type[StrEnum], value: Any, default: StrEnum, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        log.warning("control payload: unknown %s, using %s", what, default.value)  # the value may be anything
        return default


def _parse_handoff(handoff: Any) -> Handoff:
    """Any hand-off payload hands off (fail closed); what cannot be read takes its default."""
    if not isinstance(handoff, dict):
        log.warning("control payload: a hand-off that is not an object, handed off all the same")
        return Handoff(HandoffReason.UNSPECIFIED)
    reason = _member(
        HandoffReason, handoff.get("reason", HandoffReason.UNSPECIFIED), HandoffReason.UNSPECIFIED, "reason"
    )
    priority = _member(Priority, handoff.get("priority") or Priority.NORMAL, Priority.NORMAL, "priority")
    summary = handoff.get("summary")
    if summary is not None and not isinstance(summary, dict):
        log.warning("control payload: a hand-off summary that is not an object, left out")
        summary = None
    return Handoff(reason, priority, summary)


def parse_control(custom: Any) -> Control | None:
    """The control in one of Rasa's custom messages, or None when it carries none of ours.

    A hand-off wins over a close in the same payload. A payload of ours with neither is logged
    (its keys only) and ignored."""
    if not isinstance(custom, dict) or not isinstance(custom.get(NAMESPACE), dict):
        return None  # not ours: Rasa may carry other custom payloads
    control = custom[NAMESPACE]
    if control.get("handoff") is not None:  # even an empty hand-off hands off (fail closed)
        return _parse_handoff(control["handoff"])
    if control.get("close"):
        return Close(_member(CloseReason, control["close"], CloseReason.UNSPECIFIED, "close reason"))
    if control.get("next_page") is True:
        return NextPage()
    log.warning("control payload ignored: unknown shape keys=%s", sorted(str(k)[:40] for k in control)[:5])
    return None
