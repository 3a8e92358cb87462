"""Opt-out: the gateway closes the conversation and sends nothing more until the patient writes."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import send_close
from careline.contracts import CloseReason


class ActionOptOut(Action):
    def name(self) -> str:
        return "action_opt_out"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        dispatcher.utter_message(response="utter_opted_out")
        send_close(dispatcher, CloseReason.OPT_OUT)
        return []
