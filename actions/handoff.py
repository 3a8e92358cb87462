"""Hand-off to staff: the gateway owns the state change, the action asks for it."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.dialogue import handoff_summary, last_bot_utterance

# Bot messages after which "yes" means "yes, connect me to a person".
OFFERS_OF_A_PERSON = {"utter_offer_human"}


def handoff_payload(events: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    return {"careline": {"handoff": {"reason": reason, "summary": handoff_summary(events, reason)}}}


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        dispatcher.utter_message(response="utter_handoff")
        dispatcher.utter_message(json_message=handoff_payload(tracker.events, "request_human"))
        return []


class ActionOfferHuman(Action):
    def name(self) -> str:
        return "action_offer_human"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        dispatcher.utter_message(response="utter_offer_human")
        return []


class ActionHandleAffirm(Action):
    def name(self) -> str:
        return "action_handle_affirm"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        if last_bot_utterance(tracker.events) in OFFERS_OF_A_PERSON:
            dispatcher.utter_message(response="utter_handoff")
            dispatcher.utter_message(json_message=handoff_payload(tracker.events, "request_human"))
        else:
            dispatcher.utter_message(response="utter_how_can_i_help")
        return []


class ActionHandleDeny(Action):
    def name(self) -> str:
        return "action_handle_deny"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        dispatcher.utter_message(response="utter_how_can_i_help")
        return []
