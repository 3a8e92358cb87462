"""The fallback action and the health-domain guard: a health message that the intent model sent to
out_of_scope or nlu_fallback is taken back and uttered again with the intent it should have had
(as Rasa's two-stage fallback re-utters an affirmed intent), so the rules do what that intent does:
the triage form reads this very message, the knowledge base answers it, and it does not count as a
misunderstanding. Anything else falls back as before."""

from __future__ import annotations

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

import actions.triage as at
from actions.dialogue import applied, consecutive_misunderstandings, handoff_summary, last_bot_utterance
from actions.fallback import GUARD_KEY, ActionFallback
from actions.knowledge import ActionAnswerQuestion
from tests.unit.actions.support import bot, domain, said, slots_of, tracker, user

LISTEN = {"event": "action", "name": "action_listen"}
FALLBACK = {"event": "action", "name": "action_fallback"}
SMS = {"channel": "sms"}


def fallback(text: str, intent: str, events: list[dict] | None = None, metadata: dict | None = None):
    d = CollectingDispatcher()
    t = tracker(text, intent=intent, metadata=metadata, events=events)
    returned = ActionFallback().run(d, t, domain())
    return said(d), returned, d


def rasa_applies(events: list[dict], returned: list[dict]) -> list[dict]:
    """The tracker's events after the fallback ran, as Rasa logs them: the action, then its events."""
    return [*events, FALLBACK, *returned]


def tracker_after(all_events: list[dict], slots: dict | None = None) -> Tracker:
    """A tracker whose latest message is the last user event, as Rasa builds it for the next action."""
    latest = next(e for e in reversed(applied(all_events)) if e.get("event") == "user")
    return tracker(
        latest["text"],
        intent=latest["parse_data"]["intent"]["name"],
        metadata=latest.get("metadata"),
        slots=slots,
        events=all_events,
    )


@pytest.mark.parametrize(
    "text, model_intent, intent",
    [
        ("my little boy has had a fever since last night", "out_of_scope", "report_symptom"),
        ("knee swollen and hot", "nlu_fallback", "report_symptom"),
        ("can I take ibuprofen with lisinopril", "out_of_scope", "ask_health_question"),
        ("what is an A1C test", "nlu_fallback", "ask_health_question"),
    ],
)
def test_a_health_message_is_uttered_again_with_its_intent(text, model_intent, intent):
    sent, events, _ = fallback(text, model_intent, metadata=SMS)
    assert sent == []  # nothing said here: the rules answer the re-uttered message
    rewind, listen, again = events
    assert rewind["event"] == "rewind"
    assert listen == {**listen, "event": "action", "name": "action_listen"}
    assert again["event"] == "user" and again["text"] == text
    assert again["parse_data"]["intent"] == {"name": intent, "confidence": 1.0}
    assert again["parse_data"][GUARD_KEY] == {"intent": intent, "model_intent": model_intent}
    assert again["metadata"] == SMS  # the channel's metadata (SMS rendering, paging) goes along


@pytest.mark.parametrize(
    "text, intent, response",
    [
        ("how many calories in a banana", "out_of_scope", "utter_out_of_scope"),
        ("my car is sick", "out_of_scope", "utter_out_of_scope"),
        ("asdfgh", "nlu_fallback", "utter_ask_rephrase"),
        # the policies were unsure of a message the model did place: not the guard's to change
        ("my son has a fever", "report_symptom", "utter_ask_rephrase"),
    ],
)
def test_anything_else_falls_back_as_before(text, intent, response):
    sent, events, _ = fallback(text, intent)
    assert (sent, events) == ([response], [])


def test_a_health_message_is_rescued_even_after_misses_in_a_row():
    events = [user("asdf", "nlu_fallback"), bot("utter_ask_rephrase"), LISTEN, user("qwer", "nlu_fallback")]
    events += [bot("utter_still_not_understood"), LISTEN]
    sent, returned, _ = fallback("my chest feels tight", "out_of_scope", events=events + [user("x", "out_of_scope")])
    assert sent == [] and returned[2]["parse_data"]["intent"]["name"] == "report_symptom"


def test_a_rescued_message_is_not_a_misunderstanding():
    before = [{"event": "session_started"}, LISTEN, user("asdf", "nlu_fallback"), bot("utter_ask_rephrase"), LISTEN]
    latest = user("is shingles contagious", "out_of_scope")
    _, returned, _ = fallback("is shingles contagious", "out_of_scope", events=before + [latest])
    after = rasa_applies(before + [latest], returned)
    assert consecutive_misunderstandings(after) == 0
    answered = after + [{"event": "action", "name": "action_answer_question"}, bot("..."), LISTEN]
    # a real miss next is the first in a row: say what is out of scope, offer no person yet
    miss = answered + [user("who won the world cup", "out_of_scope")]
    sent, returned, _ = fallback("who won the world cup", "out_of_scope", events=miss)
    assert (sent, returned) == (["utter_out_of_scope"], [])


def test_the_rewind_takes_back_the_misplaced_message_everywhere():
    asked = [LISTEN, bot("utter_offer_human"), LISTEN]
    latest = user("is shingles contagious", "out_of_scope")
    _, returned, _ = fallback("is shingles contagious", "out_of_scope", events=asked + [latest])
    after = rasa_applies(asked + [latest], returned)
    assert [e.get("event") for e in applied(after)][-2:] == ["action", "user"]
    assert last_bot_utterance(after) == "utter_offer_human"  # what was asked before this message
    summary = handoff_summary(after, "request_human")
    assert summary["user_turns"] == 1 and summary["recent_intents"] == ["ask_health_question"]


def test_the_triage_form_reads_the_rescued_message():
    text = "my 4 year old has had a fever of 103 since last night"
    latest = user(text, "out_of_scope")
    _, returned, _ = fallback(text, "out_of_scope", events=[LISTEN, latest])
    after = rasa_applies([LISTEN, latest], returned)
    at.engine.cache_clear()
    d = CollectingDispatcher()
    form_events = at.ActionAskTriageAnswer().ask_next(d, tracker_after(after))
    facts = slots_of(form_events)["triage_state"]["facts"]
    assert "fever" in facts["complaints"]
    assert facts["temperature_f"] == 103 and facts["who"] == "child"
    assert said(d)  # and it asks its first question


async def test_the_knowledge_base_answers_the_rescued_question(use_kb):
    text = "can you catch shingles"
    latest = user(text, "nlu_fallback")
    _, returned, _ = fallback(text, "nlu_fallback", events=[LISTEN, latest])
    after = rasa_applies([LISTEN, latest], returned)
    d = CollectingDispatcher()
    events = await ActionAnswerQuestion().run(d, tracker_after(after), domain())
    assert "Shingles" in said(d)[0]["text"]
    assert slots_of(events)["kb_focus"] == "Shingles"
