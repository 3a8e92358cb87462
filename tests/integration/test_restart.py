"""Restarting the gateway and Rasa loses no conversation state (tracker and owner live in Redis)."""

import httpx
import pytest

from channels.pseudonym import conversation_key
from tests.helpers import say

pytestmark = pytest.mark.stack


def tracker_events(stack, conversation_id):
    key = conversation_key(stack.secret, "api", conversation_id)
    resp = httpx.get(f"{stack.rasa_url}/conversations/{key}/tracker", params={"token": stack.rasa_token}, timeout=30)
    resp.raise_for_status()
    return resp.json()["events"]


def test_restart_gateway_and_rasa_keeps_conversations(stack, conversation_id):
    staff_conversation = conversation_id + "-staff"
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as api:
        say(api, conversation_id, "hi")
        say(api, conversation_id, "please cancel my appointment")  # the scheduling form asks a name
        say(api, staff_conversation, "let me speak to a person")
    before = [e for e in tracker_events(stack, conversation_id) if e["event"] == "user"]

    stack.restart(["rasa", "gateway"])
    stack.wait_ready(60)

    after = [e for e in tracker_events(stack, conversation_id) if e["event"] == "user"]
    assert [e["text"] for e in after] == [e["text"] for e in before]
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as api:
        # The active form is remembered by Rasa's tracker: "never mind" ends it.
        reply = say(api, conversation_id, "never mind")
        assert "stopped" in " ".join(m["text"] for m in reply["messages"]) and reply["owner"] == "bot"
        # Ownership survived: the bot still stays quiet in the staff-owned conversation.
        assert say(api, staff_conversation, "anyone?")["owner"] == "waiting_for_staff"
