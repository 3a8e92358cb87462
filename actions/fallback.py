"""Fallback: ask to rephrase once, then offer a person (repeated misunderstanding)."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction
from rasa_sdk.executor import CollectingDispatcher

from actions.dialogue import consecutive_fallbacks

REPHRASE_LIMIT = 1


def fallback_step(events: list[dict]) -> str:
    """'rephrase' for the first miss in a row, 'offer_human' from the second on."""
    return "rephrase" if consecutive_fallbacks(events) <= REPHRASE_LIMIT else "offer_human"


class ActionFallback(Action):
    def name(self) -> str:
        return "action_fallback"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        if fallback_step(tracker.events) == "rephrase":
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        dispatcher.utter_message(response="utter_still_not_understood")
        return [FollowupAction("action_offer_human")]
