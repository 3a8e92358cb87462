"""Appointments as a Rasa form: `scheduling_form` carries one state slot through the book,
cancel, reschedule and "when is my appointment?" conversations. Thin actions: the conversation is
careline/scheduling/dialogue.py, the schedule is careline/scheduling/ (SQL or FHIR). Any failure
fails closed: the patient is told, and a person takes over."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.blocking import built_once, in_thread
from actions.handoff import send_handoff
from actions.knowledge import channel_of
from careline.contracts import HandoffReason, Priority

log = logging.getLogger(__name__)

STATE_SLOT = "sched_state"
ANSWER_SLOT = "sched_answer"
DONE = "done"


@built_once
def conversation():
    """The conversation machine over the configured schedule, built once per process."""
    import redis

    from careline.scheduling import make_scheduler, waitlist
    from careline.scheduling.dialogue import Conversation
    from careline.scheduling.identity import identity_limiter
    from careline.scheduling.otp import OneTimeCodes
    from careline.settings import SchedulingSettings
    from channels.db import make_engine
    from knowledge.triage.engine import default_engine

    secret = os.environ.get("CONVERSATION_SECRET", "")
    if not secret:  # SMS senders could not be matched, calendar links not signed: refuse (fail closed)
        raise RuntimeError("CONVERSATION_SECRET is not set for the action server")
    settings = SchedulingSettings()
    engine = make_engine(os.environ.get("DATABASE_URL"))
    prefix = os.environ.get("REDIS_KEY_PREFIX", "careline")
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=2)
    codes = None  # no SMS channel (no Twilio account): nobody can be sent a code, so staff check identity
    if os.environ.get("TWILIO_ACCOUNT_SID"):
        codes = OneTimeCodes(client, engine, settings, prefix=prefix)
    return Conversation(
        make_scheduler(settings, engine),
        codes,
        default_engine(),
        settings,
        os.environ.get("CLINIC_TIMEZONE", "America/New_York"),
        secret,
        waitlist=lambda patient_id, visit_type, appointment_id: waitlist.join(
            engine, patient_id, visit_type, appointment_id
        ),
        identity_limit=identity_limiter(client, settings.identity_rate_limit, prefix),
    )


def calendar_url(appointment_id: str) -> str:
    """The add-to-calendar link of an appointment (channels/routes/calendar.py serves it)."""
    from careline.scheduling.ics import calendar_token

    base = os.environ.get("PUBLIC_URL") or os.environ.get("PUBLIC_BASE_URL")
    if not base:
        base = f"http://{os.environ.get('GATEWAY_HOST', '127.0.0.1')}:{os.environ.get('GATEWAY_PORT', '8000')}"
    return (
        f"{base.rstrip('/')}/calendar/{calendar_token(os.environ.get('CONVERSATION_SECRET', ''), appointment_id)}.ics"
    )


def context(tracker: Tracker):
    from careline.scheduling.dialogue import Context

    return Context(tracker.sender_id, channel_of(tracker), datetime.now(UTC), calendar_url)


def show(dispatcher: CollectingDispatcher, turn) -> list[dict[str, Any]]:
    """Say the turn's messages, hand off when it asks; the events it sets."""
    for message in turn.messages:
        dispatcher.utter_message(text=message["text"], buttons=message["buttons"] or None)
    if turn.handoff:
        reason, priority, summary = turn.handoff
        send_handoff(dispatcher, reason, priority, summary)
    return [SlotSet("triage_level", turn.triage_level)] if turn.triage_level else []


def fail_closed(dispatcher: CollectingDispatcher, flow: str | None) -> None:
    from knowledge.messages import msg

    log.exception("scheduling failed flow=%s", flow)
    dispatcher.utter_message(text=msg("scheduling.unavailable"))
    send_handoff(
        dispatcher, HandoffReason.SCHEDULING_ERROR, Priority.NORMAL, {"reason": "scheduling_error", "flow": flow}
    )


def flow_of(tracker: Tracker) -> str:
    from careline.scheduling.dialogue import BOOK, FLOWS

    intent = (tracker.latest_message.get("intent") or {}).get("name")
    return FLOWS.get(intent, BOOK)


def entities_of(tracker: Tracker) -> dict[str, Any]:
    return {e.get("entity"): e.get("value") for e in tracker.latest_message.get("entities") or [] if e.get("entity")}


class ActionAskSchedAnswer(Action):
    """The form's first turn reads the opening message; later turns were answered by the
    validation action already, so it says nothing."""

    def name(self) -> str:
        return "action_ask_sched_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        return await in_thread(self.start, dispatcher, tracker)

    def start(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> list:
        if tracker.get_slot(STATE_SLOT) is not None:
            return []
        flow = flow_of(tracker)
        text = tracker.latest_message.get("text") or ""
        # A triage level counts only when the patient tapped "Book" on the triage outcome just now.
        level = tracker.get_slot("triage_level") if text.startswith("/book_appointment") else None
        try:
            state, turn = conversation().start(flow, text, context(tracker), entities_of(tracker), level)
        except Exception:
            fail_closed(dispatcher, flow)
            return end_events()
        events = show(dispatcher, turn)
        if state is None:
            return events + end_events()
        return events + [SlotSet(STATE_SLOT, state)]


def end_events() -> list[dict[str, Any]]:
    return [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet(STATE_SLOT, None), SlotSet(ANSWER_SLOT, None)]


class ValidateSchedulingForm(FormValidationAction):
    def name(self) -> str:
        return "validate_scheduling_form"

    async def validate_sched_answer(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict
    ) -> dict[str, Any]:
        return await in_thread(self.apply, value, dispatcher, tracker)

    def apply(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
        state = tracker.get_slot(STATE_SLOT) or {}
        try:
            new_state, turn = conversation().reply(dict(state), str(value or ""), context(tracker))
        except Exception:
            fail_closed(dispatcher, state.get("flow"))
            return {ANSWER_SLOT: DONE, STATE_SLOT: None}
        show(dispatcher, turn)
        slots: dict[str, Any] = {"triage_level": turn.triage_level} if turn.triage_level else {}
        if new_state is None:
            return {**slots, ANSWER_SLOT: DONE, STATE_SLOT: None}
        return {**slots, ANSWER_SLOT: None, STATE_SLOT: new_state}


class ActionSchedulingDone(Action):
    def name(self) -> str:
        return "action_scheduling_done"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        return [SlotSet(STATE_SLOT, None), SlotSet(ANSWER_SLOT, None)]
