"""The scheduling contract: what a schedule holds and the one interface every backend implements
(the built-in SQL schedule, careline/scheduling/sql.py; a clinic's FHIR R4 server,
careline/scheduling/fhir.py).

It follows the FHIR R4 Schedule / Slot / Appointment model and the Argonaut scheduling
operations: find free slots, hold one for a short while, book it, cancel it. Times are aware
datetimes in UTC; the clinic's time zone (CLINIC_TIMEZONE) is for templates and for what people
read. Names, dates of birth and phone numbers live here and in the database, never in logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from enum import StrEnum
from typing import Any, Protocol


class AppointmentStatus(StrEnum):
    """FHIR R4 Appointment.status (the subset a clinic's front desk uses)."""

    PROPOSED = "proposed"
    PENDING = "pending"
    BOOKED = "booked"
    ARRIVED = "arrived"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"
    ENTERED_IN_ERROR = "entered-in-error"


# An appointment in one of these holds its slot; the others have released it.
ACTIVE_STATUSES = frozenset(
    {AppointmentStatus.PROPOSED, AppointmentStatus.PENDING, AppointmentStatus.BOOKED, AppointmentStatus.ARRIVED}
)


class SlotStatus(StrEnum):
    """FHIR R4 Slot.status."""

    FREE = "free"
    BUSY = "busy"
    BUSY_TENTATIVE = "busy-tentative"  # held for a patient who is deciding
    BUSY_UNAVAILABLE = "busy-unavailable"  # blocked by the clinic


class SchedulingError(Exception):
    """A scheduling request that cannot be done; `reason` is a short code, never patient data."""

    reason = "error"

    def __init__(self, detail: str = ""):
        super().__init__(detail or self.reason)


class SlotTaken(SchedulingError):
    """The slot was booked or held by someone else first (HTTP 409 in the staff API, FHIR's 409)."""

    reason = "slot_taken"


class NotFound(SchedulingError):
    reason = "not_found"


class NotAllowed(SchedulingError):
    """The visit type cannot be booked by this kind of user, or the appointment is not in a state
    that allows the change (cancelling a cancelled appointment, ...)."""

    reason = "not_allowed"


class BackendUnavailable(SchedulingError):
    """The schedule cannot be reached (database or FHIR server down): callers fail closed."""

    reason = "unavailable"


@dataclass(frozen=True)
class Location:
    id: str
    name: str
    address: str = ""
    phone: str = ""


@dataclass(frozen=True)
class Provider:
    id: str
    name: str  # as patients read it: "Dr. Maya Patel"
    role: str = ""  # "Family physician", "Nurse practitioner"
    location_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class VisitType:
    id: str  # new_patient | follow_up | same_day_sick | telehealth | ...
    name: str
    minutes: int
    bookable_by: tuple[str, ...] = ("patient", "staff")  # who may book it: patient, staff
    new_patients: bool = True  # False: existing patients only (a follow-up)
    telehealth: bool = False


@dataclass(frozen=True)
class Slot:
    id: str
    start: datetime  # aware, UTC
    end: datetime
    provider_id: str
    provider_name: str
    location_id: str
    location_name: str
    visit_types: tuple[str, ...]
    status: SlotStatus = SlotStatus.FREE

    def as_dict(self, tz: tzinfo = UTC) -> dict[str, Any]:
        """JSON-able, times in `tz`: what the staff API returns and a conversation keeps."""
        return {
            "id": self.id,
            "start": self.start.astimezone(tz).isoformat(),
            "end": self.end.astimezone(tz).isoformat(),
            "provider_id": self.provider_id,
            "provider_name": self.provider_name,
            "location_id": self.location_id,
            "location_name": self.location_name,
            "visit_types": list(self.visit_types),
        }


@dataclass(frozen=True)
class Patient:
    id: str
    name: str  # full name as given
    birth_date: date
    phone: str | None = None  # E.164


@dataclass(frozen=True)
class Appointment:
    id: str
    patient_id: str
    slot_id: str
    start: datetime  # aware, UTC
    end: datetime
    provider_id: str
    provider_name: str
    location_id: str
    location_name: str
    visit_type: str
    status: AppointmentStatus
    reason: str = ""  # the visit reason in the patient's words (PHI: never logged)
    replaces_id: str | None = None  # this appointment replaced that one (a reschedule)
    replaced_by_id: str | None = None  # this one was moved to that one
    booked_by: str = "patient"  # patient | staff:<id> | waitlist
    confirmed: bool = False  # the patient replied C to a reminder
    created_at: datetime | None = None


@dataclass(frozen=True)
class SlotQuery:
    """What a patient or staff member is looking for. `start`/`end` bound the slot's start."""

    start: datetime
    end: datetime
    visit_type: str | None = None
    provider_id: str | None = None
    location_id: str | None = None
    weekdays: frozenset[int] = field(default_factory=frozenset)  # 0 = Monday; empty: any day
    parts_of_day: frozenset[str] = field(default_factory=frozenset)  # morning | afternoon | evening
    limit: int = 50


class Scheduler(Protocol):
    """One interface for every backend. Every method may raise BackendUnavailable."""

    # --- the clinic --------------------------------------------------------------------------
    def locations(self) -> list[Location]: ...
    def providers(self) -> list[Provider]: ...
    def visit_types(self) -> list[VisitType]: ...

    # --- slots: find, hold, book (Argonaut's $find / $hold / $book) ---------------------------
    def find_slots(self, query: SlotQuery, now: datetime | None = None) -> list[Slot]:
        """Free slots (not booked, not held by someone else), earliest first."""

    def hold(self, slot_id: str, holder: str, seconds: int = 300, now: datetime | None = None) -> datetime:
        """Hold a free slot for `holder` (a conversation's pseudonym) until the returned time.
        Raises SlotTaken when it is booked or held by another holder; holding again extends."""

    def release(self, slot_id: str, holder: str) -> None:
        """Drop `holder`'s hold, if it still has it."""

    def book(
        self,
        slot_id: str,
        patient_id: str,
        visit_type: str,
        *,
        reason: str = "",
        holder: str | None = None,
        booked_by: str = "patient",
        now: datetime | None = None,
    ) -> Appointment:
        """Book the slot, atomically: of two bookings of one slot, exactly one commits and the
        other raises SlotTaken (also when another holder holds it)."""

    def cancel(self, appointment_id: str, *, reason: str = "", by: str = "patient") -> Appointment:
        """Cancel and free the slot. Raises NotAllowed when it is not active."""

    def reschedule(
        self, appointment_id: str, new_slot_id: str, *, holder: str | None = None, by: str = "patient"
    ) -> Appointment:
        """Book the new slot first, then cancel the old appointment with `replaced_by_id` set, so a
        patient is never left with neither. Returns the new appointment (`replaces_id` set).
        Raises SlotTaken (the old one is untouched) when the new slot is gone."""

    def set_status(self, appointment_id: str, status: AppointmentStatus, *, by: str = "staff") -> Appointment:
        """noshow, arrived, fulfilled, entered-in-error (staff)."""

    def confirm(self, appointment_id: str) -> Appointment:
        """The patient confirmed (reply C to a reminder)."""

    # --- appointments -----------------------------------------------------------------------
    def appointment(self, appointment_id: str) -> Appointment | None: ...
    def appointments_for(
        self, patient_id: str, *, upcoming: bool = True, now: datetime | None = None
    ) -> list[Appointment]:
        """The patient's appointments, earliest first; `upcoming`: active ones that start after now."""

    def appointments_between(self, start: datetime, end: datetime, provider_id: str | None = None) -> list[Appointment]:
        """Every appointment (any status) starting in [start, end), earliest first."""

    # --- patients ---------------------------------------------------------------------------
    def patient(self, patient_id: str) -> Patient | None: ...
    def find_patients(self, q: str, limit: int = 20) -> list[Patient]:
        """Staff search: by part of the name, case- and accent-insensitive."""

    def match_patient(self, name: str, birth_date: date) -> Patient | None:
        """An existing patient with this full name (case, accents, punctuation and spacing
        ignored) and date of birth; None when there is none or more than one."""

    def create_patient(self, name: str, birth_date: date, phone: str | None) -> Patient: ...
