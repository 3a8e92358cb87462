"""Durable records through SQLAlchemy: SQLite under var/ by default, PostgreSQL by DATABASE_URL.

Tables are created and changed by Alembic migrations (careline/migrations/), which make_engine
applies. There is no PHI in this module's tables: conversations are named by their pseudonymous
key, never by phone number, name or message text. The schedule's tables (careline/scheduling/
schema.py, on this metadata) are clinical records naming patients (SCHEDULE_RECORDS). Conversation data
(CONVERSATION_DATA) is erased with its conversation (channels.privacy); consent and audit records
(KEPT_RECORDS) are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, func
from sqlalchemy.engine import Engine

metadata = MetaData()

safety_audit = Table(
    "safety_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("conversation", String(64), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),  # emergency | crisis | advise | screen_error
    Column("category", String(64), nullable=False, default=""),
    Column("rules", Text, nullable=False, default=""),  # comma-separated rule ids
    Column("owner_before", String(24), nullable=False),
    Column("owner_after", String(24), nullable=False),
    Column("action", String(24), nullable=False),  # escalated | advised | flagged_to_staff
)


# SMS consent, keyed by the conversation's pseudonymous key (never the phone number).
sms_consent = Table(
    "sms_consent",
    metadata,
    Column("conversation", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # opted_out | opted_in
    Column("source", String(32), nullable=False),  # the keyword, or twilio_21610
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()),
)

# Every SMS we send, its delivery status from Twilio's status callbacks, and failures.
sms_delivery = Table(
    "sms_delivery",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_sid", String(64), nullable=True, index=True),
    Column("conversation", String(64), nullable=False, index=True),
    Column("inbound_sid", String(64), nullable=True),
    Column("status", String(24), nullable=False),  # queued | sent | delivered | undelivered | failed | not_sent
    Column("error_code", String(16), nullable=True),
    Column("detail", String(200), nullable=True),  # a reason, never message text
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()),
)


# Every export, erasure and retention sweep of patient data: who, when, which conversation (its
# pseudonym; a sweep names none) and what was found or removed. Never an address or message text.
privacy_audit = Table(
    "privacy_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("action", String(16), nullable=False),  # export | erase | sweep
    Column("channel", String(16), nullable=True),
    Column("conversation", String(64), nullable=True, index=True),
    Column("actor", String(64), nullable=False, default=""),  # the OS user of the CLI, or "gateway"
    Column("counts", Text, nullable=False, default="{}"),  # JSON
)

# Call-center staff (channels/staff/accounts.py): Argon2id hashes, never a password.
staff_accounts = Table(
    "staff_accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),  # lower-cased
    Column("role", String(16), nullable=False),  # agent | supervisor
    Column("display_name", String(80), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every staff action (channels/staff/audit.py): who, when, which conversation (its pseudonym; none
# for a login) and what. The detail holds ids and reasons, never message or note text.
staff_audit = Table(
    "staff_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now(), index=True),
    Column("staff_id", Integer, nullable=True),  # None: a failed login of an unknown email
    Column("conversation", String(64), nullable=True, index=True),
    Column("action", String(32), nullable=False),
    Column("detail", String(200), nullable=False, default=""),
)

# Canned replies (channels/staff/canned.py), managed by supervisors: templates with {clinic_name} and
# {clinic_phone}, filled when an agent picks one. Clinic text, never a patient's.
canned_replies = Table(
    "canned_replies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", String(80), nullable=False, unique=True),
    Column("body", Text, nullable=False),
    Column("created_by", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What the retention sweep and `careline patient erase` remove: tables of conversation data, each
# with a `conversation` column (the pseudonym) and the column its age is read from. A new table
# that holds conversation data goes here; one that must outlive the conversation goes in
# KEPT_RECORDS with its reason (a table about staff, naming no conversation, in STAFF_RECORDS).
# tests/unit/channels/test_privacy.py fails for a table in none of them.
CONVERSATION_DATA: dict[Table, str] = {
    sms_delivery: "updated_at",
}
KEPT_RECORDS: dict[Table, str] = {
    sms_consent: "an opt-out (STOP) must be honoured after the conversation is erased",
    safety_audit: "the safety screen's audit trail (pseudonym, outcome, rule ids; no text)",
    privacy_audit: "the record of exports, erasures and sweeps (pseudonym, counts; no address)",
    staff_audit: "the staff audit trail outlives conversations (staff id, pseudonym, action; no text)",
}
# Tables that name no conversation at all, so the privacy tools never look in them (KEPT_RECORDS
# are read by the conversation column), each with its reason.
STAFF_RECORDS: dict[Table, str] = {
    staff_accounts: "staff accounts belong to the clinic's staff, not to any conversation, and outlive them",
    canned_replies: "the clinic's reply templates for staff, about no conversation",
}
# The schedule's tables (careline/scheduling/schema.py, which imports this module's metadata, hence
# read lazily as channels.db.SCHEDULE_RECORDS): clinical records naming patients, not conversations,
# kept as an EHR keeps them; the privacy tools never look in them. Each with its reason.
_SCHEDULE_REASONS = {
    "sched_locations": "the clinic's locations, about no patient or conversation",
    "sched_providers": "the clinic's providers, about no patient or conversation",
    "sched_visit_types": "the clinic's visit types, about no patient or conversation",
    "sched_templates": "the clinic's weekly schedule, about no patient or conversation",
    "sched_exceptions": "the clinic's holidays and days off, about no patient or conversation",
    "sched_slots": "the clinic's appointment times; a hold names a conversation only for minutes",
    "patients": "patients' registration (name, date of birth, phone): a clinical record kept like an EHR's",
    "appointments": "patients' appointments: clinical records kept like an EHR's, naming patients",
    "sched_messages": "reminders and codes sent about appointments, kept with the appointment (no text once sent)",
    "sched_waitlist": "patients' requests for an earlier appointment, kept with the appointments",
    "sched_offers": "waitlist offers of freed slots, kept with the appointments",
}


def __getattr__(name: str):
    if name == "SCHEDULE_RECORDS":
        import careline.scheduling.schema  # noqa: F401  (defines the tables on this metadata)

        return {metadata.tables[table]: why for table, why in _SCHEDULE_REASONS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_database_url(root: Path | None = None) -> str:
    root = Path(root or os.environ.get("CARELINE_ROOT") or Path.cwd())
    (root / "var").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'var' / 'careline.db'}"


def make_engine(url: str | None = None) -> Engine:
    url = url or default_database_url()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    # Bounded waits everywhere: a hanging database must not hold a patient's reply for long.
    kwargs = {"pool_pre_ping": True, "pool_timeout": 5}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 5}
    elif url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 5, "options": "-c statement_timeout=5000"}
    # hide_parameters: a database error's text never carries a patient's name, birth date or number
    engine = create_engine(url, hide_parameters=True, **kwargs)
    from careline.migrations import migrate

    migrate(engine)
    return engine
