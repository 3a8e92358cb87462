"""The add-to-calendar file of an appointment (iCalendar, RFC 5545), and the signed token in its
link (channels/routes/calendar.py serves GET /calendar/<token>.ics).

The file says where and when, and with whom, never why: a calendar is often shared or synced to
places the clinic does not control, so the visit reason and the patient's name stay out of it.
Times are written in UTC; the description gives the clinic's local time for people to read.

The token is the appointment id and a truncated HMAC-SHA256 of it under CONVERSATION_SECRET: the
link cannot be forged or pointed at another appointment, and holds no patient data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event

from careline.scheduling.model import Appointment, AppointmentStatus
from knowledge.messages import msg

PRODID = "-//CareLine//Appointments//EN"
TOKEN_BYTES = 16  # 128 bits of the HMAC: 22 characters in the link
REMINDER_BEFORE = timedelta(days=1)
# An appointment in one of these is off the calendar: the event says CANCELLED.
CANCELLED = frozenset({AppointmentStatus.CANCELLED, AppointmentStatus.ENTERED_IN_ERROR})


def appointment_ics(
    appointment: Appointment,
    *,
    clinic_name: str,
    location_address: str,
    timezone: str,
    uid_domain: str = "careline.local",
) -> bytes:
    """One VEVENT in a VCALENDAR (METHOD PUBLISH): UID, DTSTAMP, DTSTART/DTEND in UTC, a summary
    naming the clinic only, the location, the provider, STATUS CONFIRMED or CANCELLED, and a
    reminder a day before. The same appointment always has the same UID, so a calendar updates
    the event it already has (a cancelled one comes with a higher SEQUENCE)."""
    cancelled = appointment.status in CANCELLED
    event = Event()
    event.add("uid", f"appointment-{appointment.id}@{uid_domain}")
    event.add("dtstamp", datetime.now(UTC).replace(microsecond=0))
    event.add("dtstart", appointment.start.astimezone(UTC))
    event.add("dtend", appointment.end.astimezone(UTC))
    # Patient-facing words of the file come from the message catalogue (calendar apps show them as is).
    event.add("summary", msg("scheduling.ics.summary", clinic_name=clinic_name))
    event.add("location", ", ".join(part for part in (appointment.location_name, location_address) if part))
    event.add("description", _description(appointment, clinic_name, ZoneInfo(timezone)))
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("sequence", 1 if cancelled else 0)
    event.add("transp", "OPAQUE")
    if not cancelled:
        event.add_component(_reminder(clinic_name))
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add_component(event)
    return calendar.to_ical()


def _description(appointment: Appointment, clinic_name: str, tz: ZoneInfo) -> str:
    local = appointment.start.astimezone(tz)
    when = msg(
        "scheduling.ics.when",
        weekday=f"{local:%A}",
        month=f"{local:%B}",
        day=local.day,
        year=local.year,
        time=f"{local:%I:%M %p}".lstrip("0"),
        zone=local.tzname(),
    )
    who = appointment.provider_name
    lines = [
        msg("scheduling.ics.with", provider=who, location=appointment.location_name) if who else "",
        when,
        msg("scheduling.ics.change", clinic_name=clinic_name),
    ]
    if appointment.status in CANCELLED:
        lines.insert(0, msg("scheduling.ics.cancelled"))
    return "\n".join(line for line in lines if line)


def _reminder(clinic_name: str) -> Alarm:
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", msg("scheduling.ics.alarm", clinic_name=clinic_name))
    alarm.add("trigger", -REMINDER_BEFORE)
    return alarm


def calendar_token(secret: str, appointment_id: str) -> str:
    """`<appointment id>.<signature>`: the calendar link's token (URL-safe)."""
    return f"{appointment_id}.{_signature(secret, appointment_id)}"


def read_calendar_token(secret: str, token: str) -> str | None:
    """The appointment id of a token this secret signed, else None."""
    appointment_id, dot, signature = (token or "").rpartition(".")
    if not dot or not appointment_id or not signature:
        return None
    expected = _signature(secret, appointment_id)
    return appointment_id if hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")) else None


def _signature(secret: str, appointment_id: str) -> str:
    mac = hmac.new(secret.encode(), f"calendar:{appointment_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:TOKEN_BYTES]).rstrip(b"=").decode()
