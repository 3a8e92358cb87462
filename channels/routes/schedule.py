"""The staff side of scheduling: the schedule page (/staff/schedule) and its JSON API under
/staff/api (patients, free slots, the day and week view, book, move, cancel, status).

As the rest of the staff console (channels/routes/staff.py): every endpoint needs a staff session
(401), every change the session's CSRF token (403), and every change is one staff audit row with
ids only, never a patient's name, date of birth or phone number. Staff may read patients' names
here: they book for them. Scheduling errors become named errors (SlotTaken 409, NotFound 404,
NotAllowed 409, BackendUnavailable 503) through the app's handler for CareLineError.

Times go out as ISO 8601 in the clinic's time zone (CLINIC_TIMEZONE) and dates are read in it:
"the 3rd of March" is the clinic's 3rd of March.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from careline.scheduling import model
from careline.scheduling.identity import normalise_phone
from careline.scheduling.model import Appointment, AppointmentStatus, Patient, Slot, SlotQuery
from channels.deps import SchedulerDep, SettingsDep
from channels.errors import STATE_ERRORS, CareLineError, InvalidMessage
from channels.routes.staff import AuthDep, Body, Reader, Writer
from channels.staff.audit import StaffAction
from channels.staff.auth import StaffAuth, record
from channels.staff.sessions import StaffSession

log = logging.getLogger(__name__)

T = TypeVar("T")

ASSETS = {"schedule.js": "application/javascript", "schedule.css": "text/css"}
DATE_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STAFF_STATUSES = {
    "noshow": AppointmentStatus.NOSHOW,
    "arrived": AppointmentStatus.ARRIVED,
    "fulfilled": AppointmentStatus.FULFILLED,
    "entered-in-error": AppointmentStatus.ENTERED_IN_ERROR,
}
# An appointment in one of these says the person has been a patient here (follow-ups are theirs).
SEEN_STATUSES = frozenset({AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED, AppointmentStatus.NOSHOW})
STATUS_LABEL = {
    "proposed": "pending",
    "pending": "pending",
    "booked": "booked",
    "arrived": "marked arrived",
    "fulfilled": "completed",
    "cancelled": "cancelled",
    "noshow": "a no-show",
    "entered-in-error": "entered in error",
}
MAX_ID_CHARS = 64
MAX_SLOTS = 500  # a week of one clinic's free slots, with room
MAX_DAYS = 7
MIN_QUERY, MAX_QUERY, SEARCH_LIMIT = 2, 80, 20
MIN_NAME, MAX_NAME = 2, 160  # patients.name is String(160)
OLDEST_BIRTH_YEAR = 1900
MAX_REASON = 500  # the visit reason, in the patient's words
MAX_CANCEL_REASON = 120  # appointments.cancel_reason is String(120)


# --- named errors ------------------------------------------------------------------------------
class SlotGone(CareLineError):
    status_code = 409
    code = "slot_taken"


class ScheduleConflict(CareLineError):
    status_code = 409
    code = "not_allowed"


class ScheduleNotFound(CareLineError):
    status_code = 404
    code = "not_found"


class ScheduleUnavailable(CareLineError):
    status_code = 503
    code = "schedule_unavailable"


# The backends' reason codes (model.py: short codes, never patient data) as staff read them.
NOT_FOUND = {
    "unknown_slot": "No such slot.",
    "unknown_patient": "No such patient.",
    "unknown_appointment": "No such appointment.",
    "unknown_visit_type": "No such visit type.",
}
NOT_ALLOWED = {
    "visit_type_not_in_slot": "This slot is not for that visit type: choose one of the slot's visit types.",
    "visit_type_not_bookable": "That visit type cannot be booked this way.",
}


def named(exc: Exception, what: str) -> CareLineError:
    """The edge's error for a scheduling error; `what` names the thing looked for (404)."""
    code = str(exc)
    if isinstance(exc, model.SlotTaken):
        return SlotGone("That slot has just been booked or held by someone else: pick another one.")
    if isinstance(exc, model.NotFound):
        return ScheduleNotFound(NOT_FOUND.get(code, f"No such {what}."))
    if isinstance(exc, model.NotAllowed):
        if code == "visit_type_not_in_slot":
            return InvalidMessage(NOT_ALLOWED[code])
        if code.startswith("not_allowed_from_"):
            status = STATUS_LABEL.get(code.removeprefix("not_allowed_from_"), "no longer active")
            return ScheduleConflict(f"This appointment is {status}: it cannot be changed that way.")
        return ScheduleConflict(NOT_ALLOWED.get(code, "That change is not allowed for this appointment."))
    return ScheduleUnavailable("The schedule cannot be reached now: try again in a minute.")


