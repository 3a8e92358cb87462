"""Misunderstanding: ask to rephrase (or say it is out of scope) once, then offer a person."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.dialogue import consecutive_misunderstandings

# Misunderstandings in a row after which a person is offered ("repeated misunderstanding").
OFFER_AFTER = 2


def fallback_step(events: list[dict], intent: str) -> str:
    """'rephrase' or 'out_of_scope' for the first miss in a row, 'offer_human' from the second on."""
    if consecutive_misunderstandings(events) >= OFFER_AFTER:
        return "offer_human"
    return "out_of_scope" if intent == "out_of_scope" else "rephrase"


class ActionFallback(Action):
    """Runs for nlu_fallback, out_of_scope, and when the dialogue policies are unsure."""

    def name(self) -> str:
        return "action_fallback"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
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
