"""Actions that wait do not hold up other conversations: the real action server (alone, with the
knowledge base and the OpenAI-protocol LLM stand-in in slow mode), called on its webhook the way
Rasa calls it. While one conversation's knowledge answer waits for the slow model, another
conversation's action (retrieval, triage, hand-off) answers at once."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from careline.standins.openai_chat import LLMStandin
from tests.conftest import ROOT

pytestmark = pytest.mark.stack

LLM_DELAY_S = 3.0
QUICK_S = 1.0


@pytest.fixture(scope="module")
def standin():
    with LLMStandin(mode="slow", delay=LLM_DELAY_S) as s:
        yield s


@pytest.fixture(scope="module")
def action_url(standin, redis_url, tmp_path_factory):
    """Only the action server (no Rasa, no gateway): what is under test is its event loop."""
    from careline.supervisor import Stack

    env = {
        "LLM_MODEL": "openai:gpt-4o-mini",
        "LLM_BASE_URL": standin.base_url,
        "LLM_API_KEY": standin.api_key,
        "LLM_TIMEOUT_S": str(LLM_DELAY_S + 3),
    }
    s = Stack(ROOT, redis_url=redis_url, var=tmp_path_factory.mktemp("var-concurrency"), extra_env=env)
    try:
        s.start(["actions"])  # waits for /health, then the knowledge-base warm-up
        yield s.action_url
    finally:
        s.stop(["actions"])


def run_action(action_url: str, action: str, text: str, slots: dict | None = None) -> dict:
    """POST /webhook as Rasa does, for a fresh conversation; the action server's JSON reply."""
    sender = f"test-{uuid.uuid4().hex}"
    tracker = {
        "sender_id": sender,
        "slots": slots or {},
        "paused": False,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": "action_listen",
        "latest_message": {
            "text": text,
            "intent": {"name": "ask_health", "confidence": 1.0},
            "entities": [],
            "metadata": {},
        },
        "events": [{"event": "user", "text": text, "parse_data": {"intent": {"name": "ask_health"}}}],
    }
    resp = httpx.post(
        f"{action_url}/webhook",
        timeout=30,
        json={"next_action": action, "sender_id": sender, "tracker": tracker, "domain": {}, "version": "3.6.21"},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


QUICK_ACTIONS = {
    # retrieval without generation (dosing answers keep the source's words): shares the retriever
    "knowledge": ("action_answer_question", "how many mg of ibuprofen can i take"),
    "triage": ("action_ask_triage_answer", "I've had a headache for 3 days"),
    "handoff": ("action_handoff", "can i talk to a person"),
}


@pytest.mark.parametrize("kind", list(QUICK_ACTIONS))
def test_an_action_answers_while_another_conversation_waits_for_the_llm(action_url, standin, kind):
    before = len(standin.requests)
    slow: dict = {}

    def ask_slowly() -> None:
        start = time.monotonic()
        slow["reply"] = run_action(action_url, "action_answer_question", "what causes gout")
        slow["seconds"] = time.monotonic() - start

    waiting = threading.Thread(target=ask_slowly)
    waiting.start()
    # The slow conversation is now inside its LLM call (the stand-in has the request).
    deadline = time.monotonic() + 20
    while len(standin.requests) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(standin.requests) == before + 1, "the knowledge action never called the model"

    action, text = QUICK_ACTIONS[kind]
    start = time.monotonic()
    reply = run_action(action_url, action, text)
    quick = time.monotonic() - start
    slow_still_waiting = waiting.is_alive()
    waiting.join(30)

    assert reply["responses"], reply
    assert quick < QUICK_S, f"{action} took {quick:.2f}s while another conversation waited for the LLM"
    assert slow_still_waiting
    # The slow one really waited for, and used, the model; the quick one did not call it.
    assert slow["seconds"] >= LLM_DELAY_S - 0.2
    assert slow["reply"]["responses"] and len(standin.requests) == before + 1
