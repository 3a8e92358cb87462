"""Opting out (STOP and the like): the patient is told, then the gateway is asked to close the
conversation; the action sets no slot. The same on every channel."""

from __future__ import annotations

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.sms import ActionOptOut
from careline.contracts import Close, CloseReason
from tests.unit.actions.support import domain, said, tracker


@pytest.mark.parametrize("metadata", [{"format": "sms"}, None], ids=["sms", "web"])
def test_opting_out_says_so_then_closes(metadata):
    d = CollectingDispatcher()
    events = ActionOptOut().run(d, tracker("STOP", intent="opt_out", metadata=metadata), domain())
    assert (said(d), events) == (["utter_opted_out", Close(CloseReason.OPT_OUT)], [])
