"""GET /calendar/<token>.ics (channels/routes/calendar.py) through the gateway's own app (routers,
middleware), on the real SQL schedule in SQLite: one location, one provider, two booked
appointments, one of them then cancelled. The lifespan does not run: the scheduler is handed in
with `app.dependency_overrides`, so no Redis or Rasa is needed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlalchemy import insert

from careline.scheduling.ics import calendar_token
from careline.scheduling.model import BackendUnavailable
from careline.scheduling.schema import sched_locations, sched_providers, sched_slots, sched_visit_types
from careline.scheduling.sql import SqlScheduler
from careline.settings import Settings
from channels import deps
from channels.app import create_app
from channels.db import make_engine
from channels.safety import PassThroughScreen

SECRET = "c" * 64
ZONE = "America/New_York"


@pytest.fixture
def scheduler(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
    with engine.begin() as conn:
        conn.execute(insert(sched_locations).values(id="main", name="Maplewood Main", address="1200 Oak Street"))
        conn.execute(insert(sched_providers).values(id="patel", name="Dr. Maya Patel", role="", active=True))
        conn.execute(insert(sched_visit_types).values(id="follow_up", name="Follow-up", minutes=30))
        day = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=3)
        for hour in (9, 10):
            start = datetime.combine(day, time(hour), ZoneInfo(ZONE)).astimezone(UTC)
            conn.execute(
                insert(sched_slots).values(
                    provider_id="patel",
                    location_id="main",
                    start=start,
                    end=start + timedelta(minutes=30),
                    visit_types="follow_up",
                    status="free",
                    version=0,
                )
            )
    yield SqlScheduler(engine, timezone=ZONE, secret=SECRET)
    engine.dispose()


@pytest.fixture
def client(scheduler):
    settings = Settings(conversation_secret=SECRET, clinic_timezone=ZONE, _env_file=None)
    app = create_app(settings, screen=PassThroughScreen())
    app.dependency_overrides[deps.get_scheduler] = lambda: scheduler
    return TestClient(app)


def book(scheduler: SqlScheduler, slot_id: str, reason: str = "itchy rash"):
    patient = scheduler.create_patient("Jane Doe", date(1985, 3, 14), "+15555550123")
    return scheduler.book(slot_id, patient.id, "follow_up", reason=reason)


def test_the_link_serves_the_appointment_file(client, scheduler):
    appointment = book(scheduler, "1")
    response = client.get(f"/calendar/{calendar_token(SECRET, appointment.id)}.ics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="appointment.ics"'
    assert response.headers["cache-control"] == "no-store"
    event = next(c for c in Calendar.from_ical(response.content).walk() if c.name == "VEVENT")
    assert event.decoded("DTSTART") == appointment.start
    assert event.decoded("DTEND") == appointment.end
    assert str(event["LOCATION"]) == "Maplewood Main, 1200 Oak Street"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert b"rash" not in response.content and b"Jane" not in response.content


def test_a_cancelled_appointment_downloads_as_cancelled(client, scheduler):
    appointment = book(scheduler, "2")
    scheduler.cancel(appointment.id)
    response = client.get(f"/calendar/{calendar_token(SECRET, appointment.id)}.ics")
    assert response.status_code == 200
    assert b"STATUS:CANCELLED" in response.content


@pytest.mark.parametrize(
    "token",
    [
        calendar_token("x" * 64, "1"),  # signed with another secret
        calendar_token(SECRET, "1")[:-2] + "AA",  # tampered
        calendar_token(SECRET, "999"),  # signed, but no such appointment
        calendar_token(SECRET, "not-a-number"),
        "1",
        "1.",
    ],
)
def test_anything_else_is_a_bare_404(client, scheduler, token):
    book(scheduler, "1")
    response = client.get(f"/calendar/{token}.ics")
    assert response.status_code == 404
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"


def test_another_appointment_cannot_be_reached_with_a_token(client, scheduler):
    first, second = book(scheduler, "1"), book(scheduler, "2")
    signature = calendar_token(SECRET, first.id).rsplit(".", 1)[1]
    assert client.get(f"/calendar/{second.id}.{signature}.ics").status_code == 404


def test_a_schedule_that_cannot_be_reached_is_a_503(client, scheduler):
    appointment = book(scheduler, "1")

    class Down:
        def appointment(self, appointment_id):
            raise BackendUnavailable("down")

    client.app.dependency_overrides[deps.get_scheduler] = lambda: Down()
    response = client.get(f"/calendar/{calendar_token(SECRET, appointment.id)}.ics")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "60"
