"""Symptom triage as a Rasa form: `triage_form` asks only the questions that matter for the
chief complaint (protocols in knowledge/triage/protocols/), then tells the level of care.

Thin actions: the engine (knowledge/triage/engine.py) decides, knowledge/triage/dialogue.py
words it. Any failure fails closed: the safety line and a person. The engine and the knowledge
base are blocking work: each action runs its body in a thread (actions/blocking.py).
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.blocking import built_once, in_thread
from actions.handoff import send_handoff
from actions.knowledge import channel_of, page_chars_of
from careline.contracts import HandoffReason, Priority
from knowledge.messages import msg

log = logging.getLogger(__name__)

STATE_SLOT = "triage_state"
ANSWER_SLOT = "triage_answer"
DONE = "done"


@built_once
def engine():
    from knowledge.triage.engine import default_engine

    return default_engine()


def self_care_advice(assessment, channel: str, page_chars: int | None = None):
    """Home-care advice (a knowledge.triage.dialogue.SelfCareAdvice, or None): from the knowledge
    base (cited), or the protocol's own (with its source when it has one)."""
    from knowledge.triage.dialogue import SelfCareAdvice

    care = assessment.self_care or {}
    query = care.get("query")
    if query:
        try:
            from actions.knowledge import get_retriever
            from knowledge.answers.answer import decide, render

            retriever = get_retriever()
            hits = retriever.search(query, k=3)
            decision = decide(hits, retriever.calibration.threshold)
            if decision.answer:
                return SelfCareAdvice(render(decision.cited[0], channel, page_chars).first, cited=True)
        except Exception:
            log.exception("triage self-care retrieval failed; using the protocol's advice")
    advice, source = care.get("advice"), care.get("source")
    if advice and source is not None and hasattr(source, "organisation"):
        cited = {"organisation": source.organisation, "title": source.title, "url": source.url}
        return SelfCareAdvice(msg("triage.self_care.cited", advice=advice, **cited), cited=True)
    return SelfCareAdvice(advice) if advice else None


def finish(dispatcher: CollectingDispatcher, tracker: Tracker, state) -> list[dict[str, Any]]:
    """Tell the outcome; hand off to staff on emergency and urgent-with-red-flags."""
    from knowledge.triage.dialogue import outcome, staff_summary
    from knowledge.triage.engine import TriageLevel

    eng = engine()
    assessment = eng.assess(state.facts)
    channel = channel_of(tracker)
    page_chars = page_chars_of(tracker)
    advice = self_care_advice(assessment, channel, page_chars) if assessment.level == TriageLevel.SELF_CARE else None
    shown = outcome(assessment, state.facts, channel, advice)
    dispatcher.utter_message(text=shown["text"], buttons=shown["buttons"] or None)
    log.info(
        "triage outcome level=%s complaint=%s rules=%s",
        assessment.level,
        assessment.complaint,
        ",".join(assessment.rules),
    )
    if shown["escalate"]:
        dispatcher.utter_message(response="utter_triage_staff_alerted")
        send_handoff(
            dispatcher,
            HandoffReason.triage(assessment.level),
            Priority(shown["priority"]),
            staff_summary(assessment, state.facts),
        )
    return [SlotSet("triage_level", assessment.level)]


def fail_closed(dispatcher: CollectingDispatcher) -> list[dict[str, Any]]:
    dispatcher.utter_message(response="utter_triage_unavailable")
    send_handoff(dispatcher, HandoffReason.TRIAGE_ERROR, Priority.URGENT)
    return [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet(STATE_SLOT, None), SlotSet(ANSWER_SLOT, None)]


def load_state(tracker: Tracker):
    from knowledge.triage.dialogue import TriageState

    return TriageState.from_dict(tracker.get_slot(STATE_SLOT))


