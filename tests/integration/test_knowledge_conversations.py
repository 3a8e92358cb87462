"""Health and clinic questions through the gateway: answers with citations, follow-ups,
abstention, and both renderings (web and SMS)."""

import pytest

from tests.helpers import say, texts

pytestmark = pytest.mark.stack


def test_health_question_is_answered_with_a_citation(api, conversation_id):
    reply = say(api, conversation_id, "what causes gout")
    body = texts(reply)
    assert "Source: " in body and "https://" in body
    assert "uric acid" in body.lower()


def test_clinic_question_is_answered_from_the_clinic_files(api, conversation_id):
    reply = say(api, conversation_id, "are you open on saturday")
    body = texts(reply)
    assert "Saturday" in body and "Maplewood" in body and "Source: " in body


def test_follow_up_tell_me_more_continues_the_answer(api, conversation_id):
    first = say(api, conversation_id, "what is cystic fibrosis")
    assert any(b["payload"] == "/ask_more" for m in first["messages"] for b in m["buttons"])
    more = say(api, conversation_id, "tell me more")
    assert "Source: " in texts(more)
    assert texts(more) not in texts(first)


def test_follow_up_without_a_topic_keeps_the_previous_one(api, conversation_id):
    say(api, conversation_id, "what are the symptoms of chickenpox")
    reply = say(api, conversation_id, "how is it treated")
    assert "chickenpox" in texts(reply).lower() or "varicella" in texts(reply).lower()


def offers_a_person(reply) -> bool:
    return any(b["payload"] == "/request_human" for m in reply["messages"] for b in m["buttons"])


def test_unknown_medical_topic_is_abstained(api, conversation_id):
    reply = say(api, conversation_id, "what are the side effects of mounjaro injections")
    assert "Source: " not in texts(reply), "nothing from outside the knowledge base"
    assert offers_a_person(reply)


def test_diagnosis_is_not_attempted(api, conversation_id):
    reply = say(api, conversation_id, "could i have diabetes?")
    body = texts(reply).lower()
    assert "Source: " not in texts(reply)
    assert "only a clinician" in body or "can't assess symptoms" in body
    assert offers_a_person(reply)


def test_sms_rendering_first_reply_fits_and_more_continues(api, conversation_id):
    reply = say(api, conversation_id, "what is sickle cell disease", render="sms")
    first = reply["messages"][0]["text"]
    assert len(first) <= 320 and "Source: " in first
    if "Reply MORE" in first:
        more = say(api, conversation_id, "MORE", render="sms")
        assert more["messages"] and len(more["messages"][0]["text"]) <= 320
        assert "Source: " in more["messages"][0]["text"]
