"""The built-in schedule: the `Scheduler` interface over the SQL tables of schema.py (SQLite by
default, PostgreSQL by DATABASE_URL).

Booking is find -> hold -> book, and the database has the last word. Every change of a slot is a
compare-and-set UPDATE (`WHERE id = ? AND status = 'free' AND <not held by another>`, version + 1):
of two concurrent bookings of one slot, one UPDATE changes the row and the other changes nothing and
raises SlotTaken. Behind it, the partial unique index uq_appointments_active_slot refuses a second
active appointment for a slot even to code that skips the slot update.

Holds: a held slot keeps status 'free' in the column, with hold_token (the holder) and hold_until
set, so a hold expires by itself when hold_until passes, with no sweeper. Read back while held, a
slot's status is busy-tentative. The column's status is free, busy (an active or past appointment
uses it) or busy-unavailable (blocked by the clinic).

Ids are the tables' integer keys as strings. Logs carry ids and reason codes, never a name, a date
of birth, a phone number or a visit reason.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from careline.scheduling import identity
from careline.scheduling.model import (
    ACTIVE_STATUSES,
    Appointment,
    AppointmentStatus,
    BackendUnavailable,
    Location,
    NotAllowed,
    NotFound,
    Patient,
    Provider,
    Slot,
    SlotQuery,
    SlotStatus,
    SlotTaken,
    VisitType,
)
from careline.scheduling.schema import (
    appointments,
    patients,
    sched_locations,
    sched_providers,
    sched_slots,
    sched_templates,
    sched_visit_types,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEZONE = "America/New_York"
ACTIVE = tuple(str(s) for s in ACTIVE_STATUSES)
# Parts of the day in the clinic's time zone: [from, to) hours.
PARTS_OF_DAY = {"morning": (0, 12), "afternoon": (12, 17), "evening": (17, 24)}
# set_status: the statuses an appointment may come from (cancelling goes through cancel()).
STATUS_FROM: dict[AppointmentStatus, frozenset[str]] = {
    AppointmentStatus.BOOKED: frozenset({"proposed", "pending"}),
    AppointmentStatus.ARRIVED: frozenset({"proposed", "pending", "booked"}),
    AppointmentStatus.FULFILLED: frozenset({"booked", "arrived"}),
    AppointmentStatus.NOSHOW: frozenset({"proposed", "pending", "booked"}),
    AppointmentStatus.ENTERED_IN_ERROR: frozenset(
        {"proposed", "pending", "booked", "arrived", "fulfilled", "noshow", "cancelled"}
    ),
}


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC: SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    return utc(now) if now is not None else datetime.now(UTC)


def _key(value: str) -> int:
    """An id from outside: the table's integer key, else NotFound."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise NotFound("bad_id") from None


