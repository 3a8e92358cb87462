"""Misunderstanding: ask to rephrase (or say it is out of scope) once, then offer a person.

A message about the body, symptoms, medicines, tests or care is never out of scope: when the
intent model says out_of_scope or nlu_fallback and the health-domain guard (knowledge/domain.py)
reads a symptom report or a health question, the message is handed back to the dialogue under
the intent it should have had, as Rasa's two-stage fallback does with an affirmed intent: the
message is reverted and uttered again with that intent. The rules then do what the intent does
(report_symptom starts triage_form, which reads this message; ask_health_question runs
action_answer_question), and the message counts as understood (actions/dialogue.py).
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, UserUtteranceReverted, UserUttered
from rasa_sdk.executor import CollectingDispatcher

from actions.dialogue import MISUNDERSTOOD, consecutive_misunderstandings

log = logging.getLogger(__name__)

# Misunderstandings in a row after which a person is offered ("repeated misunderstanding").
OFFER_AFTER = 2
# Where the guard's intent is recorded in the re-uttered message's parse data (audits, tests).
GUARD_KEY = "health_guard"


def fallback_step(events: list[dict], intent: str) -> str:
    """'rephrase' or 'out_of_scope' for the first miss in a row, 'offer_human' from the second on."""
    if consecutive_misunderstandings(events) >= OFFER_AFTER:
        return "offer_human"
    return "out_of_scope" if intent == "out_of_scope" else "rephrase"


def guarded_intent(text: str, intent: str) -> str | None:
    """The health intent for a message the model did not place, or None. Never raises: a failing
    guard leaves the fallback as it was."""
    if intent not in MISUNDERSTOOD or not text.strip():
        return None
    try:
        from knowledge.domain import health_intent

        return health_intent(text)
    except Exception:
        log.exception("health guard failed")
        return None


def reutter(tracker: Tracker, intent: str) -> list[dict[str, Any]]:
    """The latest message taken back and said again with `intent` (text, metadata, channel and
    message id kept), after the listen that precedes every user message."""
    latest = tracker.latest_message or {}
    original = (latest.get("intent") or {}).get("name")
    parse_data = {
        **latest,
        "intent": {"name": intent, "confidence": 1.0},
        "intent_ranking": [{"name": intent, "confidence": 1.0}],
        GUARD_KEY: {"intent": intent, "model_intent": original},
    }
    last_user = next((e for e in reversed(tracker.events) if e.get("event") == "user"), {})
    uttered = UserUttered(latest.get("text"), parse_data, input_channel=last_user.get("input_channel"))
    uttered["metadata"] = latest.get("metadata") or last_user.get("metadata") or {}
    if latest.get("message_id"):
        uttered["message_id"] = latest["message_id"]
    return [UserUtteranceReverted(), ActionExecuted("action_listen"), uttered]


class ActionFallback(Action):
    """Runs for nlu_fallback, out_of_scope, and when the dialogue policies are unsure."""

    def name(self) -> str:
        return "action_fallback"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        # Synchronous: the guard is word lookups (well under a millisecond); the triage engine,
        # loaded by the warm-up action, reads a few statements in milliseconds.
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        health = guarded_intent(tracker.latest_message.get("text") or "", intent)
        if health:
            log.info("health guard: %s -> %s", intent, health)
            return reutter(tracker, health)
        step = fallback_step(tracker.events, intent)
        if step == "rephrase":
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        if step == "out_of_scope":
            dispatcher.utter_message(response="utter_out_of_scope")
            return []
        dispatcher.utter_message(response="utter_still_not_understood")
        # Uttered here, not through a follow-up action: the policies then expect action_listen.
        dispatcher.utter_message(response="utter_offer_human")
        return []
