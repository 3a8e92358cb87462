"""Appointments through the whole stack: the gateway (web API and signed Twilio webhooks), the
safety screen, Rasa's scheduling form, the action server, the SQL schedule the gateway loaded from
knowledge/clinic/schedule.yml, one-time codes sent by the gateway's worker to the Twilio stand-in,
and the add-to-calendar file. The logic of every flow, with corrections and bad input, is tested
faster in tests/integration/scheduling/test_dialogue.py; these prove the wiring."""

from __future__ import annotations

import random
import re
import string
import time
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from careline.scheduling.model import AppointmentStatus, SlotQuery
from careline.scheduling.schema import appointments
from careline.scheduling.sql import SqlScheduler
from channels.db import make_engine
from tests.helpers import say, texts

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def schedule(stack):
    engine = make_engine(f"sqlite:///{stack.var / 'careline.db'}")
    yield SqlScheduler(engine, secret=stack.secret)
    engine.dispose()


def new_name() -> str:
    return "Pat " + "".join(random.choice(string.ascii_lowercase) for _ in range(9)).capitalize()


def new_number() -> str:
    return "+1555" + "".join(random.choice("0123456789") for _ in range(7))


def payloads(reply: dict) -> list[str]:
    return [b["payload"] for m in reply["messages"] for b in m.get("buttons") or []]


def booked_patient(schedule: SqlScheduler, phone: str, days_ahead: int = 4):
    patient = schedule.create_patient(new_name(), date(1968, 2, 29), phone)
    now = datetime.now(UTC)
    slot = schedule.find_slots(
        SlotQuery(
            start=now + timedelta(days=days_ahead), end=now + timedelta(days=days_ahead + 10), visit_type="follow_up"
        ),
        now=now,
    )[0]
    return patient, schedule.book(slot.id, patient.id, "follow_up", now=now)


def code_texted_to(twilio, phone: str, after: int) -> str:
    messages = twilio.wait_for(after + 1, to=phone, timeout=20)
    return re.search(r"\b(\d{6})\b", messages[-1].body).group(1)


def test_a_new_patient_books_on_the_web_and_gets_a_calendar_file(api, conversation_id, schedule):
    reply = say(api, conversation_id, "I'd like to book a check-up")
    assert "been a patient" in texts(reply) and reply["messages"][0]["buttons"]
    reply = say(api, conversation_id, "no, I'm new")
    reply = say(api, conversation_id, "the 31st of February")
    assert "doesn't exist" in texts(reply)
    reply = say(api, conversation_id, "earliest")
    slot_payloads = [p for p in payloads(reply) if p.startswith("slot ")]
    assert slot_payloads, texts(reply)
    say(api, conversation_id, slot_payloads[0])
    name = new_name()
    say(api, conversation_id, name)
    say(api, conversation_id, "07/04/1990")
    reply = say(api, conversation_id, "(555) 555-0123")
    assert "Book " in texts(reply)
    reply = say(api, conversation_id, "yes, book it")
    assert "You're booked" in texts(reply), texts(reply)
    url = re.search(r"(https?://\S+\.ics)", texts(reply)).group(1)
    ics = httpx.get(url, timeout=10)
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    assert b"BEGIN:VEVENT" in ics.content and name.encode() not in ics.content
    patient = schedule.match_patient(name, date(1990, 7, 4))
    [appointment] = schedule.appointments_for(patient.id)
    assert appointment.status == AppointmentStatus.BOOKED and appointment.visit_type == "new_patient"
    # the form is over: the assistant answers other things again
    assert "saturday" in texts(say(api, conversation_id, "what are your hours on saturday")).lower()


def test_the_safety_screen_still_answers_in_the_middle_of_booking(api, conversation_id):
    say(api, conversation_id, "can I book an appointment")
    reply = say(api, conversation_id, "my dad just collapsed and isn't breathing")
    assert "911" in texts(reply)


