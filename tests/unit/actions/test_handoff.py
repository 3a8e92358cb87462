"""Every action's hand-off and close go through one helper, and the gateway reads back exactly
what the action meant (careline.contracts)."""

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import (
    ActionHandleAffirm,
    ActionHandleDeny,
    ActionHandoff,
    ActionOfferHuman,
    send_close,
    send_handoff,
)
from actions.sms import ActionOptOut
from actions.triage import fail_closed
from careline.contracts import Close, CloseReason, Handoff, HandoffReason, Priority, parse_control
from tests.unit.actions.support import bot, domain, said, user
from tests.unit.actions.support import tracker as support_tracker

EVENTS = [
    {"event": "bot", "metadata": {"utter_action": "utter_offer_human"}},
    {"event": "user", "text": "yes", "parse_data": {"intent": {"name": "affirm"}}},
]


def tracker(events=EVENTS) -> Tracker:
    return Tracker("c1", {}, events[-1], events, False, None, None, "action_listen")


def controls(dispatcher: CollectingDispatcher) -> list:
    return [c for m in dispatcher.messages if (c := parse_control(m.get("custom"))) is not None]


def test_the_helpers_send_what_the_gateway_reads():
    d = CollectingDispatcher()
    send_handoff(d, HandoffReason.TRIAGE_EMERGENCY, Priority.EMERGENCY, {"level": "emergency"})
    send_close(d, CloseReason.OPT_OUT)
    assert controls(d) == [
        Handoff(HandoffReason.TRIAGE_EMERGENCY, Priority.EMERGENCY, {"level": "emergency"}),
        Close(CloseReason.OPT_OUT),
    ]


def test_asking_for_a_person_hands_off_with_a_summary_and_no_text():
    for action in (ActionHandoff(), ActionHandleAffirm()):
        d = CollectingDispatcher()
        action.run(d, tracker(), {})
        (handoff,) = controls(d)
        assert handoff.reason is HandoffReason.REQUEST_HUMAN and handoff.priority is Priority.NORMAL
        assert handoff.summary == {"reason": "request_human", "user_turns": 1, "recent_intents": ["affirm"]}
        assert d.messages[0]["response"] == "utter_handoff"


def test_opting_out_closes():
    d = CollectingDispatcher()
    ActionOptOut().run(d, tracker(), {})
    assert controls(d) == [Close(CloseReason.OPT_OUT)]


def test_a_triage_failure_hands_off_urgently():
    d = CollectingDispatcher()
    fail_closed(d)
    assert controls(d) == [Handoff(HandoffReason.TRIAGE_ERROR, Priority.URGENT)]


LISTEN = {"event": "action", "name": "action_listen"}
OFFERED = [bot("utter_offer_human"), LISTEN, user("yes", "affirm")]
NOT_OFFERED = [bot("utter_greet"), LISTEN, user("yes", "affirm")]
OFFERED_EARLIER = [bot("utter_offer_human"), LISTEN, user("hi", "greet"), bot("utter_greet"), *NOT_OFFERED[1:]]
SUMMARY = {"reason": "request_human", "user_turns": 1, "recent_intents": ["affirm"]}
REQUEST_HUMAN = Handoff(HandoffReason.REQUEST_HUMAN, Priority.NORMAL, SUMMARY)


@pytest.mark.parametrize(
    "action, events, sent",
    [
        (ActionHandoff(), NOT_OFFERED, ["utter_handoff", REQUEST_HUMAN]),
        (ActionHandleAffirm(), OFFERED, ["utter_handoff", REQUEST_HUMAN]),
        (ActionHandleAffirm(), NOT_OFFERED, ["utter_how_can_i_help"]),  # "yes" to nothing: no hand-off
        (ActionHandleAffirm(), OFFERED_EARLIER, ["utter_how_can_i_help"]),  # the offer was turns ago
        (ActionHandleDeny(), OFFERED, ["utter_how_can_i_help"]),
        (ActionOfferHuman(), NOT_OFFERED, ["utter_offer_human"]),
    ],
)
def test_what_each_action_sends(action, events, sent):
    d = CollectingDispatcher()
    assert action.run(d, support_tracker("yes", events=events), domain()) == []  # no slot, no ownership change
    assert said(d) == sent
