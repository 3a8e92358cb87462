"""The add-to-calendar file (careline/scheduling/ics.py), read back with icalendar, and the signed
token of its link."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from careline.scheduling.ics import appointment_ics, calendar_token, read_calendar_token
from careline.scheduling.model import Appointment, AppointmentStatus

SECRET = "k" * 64
APPOINTMENT = Appointment(
    id="42",
    patient_id="7",
    slot_id="99",
    start=datetime(2026, 12, 8, 20, 0, tzinfo=UTC),  # 3:00 PM in New York
    end=datetime(2026, 12, 8, 20, 30, tzinfo=UTC),
    provider_id="patel",
    provider_name="Dr. Maya Patel",
    location_id="main",
    location_name="Maplewood Main",
    visit_type="follow_up",
    status=AppointmentStatus.BOOKED,
    reason="rash on my left arm",
)


def ics(appointment: Appointment = APPOINTMENT) -> bytes:
    return appointment_ics(
        appointment,
        clinic_name="Maplewood Family Clinic",
        location_address="1200 Oak Street, Maplewood",
        timezone="America/New_York",
    )


def event_of(body: bytes):
    calendar = Calendar.from_ical(body)
    events = [c for c in calendar.walk() if c.name == "VEVENT"]
    assert len(events) == 1
    return calendar, events[0]


def test_the_file_is_one_published_event_in_utc():
    body = ics()
    assert body.startswith(b"BEGIN:VCALENDAR\r\n") and body.endswith(b"END:VCALENDAR\r\n")
    calendar, event = event_of(body)
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]) == "-//CareLine//Appointments//EN"
    assert str(calendar["METHOD"]) == "PUBLISH"
    assert str(event["UID"]) == "appointment-42@careline.local"
    assert event.decoded("DTSTART") == APPOINTMENT.start
    assert event.decoded("DTEND") == APPOINTMENT.end
    assert b"DTSTART:20261208T200000Z" in body and b"DTEND:20261208T203000Z" in body
    stamp = event.decoded("DTSTAMP")
    assert stamp.tzinfo is not None and abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)


def test_it_says_where_when_and_with_whom_but_not_why():
    body = ics()
    _, event = event_of(body)
    assert str(event["SUMMARY"]) == "Appointment at Maplewood Family Clinic"
    assert str(event["LOCATION"]) == "Maplewood Main, 1200 Oak Street, Maplewood"
    description = str(event["DESCRIPTION"])
    assert "Dr. Maya Patel" in description
    assert "Tuesday, December 8, 2026 at 3:00 PM (EST)" in description
    assert str(event["STATUS"]) == "CONFIRMED"
    assert b"rash" not in body and b"follow_up" not in body  # the visit reason is PHI


def test_a_reminder_a_day_before():
    _, event = event_of(ics())
    alarms = [c for c in event.walk() if c.name == "VALARM"]
    assert len(alarms) == 1
    assert str(alarms[0]["ACTION"]) == "DISPLAY"
    assert alarms[0].decoded("TRIGGER") == timedelta(days=-1)


@pytest.mark.parametrize("status", [AppointmentStatus.CANCELLED, AppointmentStatus.ENTERED_IN_ERROR])
def test_a_cancelled_appointment_updates_the_same_event(status):
    _, event = event_of(ics(replace(APPOINTMENT, status=status)))
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == "appointment-42@careline.local"
    assert int(event["SEQUENCE"]) > 0
    assert not [c for c in event.walk() if c.name == "VALARM"]


def test_times_in_another_zone_and_summer_time():
    summer = replace(
        APPOINTMENT, start=datetime(2027, 7, 1, 16, 15, tzinfo=UTC), end=datetime(2027, 7, 1, 16, 45, tzinfo=UTC)
    )
    body = appointment_ics(summer, clinic_name="C", location_address="", timezone="America/Los_Angeles")
    _, event = event_of(body)
    assert event.decoded("DTSTART") == summer.start
    assert "Thursday, July 1, 2027 at 9:15 AM (PDT)" in str(event["DESCRIPTION"])
    assert str(event["LOCATION"]) == "Maplewood Main"


def test_the_token_names_the_appointment_and_cannot_be_forged():
    token = calendar_token(SECRET, "42")
    assert token.startswith("42.") and len(token) == len("42.") + 22
    assert token == calendar_token(SECRET, "42")
    assert read_calendar_token(SECRET, token) == "42"
    assert read_calendar_token(SECRET, calendar_token(SECRET, "appt.v2")) == "appt.v2"  # ids may hold dots
    signature = token.split(".")[1]
    assert read_calendar_token(SECRET, f"43.{signature}") is None  # another appointment
    assert read_calendar_token("x" * 64, token) is None  # another secret
    assert read_calendar_token(SECRET, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    for bad in ("", "42", "42.", ".abc", "42.é", "../42." + signature):
        assert read_calendar_token(SECRET, bad) is None
