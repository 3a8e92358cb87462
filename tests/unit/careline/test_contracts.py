"""The control payloads between the action server and the gateway: what an action builds is what
the gateway reads, and a payload of ours that is malformed still hands off (fail closed)."""

import json
import logging

import pytest

from careline.contracts import (
    Close,
    CloseReason,
    Handoff,
    HandoffReason,
    NextPage,
    Priority,
    parse_control,
)

SUMMARY = {"reason": "triage:emergency", "complaint": "fever", "rules": ["fever:emergency"]}


@pytest.mark.parametrize(
    "control",
    [
        Handoff(HandoffReason.REQUEST_HUMAN),
        Handoff(HandoffReason.REQUEST_HUMAN, summary={"reason": "request_human", "user_turns": 3}),
        Handoff(HandoffReason.TRIAGE_EMERGENCY, Priority.EMERGENCY, SUMMARY),
        Handoff(HandoffReason.TRIAGE_URGENT, Priority.URGENT, SUMMARY),
        Handoff(HandoffReason.TRIAGE_ERROR, Priority.URGENT),
        Close(CloseReason.OPT_OUT),
        NextPage(),
    ],
)
def test_round_trip_through_json(control):
    payload = json.loads(json.dumps(control.to_payload()))  # as it crosses Rasa's REST channel
    assert parse_control(payload) == control


def test_payloads_keep_todays_wire_format():
    assert Close(CloseReason.OPT_OUT).to_payload() == {"careline": {"close": "opt_out"}}
    assert Handoff(HandoffReason.TRIAGE_ERROR, Priority.URGENT).to_payload() == {
        "careline": {"handoff": {"reason": "triage_error", "priority": "urgent"}}
    }
    payload = Handoff(HandoffReason.triage("emergency"), Priority.EMERGENCY, SUMMARY).to_payload()
    assert payload == {
        "careline": {"handoff": {"reason": "triage:emergency", "priority": "emergency", "summary": SUMMARY}}
    }
    assert type(payload["careline"]["handoff"]["reason"]) is str  # plain JSON for any serialiser


def test_todays_payloads_parse():
    # as actions built them by hand before this module: no priority means normal
    assert parse_control({"careline": {"handoff": {"reason": "request_human", "summary": {"user_turns": 1}}}}) == (
        Handoff(HandoffReason.REQUEST_HUMAN, Priority.NORMAL, {"user_turns": 1})
    )
    assert parse_control({"careline": {"close": "opt_out"}}) == Close(CloseReason.OPT_OUT)


def test_only_escalating_triage_levels_are_reasons():
    assert HandoffReason.triage("urgent") is HandoffReason.TRIAGE_URGENT
    with pytest.raises(ValueError):
        HandoffReason.triage("routine")


@pytest.mark.parametrize(
    "custom",
    [None, "handoff", 3, [], {}, {"other": 1}, {"careline": "handoff"}, {"careline": ["handoff"]}],
)
def test_not_ours_is_not_a_control(custom):
    assert parse_control(custom) is None


@pytest.mark.parametrize(
    "handoff, expected",
    [
        ("yes", Handoff(HandoffReason.UNSPECIFIED)),
        (True, Handoff(HandoffReason.UNSPECIFIED)),
        ({}, Handoff(HandoffReason.UNSPECIFIED)),
        (False, Handoff(HandoffReason.UNSPECIFIED)),
        ("", Handoff(HandoffReason.UNSPECIFIED)),
        ([], Handoff(HandoffReason.UNSPECIFIED)),
        (["request_human"], Handoff(HandoffReason.UNSPECIFIED)),
        ({"summary": {"a": 1}}, Handoff(HandoffReason.UNSPECIFIED, summary={"a": 1})),
        ({"reason": "made_up"}, Handoff(HandoffReason.UNSPECIFIED)),
        ({"reason": {"nested": 1}}, Handoff(HandoffReason.UNSPECIFIED)),
        ({"reason": "request_human", "priority": "sky-high"}, Handoff(HandoffReason.REQUEST_HUMAN)),
        ({"reason": "request_human", "priority": None}, Handoff(HandoffReason.REQUEST_HUMAN)),
        ({"reason": "triage_error", "priority": "crisis"}, Handoff(HandoffReason.TRIAGE_ERROR, Priority.CRISIS)),
        ({"reason": "request_human", "summary": "free text"}, Handoff(HandoffReason.REQUEST_HUMAN)),
    ],
)
def test_a_malformed_handoff_still_hands_off(handoff, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="careline.contracts"):
        assert parse_control({"careline": {"handoff": handoff}}) == expected
    assert "made_up" not in caplog.text and "free text" not in caplog.text  # values are never logged


def test_handoff_wins_over_close_even_an_empty_one_and_an_absent_one_is_skipped():
    both = {"careline": {"handoff": {"reason": "request_human"}, "close": "opt_out"}}
    assert parse_control(both) == Handoff(HandoffReason.REQUEST_HUMAN)
    empty = Handoff(HandoffReason.UNSPECIFIED, Priority.NORMAL)
    assert parse_control({"careline": {"handoff": {}, "close": "opt_out"}}) == empty
    assert parse_control({"careline": {"handoff": None, "close": "opt_out"}}) == Close(CloseReason.OPT_OUT)
    assert parse_control({"careline": {"close": "made_up"}}) == Close(CloseReason.UNSPECIFIED)


def test_an_unknown_shape_of_ours_is_logged_and_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="careline.contracts"):
        assert parse_control({"careline": {"handof": {"reason": "request_human"}}}) is None
        assert parse_control({"careline": {"handoff": None, "close": ""}}) is None
    assert "unknown shape" in caplog.text and "handof" in caplog.text


def test_next_page_is_read_only_when_it_says_true():
    assert parse_control({"careline": {"next_page": True}}) == NextPage()
    assert parse_control({"careline": {"next_page": "yes"}}) is None
