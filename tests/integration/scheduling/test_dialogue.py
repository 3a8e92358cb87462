"""The appointment conversations (careline/scheduling/dialogue.py) over the real SQL schedule
(SQLite and PostgreSQL), real one-time codes in Redis and the real triage engine: every flow,
corrections, going back, a person at any time, and bad input. The same conversations through the
gateway, Rasa and the action server: tests/integration/test_scheduling_conversations.py."""

from __future__ import annotations

import random
import re
import time
import uuid
from datetime import date, datetime, timedelta

import pytest
import redis
from sqlalchemy import select

from careline.contracts import HandoffReason
from careline.scheduling import waitlist
from careline.scheduling.dialogue import Context, Conversation
from careline.scheduling.identity import phone_key
from careline.scheduling.model import AppointmentStatus, SlotQuery
from careline.scheduling.otp import OneTimeCodes
from careline.scheduling.schema import sched_messages, sched_waitlist
from careline.settings import SchedulingSettings
from knowledge.triage.engine import default_engine
from tests.integration.scheduling.conftest import BEFORE, SECRET, TIMEZONE

NOW = BEFORE  # Sunday 13 Dec 2026, 12:00 UTC: the schedule starts on Monday 14th


@pytest.fixture
def codes(schedule_engine, redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = f"tdlg{uuid.uuid4().hex[:8]}"
    yield OneTimeCodes(client, schedule_engine, SchedulingSettings(), prefix=prefix, secret=SECRET)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def talk(scheduler, codes, schedule_engine):
    def join(patient_id, visit_type, appointment_id):
        return waitlist.join(schedule_engine, patient_id, visit_type, appointment_id)

    return Conversation(scheduler, codes, default_engine(), SchedulingSettings(), TIMEZONE, SECRET, waitlist=join)


class Chat:
    """One patient's conversation: `say` returns the replies' text; buttons and state are kept."""

    def __init__(self, talk: Conversation, flow: str, first: str, channel="web", sender=None, now=NOW, **kw):
        self.talk, self.now = talk, now
        self.ctx = Context(sender or f"web-{uuid.uuid4().hex}", channel, now, lambda a: f"http://x/calendar/{a}.ics")
        self.state, self.turn = talk.start(flow, first, self.ctx, **kw)

    @property
    def text(self) -> str:
        return " ".join(m["text"] for m in self.turn.messages)

    @property
    def buttons(self) -> list[str]:
        return [b["title"] for m in self.turn.messages for b in m["buttons"]]

    def say(self, text: str) -> str:
        assert self.state is not None, "the conversation is over"
        self.ctx.now = self.now
        self.state, self.turn = self.talk.reply(self.state, text, self.ctx)
        return self.text


def patient_with_appointment(scheduler, days_ahead=5, phone="+15555550177", name=None):
    name = name or "Ada " + "".join(random.choice("bcdfghjklmnprstvz") for _ in range(8)).capitalize()
    patient = scheduler.create_patient(name, date(1970, 5, 17), phone)
    slot = scheduler.find_slots(
        SlotQuery(
            start=NOW + timedelta(days=days_ahead), end=NOW + timedelta(days=days_ahead + 3), visit_type="follow_up"
        ),
        now=NOW,
    )[0]
    appointment = scheduler.book(slot.id, patient.id, "follow_up", now=NOW)
    return patient, appointment


def answer_triage(chat: Chat, severity="Moderate") -> None:
    """Answer the triage questions as a well adult would: no to each warning sign."""
    preferred = ("No", "Me (adult)", "1 to 3 days", severity, "None of these", "Haven't taken it")
    for _ in range(12):
        if chat.state is None or chat.state.get("step") != "triage":
            return
        options = chat.buttons
        chat.say(next((o for o in preferred if o in options), "no"))


def code_sent(engine, patient_id) -> str:
    with engine.begin() as conn:
        body = conn.execute(
            select(sched_messages.c.body)
            .where(sched_messages.c.patient_id == str(patient_id), sched_messages.c.kind == "otp")
            .order_by(sched_messages.c.id.desc())
        ).scalar()
    return re.search(r"\b(\d{6})\b", body).group(1)


def test_a_new_patient_books_a_check_up_on_the_day_and_time_asked(talk, scheduler):
    chat = Chat(talk, "book", "I'd like to book a check-up")
    assert "been a patient" in chat.text
    assert "When would suit you" in chat.say("No, I'm new")
    reply = chat.say("Tuesday morning please")
    assert "free" in reply and len(chat.buttons) >= 2
    assert all("Tue" in b for b in chat.buttons[:-1])
    assert "full name" in chat.say("1")
    assert "date of birth" in chat.say("my name is Grace Testpatient")
    assert "mobile number" in chat.say("03/14/1985")
    assert "Book Tue" in chat.say("(555) 555-0199")
    reply = chat.say("yes")
    assert "You're booked" in reply and "calendar" in reply and chat.state is None
    patient = scheduler.match_patient("grace testpatient", date(1985, 3, 14))
    [appointment] = scheduler.appointments_for(patient.id, now=NOW)
    assert appointment.visit_type == "new_patient" and appointment.status == AppointmentStatus.BOOKED
    local = appointment.start.astimezone(talk.tz)
    assert local.weekday() == 1 and local.hour < 12


def test_an_emergency_reason_gets_no_booking_and_a_person(talk, scheduler):
    chat = Chat(talk, "book", "I need an appointment for crushing chest pain, I'm sweating and short of breath")
    assert chat.state is None and "911" in chat.text
    assert chat.turn.handoff[0] == HandoffReason.TRIAGE_EMERGENCY
    assert not any(b for b in chat.buttons if "Tue" in b or "Mon" in b)


def test_an_urgent_reason_is_offered_only_today_or_tomorrow(talk, scheduler):
    chat = Chat(talk, "book", "I need an appointment because of burning when I pee and a fever with back pain")
    answer_triage(chat)
    assert chat.state["level"] == "urgent", chat.text
    if chat.state["step"] == "returning":
        chat.say("yes I have been before")
    assert chat.state["step"] == "pick", chat.text
    offered = chat.state["offered"]
    tomorrow_end = datetime(2026, 12, 15, 0, 0, tzinfo=talk.tz)
    assert offered and all(datetime.fromisoformat(s["start"]) < tomorrow_end for s in offered)
    assert "Talk to a person" in chat.buttons


def test_self_care_gets_advice_and_may_still_book(talk):
    chat = Chat(talk, "book", "can I book an appointment for a mild cold, runny nose since yesterday")
    answer_triage(chat, severity="Mild")
    if chat.state.get("level") != "self_care":
        pytest.skip(f"the triage engine called this {chat.state.get('level')}")
    assert "Book anyway" in chat.buttons
    assert "been a patient" in chat.say("book anyway")


def test_impossible_dates_get_a_clear_reply_and_nothing_is_lost(talk):
    chat = Chat(talk, "book", "I want to book a follow-up")
    chat.say("yes I've been before")
    assert "doesn't exist" in chat.say("the 31st of February")
    assert chat.state["step"] == "prefs"
    assert "free" in chat.say("Wednesday afternoon")
    assert all("Wed" in b for b in chat.buttons[:-1])


def test_a_correction_mid_flow_changes_the_day_and_keeps_the_rest(talk):
    chat = Chat(talk, "book", "book me a follow-up please")
    chat.say("yes")
    chat.say("Monday afternoon")
    assert all("Mon" in b for b in chat.buttons[:-1])
    chat.say("actually Thursday")
    assert chat.state["step"] == "pick" and all("Thu" in b for b in chat.buttons[:-1])
    for slot in chat.state["offered"]:
        assert datetime.fromisoformat(slot["start"]).astimezone(talk.tz).hour >= 12


def test_go_back_and_a_person_at_any_time(talk):
    chat = Chat(talk, "book", "I need an appointment for a check-up")
    chat.say("yes")
    chat.say("earliest")
    chat.say("2")
    assert "date of birth" in chat.say("Alan Turingtest")
    assert "full name" in chat.say("go back")
    assert "date of birth" in chat.say("Alan Turingtest")
    chat.say("talk to a person")
    assert chat.state is None and chat.turn.handoff[0] == HandoffReason.REQUEST_HUMAN


def test_a_slot_taken_while_the_patient_decided_offers_others(talk, scheduler):
    chat = Chat(talk, "book", "book a check-up")
    chat.say("I'm new")
    chat.say("earliest")
    taken = chat.state["offered"][0]["id"]
    other = scheduler.create_patient("Someone Else", date(1990, 1, 1), None)
    scheduler.book(taken, other.id, "new_patient", now=NOW)  # before the patient picks it
    assert "just taken" in chat.say("1")
    assert chat.state["step"] == "pick" and taken not in [s["id"] for s in chat.state["offered"]]
    chat.say("1")
    chosen = chat.state["chosen"]["id"]
    chat.say("Grace Hopperr")
    chat.say("12/09/1956")
    chat.say("555-555-0142")
    chat.now = NOW + timedelta(minutes=20)  # the hold ran out while the patient decided
    scheduler.book(chosen, other.id, "new_patient", now=chat.now)
    assert "just taken" in chat.say("yes")
    assert chat.state["step"] == "pick"


def test_cancel_needs_the_code_texted_to_the_number_on_file(talk, scheduler, schedule_engine):
    patient, appointment = patient_with_appointment(scheduler)
    chat = Chat(talk, "cancel", "I need to cancel my appointment")
    chat.say(patient.name)
    reply = chat.say("05/17/1970")
    assert "code" in reply and "ending in 77" in reply
    assert "Dec" not in reply, "nothing about the appointment before verification"
    assert "isn't right" in chat.say("000000" if code_sent(schedule_engine, patient.id) != "000000" else "111111")
    reply = chat.say(code_sent(schedule_engine, patient.id))
    assert "Cancel your appointment on" in reply
    assert "cancelled" in chat.say("yes")
    assert scheduler.appointment(appointment.id).status == AppointmentStatus.CANCELLED
    assert appointment.slot_id in [
        s.id for s in scheduler.find_slots(SlotQuery(start=NOW, end=NOW + timedelta(days=14), limit=500), now=NOW)
    ]


def test_a_wrong_date_of_birth_three_times_goes_to_a_person(talk, scheduler):
    patient, _ = patient_with_appointment(scheduler)
    chat = Chat(talk, "check", "when is my appointment?")
    chat.say(patient.name)
    assert "couldn't find" in chat.say("01/01/1971")
    assert "couldn't find" in chat.say("01/02/1971")
    reply = chat.say("01/03/1971")
    assert chat.state is None and chat.turn.handoff[0] == HandoffReason.SCHEDULING_IDENTITY
    assert "Dec" not in reply


def test_an_expired_code_is_refused_and_a_new_one_works(scheduler, schedule_engine, redis_url):
    client = redis.Redis.from_url(redis_url)
    codes = OneTimeCodes(
        client,
        schedule_engine,
        SchedulingSettings(),
        prefix=f"texp{uuid.uuid4().hex[:6]}",
        secret=SECRET,
        ttl_seconds=1,
    )
    talk = Conversation(scheduler, codes, default_engine(), SchedulingSettings(), TIMEZONE, SECRET)
    patient, _ = patient_with_appointment(scheduler)
    chat = Chat(talk, "check", "when is my appointment")
    chat.say(patient.name)
    chat.say("May 17, 1970")
    old = code_sent(schedule_engine, patient.id)
    time.sleep(1.3)
    assert "expired" in chat.say(old)
    assert "code" in chat.say("send a new code")
    assert "Your upcoming appointments" in chat.say(code_sent(schedule_engine, patient.id))


def test_an_sms_from_the_number_on_file_needs_no_code(talk, scheduler):
    patient, appointment = patient_with_appointment(scheduler, phone="+15555550166")
    chat = Chat(talk, "check", "when's my appt", channel="sms", sender=phone_key(SECRET, "+15555550166"))
    chat.say(patient.name)
    reply = chat.say("1970-05-17")
    assert "Your upcoming appointments" in reply and chat.state is None


def test_inside_the_cut_off_a_cancel_goes_to_staff(talk, scheduler):
    patient, appointment = patient_with_appointment(scheduler, days_ahead=0, phone="+15555550155")
    now = appointment.start - timedelta(hours=10)
    chat = Chat(
        talk, "cancel", "cancel my appointment", channel="sms", sender=phone_key(SECRET, "+15555550155"), now=now
    )
    chat.say(patient.name)
    chat.say("05/17/1970")
    assert chat.state is None and chat.turn.handoff[0] == HandoffReason.SCHEDULING_CUTOFF
    assert scheduler.appointment(appointment.id).status == AppointmentStatus.BOOKED


def test_reschedule_books_the_new_time_before_releasing_the_old(talk, scheduler):
    patient, old = patient_with_appointment(scheduler, phone="+15555550144")
    chat = Chat(
        talk, "reschedule", "I need to move my appointment", channel="sms", sender=phone_key(SECRET, "+15555550144")
    )
    chat.say(patient.name)
    assert "new time" in chat.say("05/17/1970")
    chat.say("Friday")
    chat.say("1")
    assert "Move your appointment" in chat.text
    assert "now" in chat.say("yes")
    new = scheduler.appointments_for(patient.id, now=NOW)[0]
    assert new.replaces_id == old.id and new.visit_type == "follow_up"
    old = scheduler.appointment(old.id)
    assert old.status == AppointmentStatus.CANCELLED and old.replaced_by_id == new.id


def test_a_reminder_reply_names_the_appointment_only_for_its_own_number(talk, scheduler):
    patient, appointment = patient_with_appointment(scheduler, phone="+15555550133")
    entities = {"appointment_id": appointment.id}
    mine = Chat(
        talk,
        "cancel",
        "/cancel_appointment",
        channel="sms",
        sender=phone_key(SECRET, "+15555550133"),
        entities=entities,
    )
    assert "Cancel your appointment on" in mine.text
    theirs = Chat(
        talk,
        "cancel",
        "/cancel_appointment",
        channel="sms",
        sender=phone_key(SECRET, "+15555550999"),
        entities=entities,
    )
    assert "full name" in theirs.text and "Dec" not in theirs.text


def test_a_patient_may_ask_for_an_earlier_time_when_booking(talk, scheduler, schedule_engine):
    chat = Chat(talk, "book", "book a follow-up")
    chat.say("yes")
    chat.say("the week after next")
    chat.say("1")
    patient = scheduler.create_patient("Wait Listperson", date(1979, 1, 2), "+15555550122")
    chat.say(patient.name)
    chat.say("01/02/1979")
    assert any("earlier" in b for b in chat.buttons)
    assert "waitlist" in chat.say("yes, and text me if an earlier time frees up")
    with schedule_engine.begin() as conn:
        row = conn.execute(select(sched_waitlist).where(sched_waitlist.c.patient_id == patient.id)).one()
    assert row.status == "waiting" and row.appointment_id == scheduler.appointments_for(patient.id, now=NOW)[0].id


def test_replies_the_slot_list_cannot_read_show_it_again(talk):
    chat = Chat(talk, "book", "book a follow-up")
    chat.say("yes")
    chat.say("earliest")
    offered = chat.buttons
    for reply in ("ok", "hmm", "what", "stop"):
        chat.say(reply)
        if chat.state is None:
            assert reply == "stop" and "stopped" in chat.text
            break
        assert chat.state["step"] == "pick" and chat.buttons[: len(offered)] == offered, reply


def test_times_of_day_are_found_on_a_busy_day(talk):
    chat = Chat(talk, "book", "book a follow-up")
    chat.say("yes")
    assert "free" in chat.say("monday after 2pm")
    for slot in chat.state["offered"]:
        local = datetime.fromisoformat(slot["start"]).astimezone(talk.tz)
        assert local.weekday() == 0 and local.hour >= 14


def test_an_offered_time_may_be_picked_by_its_clock_time(talk):
    chat = Chat(talk, "book", "book a follow-up")
    chat.say("yes")
    chat.say("earliest")
    chat.say("monday afternoon")
    clocks = [datetime.fromisoformat(s["start"]).astimezone(talk.tz) for s in chat.state["offered"]]
    labels = [f"{c.hour % 12 or 12}:{c.minute:02d}" for c in clocks]
    unique = [i for i, label in enumerate(labels) if labels.count(label) == 1]
    assert unique, labels
    offered = chat.state["offered"]
    chat.say(f"the {labels[unique[-1]]} one")
    assert chat.state["chosen"]["id"] == offered[unique[-1]]["id"]


@pytest.mark.parametrize(
    "answer, new", [("I'm not new", False), ("yes I've been before", False), ("no, first time", True)]
)
def test_new_or_returning_reads_negation(talk, answer, new):
    chat = Chat(talk, "book", "book a check-up")
    chat.say(answer)
    assert chat.state["new_patient"] is new


def test_a_returning_patient_who_is_not_found_may_book_as_new(talk, scheduler):
    chat = Chat(talk, "book", "book a check-up")
    chat.say("yes")
    chat.say("earliest")
    chat.say("1")
    chat.say("Nobody Knownhere")
    assert "couldn't find" in chat.say("02/03/1990") and "No, I'm new" in chat.buttons
    assert "date of birth" in chat.say("no, I'm new")
    assert "mobile number" in chat.say("02/03/1990")


def test_triage_questions_not_understood_twice_move_on(talk):
    chat = Chat(talk, "book", "I need an appointment, I have a sore throat")
    first = chat.state["triage"]["current"]
    for reply in ("hmm", "asdf", "qwerty"):
        chat.say(reply)
        if chat.state is None or chat.state.get("step") != "triage":
            break
    assert chat.state is None or chat.state.get("step") != "triage" or chat.state["triage"]["current"] != first


def test_a_late_yes_does_not_book_a_time_that_has_passed(talk, scheduler):
    patient = scheduler.create_patient("Late Answerer", date(1980, 1, 1), "+15555550188")
    chat = Chat(talk, "book", "book a follow-up")
    chat.say("yes")
    chat.say("earliest")
    chat.say("1")
    chat.say(patient.name)
    chat.say("01/01/1980")
    chat.now = NOW + timedelta(days=3)
    assert "passed" in chat.say("yes")
    assert scheduler.appointments_for(patient.id, now=NOW) == []


def test_a_reminder_reply_for_a_cancelled_appointment_says_so(talk, scheduler):
    patient, appointment = patient_with_appointment(scheduler, phone="+15555550121")
    scheduler.cancel(appointment.id, by="staff")
    chat = Chat(
        talk,
        "reschedule",
        "/reschedule_appointment",
        channel="sms",
        sender=phone_key(SECRET, "+15555550121"),
        entities={"appointment_id": appointment.id},
    )
    assert chat.state is None and "already been cancelled" in chat.text


def test_confirmations_are_read_by_words_not_letters(talk, scheduler):
    patient = scheduler.create_patient("Word Reader", date(1981, 1, 1), "+15555550187")
    chat = Chat(talk, "book", "book a follow-up")
    chat.say("yes")
    chat.say("earliest")
    chat.say("1")
    chat.say(patient.name)
    chat.say("01/01/1981")
    assert "You're booked" in chat.say("yes, it's for my mother")


def test_sms_lists_the_slots_in_full_in_the_text(talk):
    chat = Chat(talk, "book", "book a follow-up", channel="sms", sender="sms-x")
    chat.say("yes")
    chat.say("earliest")
    assert "1. " in chat.text and "2. " in chat.text and "Dr." in chat.text


def test_identity_tries_for_one_name_are_limited_across_conversations(scheduler, codes, redis_url):
    from careline.scheduling.identity import identity_limiter

    limit = identity_limiter(redis.Redis.from_url(redis_url), "2/hour", prefix=f"tid{uuid.uuid4().hex[:6]}")
    talk = Conversation(
        scheduler, codes, default_engine(), SchedulingSettings(), TIMEZONE, SECRET, identity_limit=limit
    )
    patient, _ = patient_with_appointment(scheduler)
    for dob in ("01/01/1971", "01/02/1971"):  # two conversations, one wrong try each
        chat = Chat(talk, "check", "when is my appointment")
        chat.say(patient.name)
        assert "couldn't find" in chat.say(dob)
    chat = Chat(talk, "check", "when is my appointment")
    chat.say(patient.name)
    chat.say("05/17/1970")  # right, but the name had its tries
    assert chat.state is None and chat.turn.handoff[0] == HandoffReason.SCHEDULING_IDENTITY
