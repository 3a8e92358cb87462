"""Appointment reminders: planned as sched_messages rows by the worker itself, so every booking
path (the chat, the staff console, a FHIR server's own bookings) gets them.

`plan_reminders` looks at the active appointments that start within the largest offset (+1 h) and
inserts one row per offset (REMINDER_HOURS, 72 and 24 by default), keyed
"reminder:<hours>h:<appointment id>:<start>": a moved appointment (a new start, or a new
appointment) gets new rows, and the old ones are skipped as "changed" when they come due. An
offset that had already passed when the appointment was booked is not sent, except the last
one when the appointment is more than two hours away (a visit booked for tomorrow still gets its
24-hour reminder, at once). The text is built when it is sent, from the appointment as it then
is, in the clinic's time zone.

Also here: the sending hours (SMS_SENDING_HOURS, clinic time zone) and how a time reads.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from careline.scheduling.model import ACTIVE_STATUSES, Appointment, Scheduler
from careline.scheduling.schema import sched_messages
from knowledge.messages import msg

log = logging.getLogger(__name__)

# An offset missed at booking is still sent for the last offset if the visit is further off than this.
LATE_BOOKING_MIN = timedelta(hours=2)
PLANNING_MARGIN = timedelta(hours=1)
MAX_KEY = 80  # sched_messages.dedupe_key


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def reminder_key(hours: int, appointment_id: str, start: datetime) -> str:
    key = f"reminder:{hours}h:{appointment_id}:{utc(start).strftime('%Y%m%dT%H%MZ')}"
    if len(key) > MAX_KEY:  # a FHIR server's long ids
        key = f"reminder:{hours}h:{hashlib.sha256(key.encode()).hexdigest()[:48]}"
    return key


def due_times(appointment: Appointment, offsets: list[int], now: datetime) -> list[tuple[int, datetime]]:
    """(hours, due) of the reminders this appointment gets. Not one whose time had passed at
    booking (but the last offset, at booking, if the visit was more than 2 h away then); not a
    longer one whose time passed while a shorter one is due too (a worker that was down)."""
    start = utc(appointment.start)
    booked = utc(appointment.created_at) or now
    planned: list[tuple[int, datetime]] = []
    for hours in sorted(set(offsets), reverse=True):
        due = start - timedelta(hours=hours)
        if due >= booked:
            planned.append((hours, due))
        elif hours == min(offsets) and start - booked > LATE_BOOKING_MIN:
            planned.append((hours, booked))
    overdue = [p for p in planned if p[1] <= now]
    if len(overdue) > 1:  # only the latest of the overdue ones goes
        planned = [p for p in planned if p[1] > now or p is overdue[-1]]
    return planned


def plan_reminders(engine: Engine, scheduler: Scheduler, now: datetime | None = None, offsets=None) -> int:
    """Insert the reminder rows of the active appointments starting within the largest offset
    (+1 h). Idempotent (the dedupe key is unique). Returns how many rows were new."""
    from careline.settings import SchedulingSettings

    now = utc(now) or datetime.now(UTC)
    offsets = list(offsets or SchedulingSettings().reminder_offsets_hours)
    if not offsets:
        return 0
    horizon = now + timedelta(hours=max(offsets)) + PLANNING_MARGIN
    rows = []
    for appointment in scheduler.appointments_between(now, horizon):
        if appointment.status not in ACTIVE_STATUSES or utc(appointment.start) <= now:
            continue
        for hours, due in due_times(appointment, offsets, now):
            rows.append(
                {
                    "dedupe_key": reminder_key(hours, appointment.id, appointment.start),
                    "kind": f"reminder_{hours}h",
                    "patient_id": str(appointment.patient_id),
                    "appointment_id": str(appointment.id),
                    "slot_id": str(appointment.slot_id),
                    "due_at": due,
                    "status": "pending",
                    "attempts": 0,
                }
            )
    return insert_new(engine, rows)


def insert_new(engine: Engine, rows: list[dict]) -> int:
    """Insert the rows whose dedupe key is new; another worker inserting the same ones at the same
    time is fine (the unique key refuses the second)."""
    if not rows:
        return 0
    keys = [r["dedupe_key"] for r in rows]
    with engine.connect() as conn:
        known = set()
        for i in range(0, len(keys), 500):
            known |= set(
                conn.execute(
                    select(sched_messages.c.dedupe_key).where(sched_messages.c.dedupe_key.in_(keys[i : i + 500]))
                ).scalars()
            )
    added = 0
    for row in rows:
        if row["dedupe_key"] in known:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(insert(sched_messages).values(**row))
            added += 1
        except IntegrityError:
            pass  # planned by another worker just now
    if added:
        log.info("reminders planned rows=%d", added)
    return added


# --- sending hours and how a time reads --------------------------------------------------------
class SendingHours:
    """SMS_SENDING_HOURS ("08:00-20:00") in the clinic's time zone; a window past midnight
    ("20:00-08:00") wraps; "00:00-00:00" is any time."""

    def __init__(self, spec: str, tz: str | ZoneInfo):
        try:
            opening, closing = ((int(x) for x in part.strip().split(":")) for part in spec.split("-"))
            self.opening, self.closing = time(*opening), time(*closing)
        except (TypeError, ValueError):
            raise ValueError(f"SMS_SENDING_HOURS must be HH:MM-HH:MM, not {spec!r}") from None
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)

    def open_at(self, moment: datetime) -> bool:
        t = utc(moment).astimezone(self.tz).time()
        if self.opening == self.closing:
            return True
        if self.opening < self.closing:
            return self.opening <= t < self.closing
        return t >= self.opening or t < self.closing

    def next_opening(self, moment: datetime) -> datetime:
        """When the window next opens (now, if it is open), in UTC."""
        if self.open_at(moment):
            return utc(moment)
        local = utc(moment).astimezone(self.tz)
        day = local.date() if local.time() < self.opening else local.date() + timedelta(days=1)
        return datetime.combine(day, self.opening, tzinfo=self.tz).astimezone(UTC)


def describe_when(start: datetime, tz: ZoneInfo) -> str:
    """ "Tue Mar 4 at 2:30 PM" in the clinic's time zone."""
    local = utc(start).astimezone(tz)
    return f"{local.strftime('%a %b')} {local.day} at {local.strftime('%I:%M %p').lstrip('0')}"


def reminder_text(appointment: Appointment, tz: ZoneInfo, clinic_name: str, address: str = "") -> str:
    where = f"{appointment.location_name} ({address})" if address else appointment.location_name
    return msg(
        "scheduling.reminder.sms",
        clinic_name=clinic_name,
        when=describe_when(appointment.start, tz),
        provider=appointment.provider_name,
        location=where,
    )
