"""Helpers of the schedule's SMS tests (codes, reminders, waitlist offers, replies): patients with
numbers of their own, bookings at known times, and a worker sending to the Twilio stand-in."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from careline.scheduling.model import Appointment, Patient, SlotQuery
from careline.scheduling.schema import sched_messages
from careline.scheduling.worker import SchedulingWorker, twilio_callables
from careline.settings import SchedulingSettings
from channels.twilio_sender import TwilioSender

from .conftest import BEFORE, MONDAY, SECRET, TIMEZONE

TZ = ZoneInfo(TIMEZONE)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in the clinic's time zone, as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


def new_number() -> str:
    return f"+1555{random.randint(0, 9_999_999):07d}"


def settings(**overrides) -> SchedulingSettings:
    return SchedulingSettings(_env_file=None, **overrides)


def new_patient(scheduler, phone: str | None = "new") -> Patient:
    number = new_number() if phone == "new" else phone
    return scheduler.create_patient(f"Test Patient {uuid.uuid4().hex[:6]}", date(1980, 5, 17), number)


def book(scheduler, patient: Patient, day: date = MONDAY, hour: int = 9, visit_type: str = "follow_up") -> Appointment:
    """Book the first free slot of `visit_type` starting at or after `hour` o'clock on `day`."""
    query = SlotQuery(local(day, hour), local(day, 23), visit_type=visit_type, limit=1)
    slot = scheduler.find_slots(query, now=BEFORE)[0]
    return scheduler.book(slot.id, patient.id, visit_type, now=BEFORE)


def make_worker(engine, scheduler, standin, redis=None, prefix: str = "t", send=None, **kw) -> SchedulingWorker:
    sender = TwilioSender(
        standin.account_sid, standin.auth_token, standin.phone_number, api_base_url=standin.base_url, backoff=0.01
    )
    real_send, find_sent = twilio_callables(sender)
    return SchedulingWorker(
        engine,
        scheduler,
        send or real_send,
        kw.pop("settings", None) or settings(),
        TIMEZONE,
        kw.pop("worker_id", None) or f"w-{uuid.uuid4().hex[:6]}",
        SECRET,
        redis,
        find_sent=find_sent,
        prefix=prefix,
        clinic_name="Maplewood Family Clinic",
        **kw,
    )


def rows(engine, **where) -> list:
    stmt = select(sched_messages).order_by(sched_messages.c.id)
    for column, value in where.items():
        stmt = stmt.where(sched_messages.c[column] == value)
    with engine.connect() as conn:
        return conn.execute(stmt).all()


def texts_to(standin, number: str) -> list[str]:
    return [m.body for m in standin.messages(to=number)]


def hours_later(moment: datetime, hours: float) -> datetime:
    return moment + timedelta(hours=hours)
