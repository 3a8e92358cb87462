"""The schedule's tables (SQLAlchemy Core, on channels.db's metadata). Alembic migrations
(careline/migrations/) create and change them: a change here needs a new revision.

Patients' names, dates of birth and phone numbers are clinical records, kept in the database like
an EHR's, never in logs. `name_key` and `phone_key` are for matching: the normalised name, and a
keyed hash of the E.164 number (so an SMS sender is matched without the gateway handing the number
to Rasa).

The reminder, waitlist and offer tables hold ids as strings without foreign keys: with
SCHEDULING_BACKEND=fhir the patients, slots and appointments they name live in the FHIR server.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

from channels.db import metadata

sched_locations = Table(
    "sched_locations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("address", String(200), nullable=False, default=""),
    Column("phone", String(40), nullable=False, default=""),
)

sched_providers = Table(
    "sched_providers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("role", String(80), nullable=False, default=""),
    Column("active", Boolean, nullable=False, default=True),
)

sched_visit_types = Table(
    "sched_visit_types",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("bookable_by", String(40), nullable=False, default="patient,staff"),  # comma-separated
    Column("new_patients", Boolean, nullable=False, default=True),
    Column("telehealth", Boolean, nullable=False, default=False),
)

# Weekly template: provider P works at location L on weekday W from start to end, in slots of N
# minutes, for these visit types. Times are wall-clock in the clinic's time zone.
sched_templates = Table(
    "sched_templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider_id", String(40), ForeignKey("sched_providers.id"), nullable=False),
    Column("location_id", String(40), ForeignKey("sched_locations.id"), nullable=False),
    Column("weekday", Integer, nullable=False),  # 0 = Monday
    Column("start_time", String(5), nullable=False),  # HH:MM
    Column("end_time", String(5), nullable=False),
    Column("slot_minutes", Integer, nullable=False),
    Column("visit_types", String(200), nullable=False),  # comma-separated ids
    Column("valid_from", Date, nullable=True),
    Column("valid_to", Date, nullable=True),
)

# Exceptions to the templates: a holiday (provider NULL: the whole clinic) or a provider's day off
# (kind closed, optionally only start..end), or extra hours (kind open, with the template fields).
sched_exceptions = Table(
    "sched_exceptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("on_date", Date, nullable=False, index=True),
    Column("provider_id", String(40), ForeignKey("sched_providers.id"), nullable=True),
    Column("kind", String(8), nullable=False),  # closed | open
    Column("start_time", String(5), nullable=True),
    Column("end_time", String(5), nullable=True),
    Column("location_id", String(40), ForeignKey("sched_locations.id"), nullable=True),
    Column("slot_minutes", Integer, nullable=True),
    Column("visit_types", String(200), nullable=True),
    Column("reason", String(120), nullable=False, default=""),
)

sched_slots = Table(
    "sched_slots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider_id", String(40), ForeignKey("sched_providers.id"), nullable=False),
    Column("location_id", String(40), ForeignKey("sched_locations.id"), nullable=False),
    Column("start", DateTime(timezone=True), nullable=False, index=True),
    Column("end", DateTime(timezone=True), nullable=False),
    Column("visit_types", String(200), nullable=False),
    Column("status", String(20), nullable=False, default="free"),  # model.SlotStatus
    Column("hold_token", String(64), nullable=True),  # who holds it (a conversation's pseudonym)
    Column("hold_until", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False, default=0),  # compare-and-set on every change
    UniqueConstraint("provider_id", "start", name="uq_sched_slots_provider_start"),
)

patients = Table(
    "patients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(160), nullable=False),
    Column("name_key", String(160), nullable=False, index=True),  # lower case, no accents or punctuation
    Column("birth_date", Date, nullable=False),
    Column("phone", String(20), nullable=True),  # E.164
    Column("phone_key", String(64), nullable=True, index=True),  # careline.scheduling.identity.phone_key
    Column("sms_opt_out", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

appointments = Table(
    "appointments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", Integer, ForeignKey("patients.id"), nullable=False, index=True),
    Column("slot_id", Integer, ForeignKey("sched_slots.id"), nullable=False),
    Column("start", DateTime(timezone=True), nullable=False, index=True),
    Column("end", DateTime(timezone=True), nullable=False),
    Column("provider_id", String(40), ForeignKey("sched_providers.id"), nullable=False),
    Column("location_id", String(40), ForeignKey("sched_locations.id"), nullable=False),
    Column("visit_type", String(40), ForeignKey("sched_visit_types.id"), nullable=False),
    Column("status", String(20), nullable=False),  # model.AppointmentStatus
    Column("reason", Text, nullable=False, default=""),
    Column("replaces_id", Integer, ForeignKey("appointments.id"), nullable=True),
    Column("replaced_by_id", Integer, ForeignKey("appointments.id"), nullable=True),
    Column("booked_by", String(40), nullable=False, default="patient"),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    Column("cancel_reason", String(120), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()),
    # The database's last word against double booking: one active appointment per slot.
    Index(
        "uq_appointments_active_slot",
        "slot_id",
        unique=True,
        sqlite_where=text("status IN ('proposed','pending','booked','arrived')"),
        postgresql_where=text("status IN ('proposed','pending','booked','arrived')"),
    ),
)

# Outbound SMS of the schedule: reminders (due 72 h and 24 h before), one-time codes, waitlist
# offers. A worker claims a due row by compare-and-set (status pending -> sending, claimed_by),
# so each is sent once across restarts and replicas; `dedupe_key` is unique ("reminder:72h:<appt>").
# `body` is only for messages whose text cannot be rebuilt (a one-time code) and is blanked once sent.
sched_messages = Table(
    "sched_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(80), nullable=False, unique=True),
    Column(
        "kind", String(24), nullable=False
    ),  # reminder_72h | reminder_24h | otp | waitlist_offer | waitlist_gone | notice
    Column("patient_id", String(64), nullable=False, index=True),
    Column("appointment_id", String(64), nullable=True, index=True),
    Column("slot_id", String(64), nullable=True),
    Column("due_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", String(12), nullable=False, default="pending"),  # pending | sending | sent | skipped | failed
    Column("body", Text, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("message_sid", String(64), nullable=True),
    Column("detail", String(120), nullable=False, default=""),  # a reason code, never text
)

# Patients who want an earlier appointment. An offer of a freed slot goes to several by SMS; the
# first "yes" books it (the slot's compare-and-set decides), the others are told it is gone.
sched_waitlist = Table(
    "sched_waitlist",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("appointment_id", String(64), nullable=True),  # the later one it would replace
    Column("visit_type", String(40), nullable=False),
    Column("provider_id", String(64), nullable=True),
    Column("location_id", String(64), nullable=True),
    Column("not_after", DateTime(timezone=True), nullable=True),  # only slots before this
    Column("status", String(12), nullable=False, default="waiting"),  # waiting | booked | removed
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

sched_offers = Table(
    "sched_offers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("slot_id", String(64), nullable=False, index=True),
    Column("waitlist_id", Integer, ForeignKey("sched_waitlist.id"), nullable=False),
    Column("status", String(12), nullable=False, default="offered"),  # offered | accepted | gone | declined | expired
    Column("offered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("slot_id", "waitlist_id", name="uq_sched_offers_slot_waitlist"),
)

SCHEDULE_TABLES = (
    sched_locations,
    sched_providers,
    sched_visit_types,
    sched_templates,
    sched_exceptions,
    sched_slots,
    patients,
    appointments,
    sched_messages,
    sched_waitlist,
    sched_offers,
)
