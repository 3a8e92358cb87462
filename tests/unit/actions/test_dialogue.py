import pytest

from actions.dialogue import consecutive_misunderstandings, handoff_summary, last_bot_utterance
from actions.fallback import fallback_step


def user(intent, text="..."):
    return {"event": "user", "text": text, "parse_data": {"intent": {"name": intent, "confidence": 0.9}}}


def action(name):
    return {"event": "action", "name": name}


LISTEN = action("action_listen")


def bot(utter_action):
    return {"event": "bot", "text": "...", "metadata": {"utter_action": utter_action}}


@pytest.mark.parametrize(
    "events, expected",
    [
        ([], None),
        ([user("affirm")], None),
        (
            [
                action("action_session_start"),
                LISTEN,
                user("greet"),
                action("utter_greet"),
                bot("utter_greet"),
                LISTEN,
                user("affirm"),
            ],
            "utter_greet",
        ),
        (
            [
                user("book_appointment"),
                action("utter_scheduling_unavailable"),
                bot("utter_scheduling_unavailable"),
                action("action_offer_human"),
                bot("utter_offer_human"),
                LISTEN,
                user("affirm"),
            ],
            "utter_offer_human",
        ),
        # The offer was two turns ago: "yes" no longer answers it.
        ([action("action_offer_human"), bot("utter_offer_human"), LISTEN, user("greet"), LISTEN, user("affirm")], None),
    ],
)
def test_last_bot_utterance(events, expected):
    assert last_bot_utterance(events) == expected


@pytest.mark.parametrize(
    "intents, count, step",
    [
        (["greet"], 0, "rephrase"),
        (["nlu_fallback"], 1, "rephrase"),
        (["out_of_scope"], 1, "out_of_scope"),
        (["greet", "nlu_fallback", "nlu_fallback"], 2, "offer_human"),
        (["nlu_fallback", "out_of_scope"], 2, "offer_human"),
        (["out_of_scope", "out_of_scope"], 2, "offer_human"),
        (["nlu_fallback", "greet", "nlu_fallback"], 1, "rephrase"),
        (["nlu_fallback", "nlu_fallback", "nlu_fallback"], 3, "offer_human"),
    ],
)
def test_fallback_counts_consecutive_misunderstandings(intents, count, step):
    events = []
    for intent in intents:
        events += [user(intent), action("action_fallback"), LISTEN]
    assert consecutive_misunderstandings(events) == count
    assert fallback_step(events, intents[-1]) == step


def test_handoff_summary_has_no_message_text():
    events = [user("greet", "hello I'm Jane Doe 555-123-4567"), LISTEN, user("request_human", "a person pls")]
    summary = handoff_summary(events, "request_human")
    assert summary == {"reason": "request_human", "user_turns": 2, "recent_intents": ["greet", "request_human"]}
    assert "Jane" not in str(summary) and "555" not in str(summary)
