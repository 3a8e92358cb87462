"""The health-domain guard in a running assistant: a health message that the intent model sends to
out_of_scope or nlu_fallback gets what its right intent gives (a triage question that has read the
message, or a knowledge-base answer), not "I can't help with that", and does not count as a
misunderstanding.

Each test drives the guard with a message the running model really misplaces: the first of a few
candidates whose parse says out_of_scope or nlu_fallback (a retrained model that places all of
them leaves nothing to drive, and the test says so by skipping; tests/unit cover the mechanics)."""

from __future__ import annotations

import httpx
import pytest

from channels.pseudonym import conversation_key
from tests.helpers import say, texts

pytestmark = pytest.mark.stack

MISPLACED = {"out_of_scope", "nlu_fallback"}
OUT_OF_SCOPE = "not something i can help with"  # utter_out_of_scope
REPHRASE = "say that another way"  # utter_ask_rephrase
OFFER_HUMAN = "would you like me to connect you"  # utter_offer_human
# Written for these tests: short or unusual wordings a sparse intent model tends to miss.
SYMPTOM_REPORTS = [
    "room spinning every time i turn over",
    "voice gone hoarse for a fortnight",
    "splinter under my nail gone red",
    "bee sting on the lip",
    "left knee swollen hot and red since the weekend",
    "throbbing behind my eyes all day",
    "knee swollen",
]
NOT_HEALTH = ["who won the world cup in 2010", "recommend a good sci-fi novel", "how tall is mount everest"]
HEALTH_QUESTIONS = [
    "what's a normal heart rate for a 5 year old",
    "alpha-1 antitrypsin deficiency?",
    "gout diet",
    "amlodipine ankle swelling normal?",
    "shingrix second dose timing",
]


def intent_of(stack, text: str) -> str:
    resp = httpx.post(
        f"{stack.rasa_url}/model/parse", params={"token": stack.rasa_token}, json={"text": text}, timeout=30
    )
    resp.raise_for_status()
    return (resp.json().get("intent") or {}).get("name") or ""


def misplaced(stack, candidates: list[str]) -> str:
    for text in candidates:
        if intent_of(stack, text) in MISPLACED:
            return text
    pytest.skip("the model places every candidate: nothing drives the guard")


def tracker(stack, conversation_id: str) -> dict:
    key = conversation_key(stack.secret, "api", conversation_id)
    resp = httpx.get(
        f"{stack.rasa_url}/conversations/{key}/tracker",
        params={"token": stack.rasa_token},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()


def test_a_misplaced_symptom_report_starts_the_symptom_check_on_that_message(api, stack, conversation_id):
    text = misplaced(stack, SYMPTOM_REPORTS)
    reply = say(api, conversation_id, text)
    body = texts(reply).lower()
    assert OUT_OF_SCOPE not in body and REPHRASE not in body, body
    state = tracker(stack, conversation_id)
    assert (state.get("active_loop") or {}).get("name") == "triage_form", body
    triage = state["slots"]["triage_state"] or {}
    assert triage.get("facts", {}).get("complaints"), triage  # the form read this message
    assert state["latest_message"]["intent"]["name"] == "report_symptom"


def test_a_misplaced_health_question_is_answered_and_is_not_a_misunderstanding(api, stack, conversation_id):
    text = misplaced(stack, HEALTH_QUESTIONS)
    reply = say(api, conversation_id, text)
    body = texts(reply).lower()
    assert OUT_OF_SCOPE not in body and REPHRASE not in body, body
    events = tracker(stack, conversation_id)["events"]
    seen = [(e.get("event"), e.get("name") or (e.get("parse_data") or {}).get("intent")) for e in events]
    assert ("action", "action_answer_question") in seen, seen
    # A real miss right after it is the first in a row: told what is out of scope, no person offered.
    after = texts(say(api, conversation_id, misplaced(stack, NOT_HEALTH))).lower()
    assert OFFER_HUMAN not in after, after
    assert OUT_OF_SCOPE in after or REPHRASE in after, after
