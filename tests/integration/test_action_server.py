"""rasa-sdk 3.21 (Python 3.11) serving Rasa 3.6.21: the versions differ, so prove they talk."""

from pathlib import Path

import httpx
import pytest
import yaml

from channels.pseudonym import conversation_key
from tests.helpers import say

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def domain_custom_actions() -> set[str]:
    actions = set()
    for path in (ROOT / "bot" / "domain").glob("*.yml"):
        actions |= set(yaml.safe_load(path.read_text()).get("actions") or ())
    return actions


def test_action_server_health_and_registry(stack):
    assert httpx.get(f"{stack.action_url}/health").json()["status"] == "ok"
    served = {a["name"] for a in httpx.get(f"{stack.action_url}/actions").json()}
    assert domain_custom_actions() <= served


def test_rasa_runs_custom_actions_and_keeps_their_events(stack, api, conversation_id):
    say(api, conversation_id, "can i move my appointment to next week")
    say(api, conversation_id, "never mind")
    key = conversation_key(stack.secret, "api", conversation_id)
    events = httpx.get(f"{stack.rasa_url}/conversations/{key}/tracker", params={"token": stack.rasa_token}).json()[
        "events"
    ]
    ran = [e["name"] for e in events if e["event"] == "action"]
    assert "scheduling_form" in ran and "action_scheduling_done" in ran  # the form runs its ask and validate actions
    assert ran.count("action_fallback") == 0
    bot_texts = [e.get("text") for e in events if e["event"] == "bot"]
    assert any(t and "full name" in t for t in bot_texts) and any(t and "stopped" in t for t in bot_texts)