def test_cancel_on_the_web_needs_the_code_texted_to_the_number_on_file(api, conversation_id, schedule, twilio):
    phone = new_number()
    patient, appointment = booked_patient(schedule, phone)
    before = len(twilio.messages(to=phone))
    say(api, conversation_id, "I need to cancel my appointment")
    say(api, conversation_id, patient.name)
    reply = say(api, conversation_id, "02/29/1968")
    assert "code" in texts(reply) and "Feb" not in texts(reply)
    code = code_texted_to(twilio, phone, before)
    reply = say(api, conversation_id, code)
    assert "Cancel your appointment on" in texts(reply)
    reply = say(api, conversation_id, "yes")
    assert "cancelled" in texts(reply)
    assert schedule.appointment(appointment.id).status == AppointmentStatus.CANCELLED


def test_sms_from_the_number_on_file_checks_with_numbered_choices(stack, twilio, schedule):
    from tests.integration.test_sms import converse

    phone = new_number()
    patient, appointment = booked_patient(schedule, phone)
    converse(twilio, stack, phone, "when is my appointment?")
    converse(twilio, stack, phone, patient.name)
    replies = " ".join(converse(twilio, stack, phone, "2/29/1968"))
    local = appointment.start.astimezone(schedule.tz)
    assert "upcoming appointments" in replies and local.strftime("%b") in replies


def test_sms_booking_uses_numbered_choices(stack, twilio):
    from tests.integration.test_sms import converse

    phone = new_number()
    replies = " ".join(converse(twilio, stack, phone, "I want to book a follow-up visit"))
    assert "Reply 1 for" in replies
    replies = " ".join(converse(twilio, stack, phone, "2"))  # No, I'm new
    assert "When would suit you" in replies
    replies = " ".join(converse(twilio, stack, phone, "1"))  # Earliest available
    assert "Reply 1 for" in replies and "free" in replies
    replies = " ".join(converse(twilio, stack, phone, "1"))
    assert "full name" in replies
    started = time.monotonic()
    converse(twilio, stack, phone, new_name())
    converse(twilio, stack, phone, "1/2/1980")
    replies = " ".join(converse(twilio, stack, phone, phone))
    assert "Book " in replies
    replies = " ".join(converse(twilio, stack, phone, "1"))
    assert "You're booked" in replies and "Reply C" in replies and time.monotonic() - started < 60


def test_a_wrong_date_of_birth_three_times_goes_to_staff_and_reveals_nothing(api, conversation_id, schedule):
    patient, appointment = booked_patient(schedule, new_number())
    say(api, conversation_id, "when is my appointment")
    say(api, conversation_id, patient.name)
    for dob in ("01/01/1968", "03/01/1968"):
        reply = say(api, conversation_id, dob)
        assert "couldn't find" in texts(reply) and reply["owner"] == "bot"
    reply = say(api, conversation_id, "04/01/1968")
    assert reply["owner"] == "waiting_for_staff" and "staff" in texts(reply)
    month = appointment.start.astimezone(schedule.tz).strftime("%b")
    assert f"{month} " not in texts(reply)


def test_a_slot_taken_while_the_patient_decided_is_said_and_others_offered(api, conversation_id, schedule):
    say(api, conversation_id, "book a check-up")
    say(api, conversation_id, "no, I'm new")
    reply = say(api, conversation_id, "earliest")
    first = [p for p in payloads(reply) if p.startswith("slot ")][0]
    offered = schedule.find_slots(
        SlotQuery(start=datetime.now(UTC), end=datetime.now(UTC) + timedelta(days=28), visit_type="new_patient"),
        now=datetime.now(UTC),
    )[0]
    someone = schedule.create_patient(new_name(), date(1950, 1, 1), None)
    schedule.book(offered.id, someone.id, "new_patient")  # the earliest, taken by another patient first
    reply = say(api, conversation_id, first)
    assert "just taken" in texts(reply) and [p for p in payloads(reply) if p.startswith("slot ")]