def _unavailable(method):
    """The database cannot be reached or answer: BackendUnavailable, naming no data (a driver's
    message can quote the statement's parameters)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            log.warning("schedule database unavailable in %s: %s", method.__name__, type(exc).__name__)
            raise BackendUnavailable(type(exc).__name__) from None
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise BackendUnavailable("connection_lost") from None
            raise

    return wrapper


class SqlScheduler:
    """`Scheduler` over SQL. `bind` is an Engine (each call in its own transaction) or one
    Connection (a thread's own, as race.py uses). `timezone` is the clinic's (CLINIC_TIMEZONE):
    parts of the day and weekdays are read in it. `secret` makes phone_key (default:
    CONVERSATION_SECRET)."""

    def __init__(self, bind: Engine | Connection, timezone: str | None = None, secret: str | None = None):
        self.bind = bind
        self.tz = ZoneInfo(timezone or os.environ.get("CLINIC_TIMEZONE") or DEFAULT_TIMEZONE)
        self.secret = secret if secret is not None else os.environ.get("CONVERSATION_SECRET", "")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        if isinstance(self.bind, Connection):
            with self.bind.begin():
                yield self.bind
        else:
            with self.bind.begin() as conn:
                yield conn

    # --- the clinic ------------------------------------------------------------------------
    @_unavailable
    def locations(self) -> list[Location]:
        with self._tx() as conn:
            rows = conn.execute(select(sched_locations).order_by(sched_locations.c.id)).all()
        return [Location(r.id, r.name, r.address, r.phone) for r in rows]

    @_unavailable
    def providers(self) -> list[Provider]:
        with self._tx() as conn:
            rows = conn.execute(
                select(sched_providers).where(sched_providers.c.active.is_(True)).order_by(sched_providers.c.id)
            ).all()
            pairs = conn.execute(select(sched_templates.c.provider_id, sched_templates.c.location_id).distinct()).all()
        located: dict[str, set[str]] = {}
        for provider_id, location_id in pairs:
            located.setdefault(provider_id, set()).add(location_id)
        return [Provider(r.id, r.name, r.role, tuple(sorted(located.get(r.id, ())))) for r in rows]

    @_unavailable
    def visit_types(self) -> list[VisitType]:
        with self._tx() as conn:
            rows = conn.execute(select(sched_visit_types).order_by(sched_visit_types.c.id)).all()
        return [_visit_type(r) for r in rows]

    # --- slots -----------------------------------------------------------------------------
    @_unavailable
    def find_slots(self, query: SlotQuery, now: datetime | None = None) -> list[Slot]:
        now = _now(now)
        start = max(utc(query.start), now)
        stmt = (
            _slot_select()
            .where(
                sched_slots.c.start >= start,
                sched_slots.c.start < utc(query.end),
                sched_slots.c.status == SlotStatus.FREE,
                _not_held(now),
                sched_providers.c.active.is_(True),
            )
            .order_by(sched_slots.c.start, sched_slots.c.provider_id)
        )
        if query.visit_type:
            stmt = stmt.where(_offers(query.visit_type))
        if query.provider_id:
            stmt = stmt.where(sched_slots.c.provider_id == query.provider_id)
        if query.location_id:
            stmt = stmt.where(sched_slots.c.location_id == query.location_id)
        found: list[Slot] = []
        with self._tx() as conn:
            result = conn.execute(stmt)
            for row in result:
                if self._wanted(utc(row.start), query):
                    found.append(_slot(row, SlotStatus.FREE))
                    if len(found) >= query.limit:
                        break
            result.close()
        return found

    def _wanted(self, start: datetime, query: SlotQuery) -> bool:
        local = start.astimezone(self.tz)
        if query.weekdays and local.weekday() not in query.weekdays:
            return False
        if query.parts_of_day:
            return any(a <= local.hour < b for p, (a, b) in PARTS_OF_DAY.items() if p in query.parts_of_day)
        return True

    @_unavailable
    def slot(self, slot_id: str, now: datetime | None = None) -> Slot | None:
        """One slot as it stands (busy-tentative while someone holds it), or None."""
        now = _now(now)
        with self._tx() as conn:
            row = conn.execute(_slot_select().where(sched_slots.c.id == _key(slot_id))).first()
        if row is None:
            return None
        held = row.status == SlotStatus.FREE and row.hold_token is not None and utc(row.hold_until) > now
        return _slot(row, SlotStatus.BUSY_TENTATIVE if held else SlotStatus(row.status))

    @_unavailable
    def hold(self, slot_id: str, holder: str, seconds: int = 300, now: datetime | None = None) -> datetime:
        now = _now(now)
        until = now + timedelta(seconds=seconds)
        key = _key(slot_id)
        with self._tx() as conn:
            changed = conn.execute(
                update(sched_slots)
                .where(sched_slots.c.id == key, sched_slots.c.status == SlotStatus.FREE, _free_for(holder, now))
                .values(hold_token=holder, hold_until=until, version=sched_slots.c.version + 1)
            ).rowcount
            if not changed:
                self._refuse(conn, key, "hold")
        return until

    @_unavailable
    def release(self, slot_id: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute(
                update(sched_slots)
                .where(sched_slots.c.id == _key(slot_id), sched_slots.c.hold_token == holder)
                .values(hold_token=None, hold_until=None, version=sched_slots.c.version + 1)
            )

    @_unavailable
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
        now = _now(now)
        with self._tx() as conn:
            new_id = self._book(conn, _key(slot_id), _key(patient_id), visit_type, reason, holder, booked_by, now)
            appointment = self._appointment(conn, new_id)
        log.info("booked appointment %s slot %s by %s", new_id, slot_id, _who(booked_by))
        return appointment

    def _book(self, conn, slot: int, patient: int, visit_type: str, reason, holder, booked_by, now, replaces=None):
        """In the caller's transaction: take the slot (compare-and-set), then insert the appointment
        (the unique index refuses a second active one). Returns the new appointment's id."""
        taken = conn.execute(
            update(sched_slots)
            .where(sched_slots.c.id == slot, sched_slots.c.status == SlotStatus.FREE, _free_for(holder, now))
            .values(status=SlotStatus.BUSY, hold_token=None, hold_until=None, version=sched_slots.c.version + 1)
        ).rowcount
        if not taken:
            self._refuse(conn, slot, "book")
        row = conn.execute(select(sched_slots).where(sched_slots.c.id == slot)).one()
        self._check_booking(conn, row, patient, visit_type, booked_by)
        values = {
            "patient_id": patient,
            "slot_id": slot,
            "start": utc(row.start),
            "end": utc(row.end),
            "provider_id": row.provider_id,
            "location_id": row.location_id,
            "visit_type": visit_type,
            "status": AppointmentStatus.BOOKED,
            "reason": reason or "",
            "booked_by": booked_by,
            "replaces_id": replaces,
            "created_at": datetime.now(UTC),
            "updated_at": datetime.now(UTC),
        }
        try:
            return conn.execute(insert(appointments).values(**values)).inserted_primary_key[0]
        except IntegrityError:
            log.info("slot %s refused by uq_appointments_active_slot", slot)
            raise SlotTaken("slot_taken") from None

    def _check_booking(self, conn, slot_row, patient: int, visit_type: str, booked_by: str) -> None:
        vt = conn.execute(select(sched_visit_types).where(sched_visit_types.c.id == visit_type)).first()
        if vt is None:
            raise NotFound("unknown_visit_type")
        if visit_type not in slot_row.visit_types.split(","):
            raise NotAllowed("visit_type_not_in_slot")
        if _who(booked_by) not in vt.bookable_by.split(","):
            raise NotAllowed("visit_type_not_bookable")
        if conn.execute(select(patients.c.id).where(patients.c.id == patient)).first() is None:
            raise NotFound("unknown_patient")

    def _refuse(self, conn, slot: int, what: str) -> None:
        if conn.execute(select(sched_slots.c.id).where(sched_slots.c.id == slot)).first() is None:
            raise NotFound("unknown_slot")
        log.info("%s of slot %s refused: taken", what, slot)
        raise SlotTaken("slot_taken")

    @_unavailable
    def cancel(self, appointment_id: str, *, reason: str = "", by: str = "patient") -> Appointment:
        key = _key(appointment_id)
        with self._tx() as conn:
            slot = self._end(conn, key, AppointmentStatus.CANCELLED, ACTIVE, cancel_reason=(reason or "")[:120])
            _free_slot(conn, slot)
            appointment = self._appointment(conn, key)
        log.info("cancelled appointment %s by %s", key, _who(by))
        return appointment

    def _end(self, conn, key: int, status: str, allowed, **values) -> int:
        """Move an appointment to `status` if it is in `allowed` (compare-and-set); its slot id."""
        changed = conn.execute(
            update(appointments)
            .where(appointments.c.id == key, appointments.c.status.in_(tuple(allowed)))
            .values(status=status, updated_at=datetime.now(UTC), **values)
        ).rowcount
        row = conn.execute(
            select(appointments.c.slot_id, appointments.c.status).where(appointments.c.id == key)
        ).first()
        if row is None:
            raise NotFound("unknown_appointment")
        if not changed:
            raise NotAllowed(f"not_allowed_from_{row.status}")
        return row.slot_id

    @_unavailable
    def reschedule(
        self, appointment_id: str, new_slot_id: str, *, holder: str | None = None, by: str = "patient"
    ) -> Appointment:
        key = _key(appointment_id)
        now = datetime.now(UTC)
        with self._tx() as conn:
            old = conn.execute(select(appointments).where(appointments.c.id == key)).first()
            if old is None:
                raise NotFound("unknown_appointment")
            if old.status not in ACTIVE:
                raise NotAllowed(f"not_allowed_from_{old.status}")
            new_id = self._book(
                conn, _key(new_slot_id), old.patient_id, old.visit_type, old.reason, holder, by, now, key
            )
            slot = self._end(
                conn, key, AppointmentStatus.CANCELLED, ACTIVE, replaced_by_id=new_id, cancel_reason="rescheduled"
            )
            _free_slot(conn, slot)
            appointment = self._appointment(conn, new_id)
        log.info("rescheduled appointment %s to %s by %s", key, new_id, _who(by))
        return appointment

    @_unavailable
    def set_status(self, appointment_id: str, status: AppointmentStatus, *, by: str = "staff") -> Appointment:
        status = AppointmentStatus(status)
        if status == AppointmentStatus.CANCELLED:
            return self.cancel(appointment_id, reason="staff", by=by)
        if status not in STATUS_FROM:
            raise NotAllowed(f"not_allowed_to_{status}")
        key = _key(appointment_id)
        with self._tx() as conn:
            before = conn.execute(select(appointments.c.status).where(appointments.c.id == key)).scalar()
            slot = self._end(conn, key, status, STATUS_FROM[status])
            # A mistaken entry gives its slot back, unless the slot was freed already (a cancelled
            # appointment's slot may be someone else's by now). A no-show keeps it: the time is gone.
            if status == AppointmentStatus.ENTERED_IN_ERROR and before != AppointmentStatus.CANCELLED:
                _free_slot(conn, slot)
            appointment = self._appointment(conn, key)
        log.info("appointment %s set to %s by %s", key, status, _who(by))
        return appointment

    @_unavailable
    def confirm(self, appointment_id: str) -> Appointment:
        key = _key(appointment_id)
        with self._tx() as conn:
            conn.execute(
                update(appointments)
                .where(
                    appointments.c.id == key, appointments.c.status.in_(ACTIVE), appointments.c.confirmed_at.is_(None)
                )
                .values(confirmed_at=datetime.now(UTC))
            )
            appointment = self._appointment(conn, key)
        if appointment.status not in ACTIVE_STATUSES:
            raise NotAllowed(f"not_allowed_from_{appointment.status}")
        log.info("appointment %s confirmed", key)
        return appointment

    # --- appointments ----------------------------------------------------------------------
    def _appointment(self, conn, key: int) -> Appointment:
        row = conn.execute(_appointment_select().where(appointments.c.id == key)).first()
        if row is None:
            raise NotFound("unknown_appointment")
        return _appointment(row)

    @_unavailable
    def appointment(self, appointment_id: str) -> Appointment | None:
        try:
            key = _key(appointment_id)
        except NotFound:
            return None
        with self._tx() as conn:
            row = conn.execute(_appointment_select().where(appointments.c.id == key)).first()
        return _appointment(row) if row else None

    @_unavailable
    def appointments_for(
        self, patient_id: str, *, upcoming: bool = True, now: datetime | None = None
    ) -> list[Appointment]:
        try:
            key = _key(patient_id)
        except NotFound:
            return []
        stmt = _appointment_select().where(appointments.c.patient_id == key)
        if upcoming:
            stmt = stmt.where(appointments.c.status.in_(ACTIVE), appointments.c.start > _now(now))
        with self._tx() as conn:
            rows = conn.execute(stmt.order_by(appointments.c.start, appointments.c.id)).all()
        return [_appointment(r) for r in rows]

    @_unavailable
    def appointments_between(self, start: datetime, end: datetime, provider_id: str | None = None) -> list[Appointment]:
        stmt = _appointment_select().where(appointments.c.start >= utc(start), appointments.c.start < utc(end))
        if provider_id:
            stmt = stmt.where(appointments.c.provider_id == provider_id)
        with self._tx() as conn:
            rows = conn.execute(stmt.order_by(appointments.c.start, appointments.c.id)).all()
        return [_appointment(r) for r in rows]

    # --- patients --------------------------------------------------------------------------
    @_unavailable
    def patient(self, patient_id: str) -> Patient | None:
        try:
            key = _key(patient_id)
        except NotFound:
            return None
        with self._tx() as conn:
            row = conn.execute(select(patients).where(patients.c.id == key)).first()
        return _patient(row) if row else None

    @_unavailable
    def find_patients(self, q: str, limit: int = 20) -> list[Patient]:
        key = identity.name_key(q or "")
        if not key:
            return []
        with self._tx() as conn:
            rows = conn.execute(
                select(patients)
                .where(patients.c.name_key.like(f"%{key}%"))
                .order_by(patients.c.name_key, patients.c.id)
                .limit(limit)
            ).all()
        return [_patient(r) for r in rows]

    @_unavailable
    def match_patient(self, name: str, birth_date: date) -> Patient | None:
        key = identity.name_key(name or "")
        if not key:
            return None
        with self._tx() as conn:
            rows = conn.execute(
                select(patients).where(patients.c.name_key == key, patients.c.birth_date == birth_date).limit(2)
            ).all()
        return _patient(rows[0]) if len(rows) == 1 else None

    @_unavailable
    def create_patient(self, name: str, birth_date: date, phone: str | None) -> Patient:
        if not identity.name_key(name or ""):
            raise ValueError("a patient needs a name")
        e164 = identity.normalise_phone(phone) if phone else None
        if phone and e164 is None:
            raise ValueError("the phone number is not a valid number")
        key = identity.phone_key(self.secret, e164) if e164 and self.secret else None
        with self._tx() as conn:
            new_id = conn.execute(
                insert(patients).values(
                    name=" ".join(name.split()),
                    name_key=identity.name_key(name),
                    birth_date=birth_date,
                    phone=e164,
                    phone_key=key,
                    created_at=datetime.now(UTC),
                )
            ).inserted_primary_key[0]
            row = conn.execute(select(patients).where(patients.c.id == new_id)).one()
        log.info("created patient %s", new_id)
        return _patient(row)

    @_unavailable
    def patient_by_phone_key(self, phone_key: str) -> list[Patient]:
        """The patients whose number is the SMS conversation with this key (a family can share one)."""
        with self._tx() as conn:
            rows = conn.execute(select(patients).where(patients.c.phone_key == phone_key).order_by(patients.c.id)).all()
        return [_patient(r) for r in rows]


# --- statements and rows ---------------------------------------------------------------------
def _who(booked_by: str) -> str:
    """patient | staff:<id> | waitlist -> who it counts as for bookable_by (and for logs)."""
    return "staff" if booked_by.startswith("staff") else "patient"


def _not_held(now: datetime):
    return or_(sched_slots.c.hold_token.is_(None), sched_slots.c.hold_until < now)


def _free_for(holder: str | None, now: datetime):
    """Not held, or the hold has run out, or `holder` is the one holding it."""
    if holder is None:
        return _not_held(now)
    return or_(_not_held(now), sched_slots.c.hold_token == holder)


def _offers(visit_type: str):
    padded = literal(",") + sched_slots.c.visit_types + literal(",")
    escaped = visit_type.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return padded.like(f"%,{escaped},%", escape="\\")


def _free_slot(conn, slot: int) -> None:
    """Give a slot back, unless the clinic blocked it or another active appointment holds it."""
    conn.execute(
        update(sched_slots)
        .where(
            sched_slots.c.id == slot,
            sched_slots.c.status == SlotStatus.BUSY,
            ~exists().where(and_(appointments.c.slot_id == slot, appointments.c.status.in_(ACTIVE))),
        )
        .values(status=SlotStatus.FREE, hold_token=None, hold_until=None, version=sched_slots.c.version + 1)
    )


def _slot_select():
    return select(
        sched_slots,
        sched_providers.c.name.label("provider_name"),
        sched_locations.c.name.label("location_name"),
    ).select_from(
        sched_slots.join(sched_providers, sched_providers.c.id == sched_slots.c.provider_id).join(
            sched_locations, sched_locations.c.id == sched_slots.c.location_id
        )
    )


def _slot(row, status: SlotStatus) -> Slot:
    return Slot(
        id=str(row.id),
        start=utc(row.start),
        end=utc(row.end),
        provider_id=row.provider_id,
        provider_name=row.provider_name,
        location_id=row.location_id,
        location_name=row.location_name,
        visit_types=tuple(v for v in row.visit_types.split(",") if v),
        status=status,
    )


def _appointment_select():
    return select(
        appointments,
        sched_providers.c.name.label("provider_name"),
        sched_locations.c.name.label("location_name"),
    ).select_from(
        appointments.join(sched_providers, sched_providers.c.id == appointments.c.provider_id).join(
            sched_locations, sched_locations.c.id == appointments.c.location_id
        )
    )


def _appointment(row) -> Appointment:
    return Appointment(
        id=str(row.id),
        patient_id=str(row.patient_id),
        slot_id=str(row.slot_id),
        start=utc(row.start),
        end=utc(row.end),
        provider_id=row.provider_id,
        provider_name=row.provider_name,
        location_id=row.location_id,
        location_name=row.location_name,
        visit_type=row.visit_type,
        status=AppointmentStatus(row.status),
        reason=row.reason or "",
        replaces_id=str(row.replaces_id) if row.replaces_id is not None else None,
        replaced_by_id=str(row.replaced_by_id) if row.replaced_by_id is not None else None,
        booked_by=row.booked_by,
        confirmed=row.confirmed_at is not None,
        created_at=utc(row.created_at),
    )


def _patient(row) -> Patient:
    return Patient(id=str(row.id), name=row.name, birth_date=row.birth_date, phone=row.phone)


def _visit_type(row) -> VisitType:
    return VisitType(
        id=row.id,
        name=row.name,
        minutes=row.minutes,
        bookable_by=tuple(b for b in row.bookable_by.split(",") if b),
        new_patients=bool(row.new_patients),
        telehealth=bool(row.telehealth),
    )


def count_double_booked(bind: Engine | Connection) -> int:
    """Slots with more than one active appointment (0, always: race.py and the tests check it)."""
    per_slot = (
        select(appointments.c.slot_id)
        .where(appointments.c.status.in_(ACTIVE))
        .group_by(appointments.c.slot_id)
        .having(func.count() > 1)
        .subquery()
    )
    stmt = select(func.count()).select_from(per_slot)
    if isinstance(bind, Connection):
        return bind.execute(stmt).scalar_one()
    with bind.connect() as conn:
        return conn.execute(stmt).scalar_one()
