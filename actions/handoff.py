"""Hand-off to staff: the gateway owns the state change, the action asks for it."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.dialogue import handoff_summary, last_bot_utterance
from careline.contracts import Close, CloseReason, Handoff, HandoffReason, NextPage, Priority

# Bot messages after which "yes" means "yes, connect me to a person".
OFFERS_OF_A_PERSON = {"utter_offer_human"}


def send_handoff(
    dispatcher: CollectingDispatcher,
    reason: HandoffReason,
    priority: Priority = Priority.NORMAL,
    summary: dict[str, Any] | None = None,
) -> None:
    """Ask the gateway to give the conversation to staff (every action's hand-off goes through here)."""
    dispatcher.utter_message(json_message=Handoff(reason, priority, summary).to_payload())


def send_close(dispatcher: CollectingDispatcher, reason: CloseReason) -> None:
    """Ask the gateway to close the conversation until the patient writes again."""
    dispatcher.utter_message(json_message=Close(reason).to_payload())


def send_next_page(dispatcher: CollectingDispatcher) -> None:
    """Ask the gateway for the next kept page of a paged SMS reply (it owns SMS pagination)."""
    dispatcher.utter_message(json_message=NextPage().to_payload())


def request_human(dispatcher: CollectingDispatcher, events: list[dict[str, Any]]) -> None:
    """The patient asked for a person: hand off with a summary of the conversation so far."""
    reason = HandoffReason.REQUEST_HUMAN
    send_handoff(dispatcher, reason, summary=handoff_summary(events, reason.value))


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        dispatcher.utter_message(response="utter_handoff")
        request_human(dispatcher, tracker.events)
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
            request_human(dispatcher, tracker.events)
        else:
            dispatcher.utter_message(response="utter_how_can_i_help")
        return []


class ActionHandleDeny(Action):
    def name(self) -> str:
        return "action_handle_deny"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        dispatcher.utter_message(response="utter_how_can_i_help")
        return []