def test_sms_reschedule_from_the_number_on_file(stack, twilio, schedule):
    from tests.integration.test_sms import converse

    phone = new_number()
    patient, old = booked_patient(schedule, phone, days_ahead=3)
    converse(twilio, stack, phone, "I need to move my appointment")
    converse(twilio, stack, phone, patient.name)
    replies = " ".join(converse(twilio, stack, phone, "02/29/1968"))
    assert "new time" in replies
    replies = " ".join(converse(twilio, stack, phone, "next week afternoon"))
    assert "1. " in replies
    converse(twilio, stack, phone, "1")
    replies = " ".join(converse(twilio, stack, phone, "1"))  # Yes, book it
    assert "now" in replies, replies
    assert schedule.appointment(old.id).status == AppointmentStatus.CANCELLED
    new = schedule.appointments_for(patient.id)[0]
    assert new.replaces_id == old.id


def test_no_name_birth_date_or_number_in_any_log(stack, api, conversation_id, schedule):
    phone = "+15557654321"
    say(api, conversation_id, "book a follow-up")
    say(api, conversation_id, "no, I'm new")
    reply = say(api, conversation_id, "earliest")
    say(api, conversation_id, [p for p in payloads(reply) if p.startswith("slot ")][0])
    say(api, conversation_id, "Quintessa Marchbanks")
    say(api, conversation_id, "11/23/1977")
    say(api, conversation_id, phone)
    say(api, conversation_id, "yes")
    for log_file in stack.logs.glob("*.log"):
        content = log_file.read_text(errors="replace")
        for secret in ("Quintessa", "Marchbanks", "1977-11-23", "11/23/1977", "5557654321"):
            assert secret not in content, (log_file.name, secret)


def test_r_to_a_reminder_starts_the_reschedule_for_that_appointment_through_rasa(stack, twilio, schedule):
    """The worker marks the reminder it sent (<prefix>:sched:last:<conversation>); R is then the
    reschedule conversation for that appointment, from the number on file: no name or code asked."""
    import json

    from redis import Redis

    from channels.pseudonym import conversation_key
    from tests.integration.test_sms import converse

    phone = new_number()
    patient, appointment = booked_patient(schedule, phone, days_ahead=4)
    key = conversation_key(stack.secret, "sms", phone)
    marker = json.dumps({"kind": "reminder", "appointment_id": appointment.id})
    Redis.from_url(stack.redis_url).set(f"careline:sched:last:{key}", marker, ex=600)
    replies = " ".join(converse(twilio, stack, phone, "R"))
    assert "new time" in replies and "full name" not in replies, replies


def test_a_reminder_is_sent_once_across_a_gateway_restart_and_c_confirms(stack, twilio, schedule):
    """The gateway's worker texts the 72-hour reminder of an appointment booked 2 days ahead; a
    restarted gateway does not text it again; the patient's C confirms it."""
    from tests.integration.test_sms import converse

    phone = new_number()
    patient = schedule.create_patient(new_name(), date(1975, 6, 1), phone)
    now = datetime.now(UTC)
    slot = schedule.find_slots(
        SlotQuery(start=now + timedelta(hours=26), end=now + timedelta(hours=71), visit_type="follow_up"), now=now
    )[0]
    appointment = schedule.book(slot.id, patient.id, "follow_up", now=now)
    with schedule.bind.begin() as conn:  # booked a week ago: its 72-hour reminder is due now
        conn.execute(
            update(appointments)
            .where(appointments.c.id == int(appointment.id))
            .values(created_at=now - timedelta(days=7))
        )
    [reminder] = twilio.wait_for(1, to=phone, timeout=30)
    assert reminder.body.startswith("Reminder from") and "Reply C" in reminder.body
    stack.restart(["gateway"])
    stack.wait_ready(60)
    time.sleep(3)  # several rounds of the new gateway's worker
    assert len(twilio.messages(to=phone)) == 1, "sent once"
    replies = " ".join(converse(twilio, stack, phone, "C"))
    assert "confirmed" in replies
    assert schedule.appointment(appointment.id).confirmed