class ActionAskTriageAnswer(Action):
    """Asks the current question; on the form's first turn it reads the complaint first."""

    def name(self) -> str:
        return "action_ask_triage_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        return await in_thread(self.ask_next, dispatcher, tracker)

    def ask_next(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> list:
        from knowledge.triage.dialogue import TriageState, ask

        try:
            eng = engine()
            if tracker.get_slot(STATE_SLOT) is None:  # the form's first turn: read the complaint
                state = TriageState()
                eng.read(tracker.latest_message.get("text") or "", state.facts)
            else:
                state = load_state(tracker)
            q = eng.next_question(state.facts)
            if q is None:  # nothing worth asking: the level is decided already
                events = finish(dispatcher, tracker, state)
                return events + [
                    ActiveLoop(None),
                    SlotSet("requested_slot", None),
                    SlotSet(STATE_SLOT, None),
                    SlotSet(ANSWER_SLOT, None),
                ]
            if q.id != state.current:
                state.current = q.id
                state.asked.append(q.id)
                state.retries = 0
            dispatcher.utter_message(**ask(q, state.facts))
            return [SlotSet(STATE_SLOT, state.to_dict())]
        except Exception:
            log.exception("triage question failed")
            return fail_closed(dispatcher)


class ValidateTriageForm(FormValidationAction):
    def name(self) -> str:
        return "validate_triage_form"

    async def validate_triage_answer(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict
    ) -> dict[str, Any]:
        return await in_thread(self.apply, value, dispatcher, tracker)

    def apply(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
        from knowledge.triage.dialogue import apply_answer

        try:
            eng = engine()
            state = load_state(tracker)
            result = apply_answer(eng, state, str(value or ""))
            if result == "stop":
                dispatcher.utter_message(response="utter_triage_stopped")
                return {ANSWER_SLOT: DONE, STATE_SLOT: None}
            if result == "person":
                from knowledge.triage.dialogue import staff_summary

                dispatcher.utter_message(response="utter_handoff")
                summary = staff_summary(eng.assess(state.facts), state.facts)
                send_handoff(dispatcher, HandoffReason.REQUEST_HUMAN, summary=summary)
                return {ANSWER_SLOT: DONE, STATE_SLOT: None}
            if result == "unclear":
                state.retries += 1
                if state.retries < 2:
                    dispatcher.utter_message(response="utter_triage_rephrase")
                    return {ANSWER_SLOT: None, STATE_SLOT: state.to_dict()}
                # asked twice and still not understood: count it as "not sure" (pushes the level up)
                from knowledge.triage.dialogue import question_by_id

                q = question_by_id(eng, state.facts, state.current)
                if q is not None:
                    state.facts.unsure.add(q.finding or q.kind)
            if result == "back":
                dispatcher.utter_message(response="utter_triage_go_back")
                state.current = None
            if eng.next_question(state.facts) is None:
                return {ANSWER_SLOT: DONE, STATE_SLOT: state.to_dict()}
            return {ANSWER_SLOT: None, STATE_SLOT: state.to_dict()}
        except Exception:
            log.exception("triage answer failed")
            # Fail closed as the other steps do: the message says staff were asked, so ask them.
            dispatcher.utter_message(response="utter_triage_unavailable")
            send_handoff(dispatcher, HandoffReason.TRIAGE_ERROR, Priority.URGENT)
            return {ANSWER_SLOT: DONE, STATE_SLOT: None}


class ActionTriageOutcome(Action):
    def name(self) -> str:
        return "action_triage_outcome"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        return await in_thread(self.tell, dispatcher, tracker)

    def tell(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> list:
        try:
            state = load_state(tracker)
            if not tracker.get_slot(STATE_SLOT):  # stopped by the patient, or failed already
                return [SlotSet(ANSWER_SLOT, None)]
            events = finish(dispatcher, tracker, state)
            return events + [SlotSet(STATE_SLOT, None), SlotSet(ANSWER_SLOT, None)]
        except Exception:
            log.exception("triage outcome failed")
            return fail_closed(dispatcher)