async def call(what: str, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One scheduler call in a worker thread (the backends are synchronous), its errors named."""
    try:
        return await asyncio.to_thread(work, *args, **kwargs)
    except model.SchedulingError as exc:
        log.info("staff schedule refused reason=%s", exc.reason)
        raise named(exc, what) from None
    except STATE_ERRORS as exc:
        log.warning("schedule unavailable error=%s", type(exc).__name__)
        raise named(model.BackendUnavailable(), what) from None


async def audited(auth: StaffAuth, session: StaffSession, action: StaffAction, **ids: str | None) -> None:
    detail = " ".join(f"{k}={v}" for k, v in ids.items() if v is not None)
    await record(auth, session.staff_id, action, detail=detail)


def staff_by(session: StaffSession) -> str:
    return f"staff:{session.staff_id}"


# --- reading requests --------------------------------------------------------------------------
def parse_date(value: Any, name: str = "date") -> date:
    if not isinstance(value, str) or not DATE_FORMAT.match(value):
        raise InvalidMessage(f"{name} must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(f"{name} {value} is not a date on the calendar") from None


def an_id(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidMessage(f"{name} is required (an id)")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_CHARS:
        raise InvalidMessage(f"{name} must be an id of at most {MAX_ID_CHARS} characters")
    return text


def optional_text(value: Any, name: str, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidMessage(f"{name} must be text of at most {limit} characters")
    return value.strip() or None


def day_bounds(day: date, days: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[the start of `day`, the start of `day` + `days`) in the clinic's zone, as UTC."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=days), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def clinic_zone(settings) -> ZoneInfo:
    return ZoneInfo(settings.clinic_timezone)


# --- writing answers ---------------------------------------------------------------------------
def masked_phone(phone: str | None) -> str | None:
    """Enough to tell two patients apart on the phone: the last four digits."""
    if not phone:
        return None
    return "•" * max(0, len(phone) - 4) + phone[-4:]


def patient_dict(patient: Patient) -> dict[str, Any]:
    return {
        "id": patient.id,
        "name": patient.name,
        "birth_date": patient.birth_date.isoformat(),
        "phone": masked_phone(patient.phone),
    }


def appointment_dict(appt: Appointment, tz: ZoneInfo, patient: Patient | None = None) -> dict[str, Any]:
    return {
        "id": appt.id,
        "patient_id": appt.patient_id,
        "patient_name": patient.name if patient else None,
        "slot_id": appt.slot_id,
        "start": appt.start.astimezone(tz).isoformat(),
        "end": appt.end.astimezone(tz).isoformat(),
        "provider_id": appt.provider_id,
        "provider_name": appt.provider_name,
        "location_id": appt.location_id,
        "location_name": appt.location_name,
        "visit_type": appt.visit_type,
        "status": appt.status.value,
        "reason": appt.reason,
        "booked_by": appt.booked_by,
        "confirmed": appt.confirmed,
        "replaces_id": appt.replaces_id,
        "replaced_by_id": appt.replaced_by_id,
    }


router = APIRouter(tags=["staff", "scheduling"])


# --- the page ----------------------------------------------------------------------------------
@router.get("/staff/schedule", response_class=HTMLResponse)
async def schedule_page() -> HTMLResponse:
    """The page itself holds no data: it asks the API, which needs the session (it shows a login)."""
    page = resources.files("channels").joinpath("static", "staff", "schedule.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def _asset(name: str) -> Response:
    text = resources.files("channels").joinpath("static", "staff", name).read_text(encoding="utf-8")
    return Response(text, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


@router.get("/staff/schedule.js", include_in_schema=False)
async def schedule_js() -> Response:
    return _asset("schedule.js")


@router.get("/staff/schedule.css", include_in_schema=False)
async def schedule_css() -> Response:
    return _asset("schedule.css")


# --- patients ----------------------------------------------------------------------------------
@router.get("/staff/api/patients")
async def search_patients(
    session: Reader, scheduler: SchedulerDep, auth: AuthDep, q: str | None = None
) -> dict[str, Any]:
    text = (q or "").strip()
    if not MIN_QUERY <= len(text) <= MAX_QUERY:
        raise InvalidMessage(f"q must be {MIN_QUERY} to {MAX_QUERY} characters of a patient's name")
    found = await call("patient", scheduler.find_patients, text, SEARCH_LIMIT)
    await audited(auth, session, StaffAction.PATIENT_SEARCH, results=str(len(found)))
    return {"items": [patient_dict(p) for p in found]}


def patient_fields(data: dict[str, Any], today: date) -> tuple[str, date, str | None]:
    """A new patient's name, date of birth and E.164 phone (or None), or 422 saying what is wrong."""
    name = data.get("name")
    if not isinstance(name, str) or not MIN_NAME <= len(" ".join(name.split())) <= MAX_NAME:
        raise InvalidMessage(f"name must be the patient's full name, {MIN_NAME} to {MAX_NAME} characters")
    name = " ".join(name.split())
    if not any(c.isalpha() for c in name):
        raise InvalidMessage("name must have letters in it")
    birth = parse_date(data.get("birth_date"), "birth_date")
    if birth > today or birth.year < OLDEST_BIRTH_YEAR:
        raise InvalidMessage("birth_date must be a date of birth in the past")
    raw = data.get("phone")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return name, birth, None
    phone = normalise_phone(raw) if isinstance(raw, str) else None
    if phone is None:
        raise InvalidMessage("phone must be a phone number: (555) 201-0101, or +44 20 7946 0958 with the country code")
    return name, birth, phone


@router.post("/staff/api/patients", status_code=201)
async def register_patient(
    session: Writer, data: Body, scheduler: SchedulerDep, settings: SettingsDep, auth: AuthDep
) -> JSONResponse:
    name, birth, phone = patient_fields(data, datetime.now(clinic_zone(settings)).date())
    existing = await call("patient", scheduler.match_patient, name, birth)
    if existing is not None:
        detail = "A patient with this name and date of birth is already registered: book for them instead."
        return JSONResponse(
            {"error": "patient_exists", "detail": detail, "patient": patient_dict(existing)}, status_code=409
        )
    patient = await call("patient", scheduler.create_patient, name, birth, phone)
    await audited(auth, session, StaffAction.PATIENT_CREATE, patient=patient.id)
    log.info("staff registered patient staff_id=%s patient_id=%s", session.staff_id, patient.id)
    return JSONResponse(patient_dict(patient), status_code=201)


# --- free slots --------------------------------------------------------------------------------
def parse_days(value: str | None) -> int:
    if value is None:
        return 1
    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise InvalidMessage(f"days must be a number of days from 1 to {MAX_DAYS} (1: a day, 7: a week)")
    return int(value)


async def known(scheduler, provider_id: str | None, visit_type: str | None) -> None:
    """422 for a provider or a visit type the clinic does not have (rather than an empty answer)."""
    if provider_id is not None:
        providers = await call("provider", scheduler.providers)
        if provider_id not in {p.id for p in providers}:
            raise InvalidMessage(f"provider_id {provider_id} is not one of the clinic's providers")
    if visit_type is not None:
        types = await call("visit type", scheduler.visit_types)
        if visit_type not in {t.id for t in types}:
            raise InvalidMessage(f"visit_type {visit_type} is not one of the clinic's visit types")


@router.get("/staff/api/slots")
async def free_slots(
    session: Reader,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    on: Annotated[str | None, Query(alias="date")] = None,
    days: str | None = None,
    provider_id: str | None = None,
    visit_type: str | None = None,
) -> dict[str, Any]:
    """The free slots starting on `date` (and the `days` - 1 after it) in the clinic's time zone."""
    tz = clinic_zone(settings)
    day, count = parse_date(on), parse_days(days)
    provider_id = optional_text(provider_id, "provider_id", MAX_ID_CHARS)
    visit_type = optional_text(visit_type, "visit_type", MAX_ID_CHARS)
    await known(scheduler, provider_id, visit_type)
    start, end = day_bounds(day, count, tz)
    query = SlotQuery(start=start, end=end, visit_type=visit_type, provider_id=provider_id, limit=MAX_SLOTS)
    slots = await call("slot", scheduler.find_slots, query, datetime.now(UTC))
    return {"date": day.isoformat(), "days": count, "items": [s.as_dict(tz) for s in slots]}


# --- the day and week view ---------------------------------------------------------------------
def patients_of(scheduler, appointments: list[Appointment]) -> dict[str, Patient | None]:
    return {pid: scheduler.patient(pid) for pid in {a.patient_id for a in appointments}}


@router.get("/staff/api/appointments")
async def appointments_view(
    session: Reader,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    on: Annotated[str | None, Query(alias="date")] = None,
    days: str | None = None,
    provider_id: str | None = None,
) -> dict[str, Any]:
    """Every appointment (any status) starting in the day or week, with the patient's name, and the
    clinic's providers and visit types (the page's pickers)."""
    tz = clinic_zone(settings)
    day, count = parse_date(on), parse_days(days)
    provider_id = optional_text(provider_id, "provider_id", MAX_ID_CHARS)
    start, end = day_bounds(day, count, tz)
    providers = await call("provider", scheduler.providers)
    types = await call("visit type", scheduler.visit_types)
    found = await call("appointment", scheduler.appointments_between, start, end, provider_id)
    patients = await call("patient", patients_of, scheduler, found)
    return {
        "date": day.isoformat(),
        "days": count,
        "timezone": settings.clinic_timezone,
        "providers": [{"id": p.id, "name": p.name, "role": p.role} for p in providers],
        "visit_types": [
            {
                "id": t.id,
                "name": t.name,
                "minutes": t.minutes,
                "new_patients": t.new_patients,
                "staff_only": "patient" not in t.bookable_by,
            }
            for t in types
        ],
        "items": [appointment_dict(a, tz, patients.get(a.patient_id)) for a in found],
    }


# --- booking and changing ----------------------------------------------------------------------
async def existing_patient(scheduler, patient_id: str) -> bool:
    """Seen here before (a follow-up is for them): an appointment they came to, or missed."""
    history = await call("patient", scheduler.appointments_for, patient_id, upcoming=False)
    return any(a.status in SEEN_STATUSES for a in history)


async def find_slot(scheduler, slot_id: str) -> Slot:
    """The slot, for its visit types. `slot()` is the SQL backend's, not the Scheduler interface's:
    with a backend that lacks it, the visit type must be given."""
    lookup = getattr(scheduler, "slot", None)
    if lookup is None:
        raise InvalidMessage("visit_type is required (this schedule cannot look a slot up by its id)")
    slot = await call("slot", lookup, slot_id)
    if slot is None:
        raise ScheduleNotFound("No such slot.")
    return slot


async def visit_type_for(scheduler, slot_id: str, patient: Patient, asked: str | None) -> str:
    """The visit type asked for (one the clinic has), else the slot's first the patient may have."""
    types = {t.id: t for t in await call("visit type", scheduler.visit_types)}
    if asked is not None:
        if asked not in types:
            raise InvalidMessage(f"visit_type {asked} is not one of the clinic's visit types")
        return asked
    slot = await find_slot(scheduler, slot_id)
    seen = await existing_patient(scheduler, patient.id)
    for type_id in slot.visit_types:
        kind = types.get(type_id)
        if kind is not None and (kind.new_patients or seen):
            return type_id
    raise InvalidMessage("none of this slot's visit types is for a new patient: choose the visit_type")


@router.post("/staff/api/appointments", status_code=201)
async def book(
    session: Writer, data: Body, scheduler: SchedulerDep, settings: SettingsDep, auth: AuthDep
) -> JSONResponse:
    slot_id, patient_id = an_id(data.get("slot_id"), "slot_id"), an_id(data.get("patient_id"), "patient_id")
    asked = optional_text(data.get("visit_type"), "visit_type", MAX_ID_CHARS)
    reason = optional_text(data.get("reason"), "reason", MAX_REASON) or ""
    patient = await call("patient", scheduler.patient, patient_id)
    if patient is None:
        raise ScheduleNotFound("No such patient.")
    visit_type = await visit_type_for(scheduler, slot_id, patient, asked)
    appointment = await call(
        "slot", scheduler.book, slot_id, patient_id, visit_type, reason=reason, booked_by=staff_by(session)
    )
    await audited(
        auth, session, StaffAction.APPOINTMENT_BOOK, appointment=appointment.id, slot=slot_id, patient=patient_id
    )
    log.info("staff booked appointment_id=%s staff_id=%s", appointment.id, session.staff_id)
    return JSONResponse(appointment_dict(appointment, clinic_zone(settings), patient), status_code=201)


async def the_appointment(scheduler, appointment_id: str) -> Appointment:
    appointment = await call("appointment", scheduler.appointment, an_id(appointment_id, "appointment id"))
    if appointment is None:
        raise ScheduleNotFound("No such appointment.")
    return appointment


@router.post("/staff/api/appointments/{appointment_id}/cancel")
async def cancel(
    appointment_id: str, session: Writer, data: Body, scheduler: SchedulerDep, settings: SettingsDep, auth: AuthDep
) -> dict[str, Any]:
    reason = optional_text(data.get("reason"), "reason", MAX_CANCEL_REASON)
    if reason is None:
        raise InvalidMessage(f"reason is required: why it is cancelled, at most {MAX_CANCEL_REASON} characters")
    await the_appointment(scheduler, appointment_id)
    cancelled = await call("appointment", scheduler.cancel, appointment_id, reason=reason, by=staff_by(session))
    await audited(auth, session, StaffAction.APPOINTMENT_CANCEL, appointment=cancelled.id)
    return appointment_dict(cancelled, clinic_zone(settings))


@router.post("/staff/api/appointments/{appointment_id}/move")
async def move(
    appointment_id: str, session: Writer, data: Body, scheduler: SchedulerDep, settings: SettingsDep, auth: AuthDep
) -> dict[str, Any]:
    slot_id = an_id(data.get("slot_id"), "slot_id")
    await the_appointment(scheduler, appointment_id)
    moved = await call("slot", scheduler.reschedule, appointment_id, slot_id, by=staff_by(session))
    await audited(
        auth, session, StaffAction.APPOINTMENT_MOVE, appointment=appointment_id, to_appointment=moved.id, slot=slot_id
    )
    return appointment_dict(moved, clinic_zone(settings))


@router.post("/staff/api/appointments/{appointment_id}/status")
async def set_status(
    appointment_id: str, session: Writer, data: Body, scheduler: SchedulerDep, settings: SettingsDep, auth: AuthDep
) -> dict[str, Any]:
    wanted = STAFF_STATUSES.get(data.get("status")) if isinstance(data.get("status"), str) else None
    if wanted is None:
        raise InvalidMessage(f"status must be one of {', '.join(STAFF_STATUSES)}")
    tz = clinic_zone(settings)
    appointment = await the_appointment(scheduler, appointment_id)
    if wanted is AppointmentStatus.NOSHOW and appointment.start > datetime.now(UTC):
        starts = appointment.start.astimezone(tz).strftime("%H:%M on %Y-%m-%d")
        raise ScheduleConflict(f"A no-show can be recorded only once the appointment has started ({starts}).")
    changed = await call("appointment", scheduler.set_status, appointment_id, wanted, by=staff_by(session))
    await audited(auth, session, StaffAction.APPOINTMENT_STATUS, appointment=changed.id, status=wanted.value)
    return appointment_dict(changed, tz)
