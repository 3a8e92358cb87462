"""Triage and the safety screen through the gateway: red flags in every state and on both
renderings, and full symptom checks to each of the four levels."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text as sql

from tests.helpers import say, texts

pytestmark = pytest.mark.stack


def audit_rows(stack):
    engine = create_engine(f"sqlite:///{stack.var / 'careline.db'}")
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sql("select * from safety_audit order by id"))]


def answer_until_outcome(api, cid, first, answers, render="web"):
    """Answer the form's questions from a table keyed by a word in each question."""
    reply = first
    for _ in range(12):
        if "not a diagnosis" in texts(reply).lower() or reply["owner"] != "bot":
            return reply
        last = reply["messages"][-1]["text"].lower()
        answer = next((a for key, a in answers if key in last), "no")
        reply = say(api, cid, answer, render=render)
    return reply


def test_red_flag_in_the_first_message(api, stack, conversation_id):
    reply = say(api, conversation_id, "my dad is slurring his words and his face is drooping")
    body = texts(reply)
    assert "911" in body and "stroke" in body.lower()
    assert reply["owner"] == "waiting_for_staff"
    rows = [r for r in audit_rows(stack) if r["outcome"] == "emergency"]
    assert any("stroke." in r["rules"] for r in rows)
    assert all("slurring" not in str(r) for r in rows), "no message text in the audit"


def test_crisis_on_web_and_sms(api, conversation_id):
    web = say(api, conversation_id, "i want to kill myself")
    assert "988" in texts(web) and web["owner"] == "waiting_for_staff"
    sms = say(api, conversation_id + "-sms", "kms", render="sms")
    assert "988" in texts(sms)
    assert all(len(m["text"]) <= 320 for m in sms["messages"])
    assert sms["owner"] == "waiting_for_staff"


def test_information_question_is_answered_with_the_emergency_line_not_an_alarm(api, conversation_id):
    reply = say(api, conversation_id, "what are the signs of a stroke?")
    body = texts(reply)
    assert "If this is happening" in body
    assert reply["owner"] == "bot"


def test_negation_and_idiom_are_not_alarms(api, conversation_id):
    for message in ("this traffic is killing me", "no chest pain, i just want to book a checkup"):
        reply = say(api, conversation_id, message)
        assert reply["owner"] == "bot", message


def test_red_flag_in_the_middle_of_a_triage_form(api, conversation_id):
    first = say(api, conversation_id, "i have a headache")
    assert first["owner"] == "bot" and first["messages"]
    reply = say(api, conversation_id, "now i cant breathe")
    assert "911" in texts(reply) and reply["owner"] == "waiting_for_staff"


def test_red_flag_in_a_health_question(api, conversation_id):
    reply = say(
        api, conversation_id, "what causes heartburn? my chest hurts really bad right now and my left arm is numb"
    )
    assert "911" in texts(reply) and reply["owner"] == "waiting_for_staff"


def test_red_flag_while_waiting_for_staff(api, conversation_id):
    say(api, conversation_id, "talk to a person")
    say(api, conversation_id, "yes")
    reply = say(api, conversation_id, "my baby is turning blue")
    assert "911" in texts(reply)
    assert reply["owner"] == "waiting_for_staff"


def test_triage_to_emergency(api, conversation_id):
    first = say(api, conversation_id, "my daughter has a fever")
    reply = answer_until_outcome(
        api, conversation_id, first, [("old", "7 years"), ("temperature", "102"), ("stiff neck", "yes")]
    )
    body = texts(reply)
    assert "Emergency" in body and "911" in body and "not a diagnosis" in body
    assert reply["owner"] == "waiting_for_staff"


def test_triage_to_urgent(api, conversation_id):
    first = say(api, conversation_id, "my baby has a fever")
    reply = answer_until_outcome(
        # 3 to 6 months with 39 °C or more: urgent (under 3 months any fever is an emergency, NICE NG143)
        api,
        conversation_id,
        first,
        [("old", "4 months"), ("temperature", "102.5"), ("long", "since this morning")],
    )
    body = texts(reply)
    assert "Urgent" in body and "not a diagnosis" in body and "Source:" in body


def test_triage_to_routine_and_self_care(api, conversation_id):
    first = say(api, conversation_id, "i have a fever")
    reply = answer_until_outcome(
        api, conversation_id, first, [("who", "me"), ("temperature", "101"), ("long", "4 days"), ("apply", "none")]
    )
    assert "Routine" in texts(reply)

    other = conversation_id + "-b"
    first = say(api, other, "i have a fever")
    reply = answer_until_outcome(
        api, other, first, [("who", "me"), ("temperature", "100.5"), ("long", "since yesterday"), ("apply", "none")]
    )
    body = texts(reply)
    assert "Self-care" in body and "Source:" in body and "not a diagnosis" in body


def test_not_sure_pushes_the_level_up(api, conversation_id):
    first = say(api, conversation_id, "i have a fever")
    reply = answer_until_outcome(
        api,
        conversation_id,
        first,
        [
            ("who", "me"),
            ("temperature", "100.5"),
            ("stiff neck", "not sure"),
            ("long", "since yesterday"),
            ("apply", "none"),
        ],
    )
    assert "Urgent" in texts(reply)


def test_a_patient_can_change_an_answer(api, conversation_id):
    first = say(api, conversation_id, "i have a fever")
    assert "temperature" in texts(first).lower()
    second = say(api, conversation_id, "101")
    assert "temperature" not in texts(second).lower()
    again = say(api, conversation_id, "go back")
    assert "temperature" in texts(again).lower()
