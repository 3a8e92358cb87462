"""The fallback action's mapping from the conversation so far to what it says: rephrase (or "out of
scope") on the first misunderstanding in a row, a person offered from the second on. It changes no
slot and hands nothing off: the patient chooses (action_handle_affirm)."""

from __future__ import annotations

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.fallback import ActionFallback
from tests.unit.actions.support import bot, domain, said, tracker, user

LISTEN = {"event": "action", "name": "action_listen"}
OFFER = ["utter_still_not_understood", "utter_offer_human"]


def conversation(intents: list[str]) -> list[dict]:
    """One user message per intent, each answered by the fallback (or a greeting)."""
    events: list[dict] = [{"event": "session_started"}, LISTEN]
    for intent in intents:
        events += [user("...", intent), bot("utter_ask_rephrase"), LISTEN]
    return events[:-2]  # the latest message has not been answered yet


@pytest.mark.parametrize(
    "intents, sent",
    [
        (["nlu_fallback"], ["utter_ask_rephrase"]),
        (["out_of_scope"], ["utter_out_of_scope"]),
        (["greet", "nlu_fallback"], ["utter_ask_rephrase"]),
        (["nlu_fallback", "nlu_fallback"], OFFER),
        (["nlu_fallback", "out_of_scope"], OFFER),
        (["out_of_scope", "out_of_scope", "out_of_scope"], OFFER),
        (["nlu_fallback", "greet", "out_of_scope"], ["utter_out_of_scope"]),  # understood in between
        # The policies were unsure of an understood message: one miss, ask to rephrase.
        (["greet", "ask_health_question"], ["utter_ask_rephrase"]),
    ],
)
def test_fallback_says_what_the_misunderstandings_in_a_row_call_for(intents, sent):
    d = CollectingDispatcher()
    events = conversation(intents)
    assert ActionFallback().run(d, tracker("...", intent=intents[-1], events=events), domain()) == []
    assert said(d) == sent


def test_a_new_session_starts_the_count_again():
    events = [user("...", "nlu_fallback"), LISTEN, {"event": "session_started"}, LISTEN, user("...", "nlu_fallback")]
    d = CollectingDispatcher()
    ActionFallback().run(d, tracker("...", intent="nlu_fallback", events=events), domain())
    assert said(d) == ["utter_ask_rephrase"]
