"""The schedule (careline/scheduling/schema.py): locations, providers, visit types, weekly
templates and their exceptions, slots, patients, appointments, and the reminder, waitlist and
offer tables. Tables that exist already (made by create_all before migrations) are kept.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = sa.func.now()
ACTIVE = "status IN ('proposed','pending','booked','arrived')"


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _aware(name: str, nullable: bool = False, **kw) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, **kw)


def clinic_tables() -> list[tuple[str, list]]:
    return [
        (
            "sched_locations",
            [
                sa.Column("id", sa.String(40), primary_key=True),
                sa.Column("name", sa.String(120), nullable=False),
                sa.Column("address", sa.String(200), nullable=False),
                sa.Column("phone", sa.String(40), nullable=False),
            ],
        ),
        (
            "sched_providers",
            [
                sa.Column("id", sa.String(40), primary_key=True),
                sa.Column("name", sa.String(120), nullable=False),
                sa.Column("role", sa.String(80), nullable=False),
                sa.Column("active", sa.Boolean, nullable=False),
            ],
        ),
        (
            "sched_visit_types",
            [
                sa.Column("id", sa.String(40), primary_key=True),
                sa.Column("name", sa.String(120), nullable=False),
                sa.Column("minutes", sa.Integer, nullable=False),
                sa.Column("bookable_by", sa.String(40), nullable=False),
                sa.Column("new_patients", sa.Boolean, nullable=False),
                sa.Column("telehealth", sa.Boolean, nullable=False),
            ],
        ),
    ]


def calendar_tables() -> list[tuple[str, list]]:
    return [
        (
            "sched_templates",
            [
                _id(),
                sa.Column("provider_id", sa.String(40), sa.ForeignKey("sched_providers.id"), nullable=False),
                sa.Column("location_id", sa.String(40), sa.ForeignKey("sched_locations.id"), nullable=False),
                sa.Column("weekday", sa.Integer, nullable=False),
                sa.Column("start_time", sa.String(5), nullable=False),
                sa.Column("end_time", sa.String(5), nullable=False),
                sa.Column("slot_minutes", sa.Integer, nullable=False),
                sa.Column("visit_types", sa.String(200), nullable=False),
                sa.Column("valid_from", sa.Date, nullable=True),
                sa.Column("valid_to", sa.Date, nullable=True),
            ],
        ),
        (
            "sched_exceptions",
            [
                _id(),
                sa.Column("on_date", sa.Date, nullable=False, index=True),
                sa.Column("provider_id", sa.String(40), sa.ForeignKey("sched_providers.id"), nullable=True),
                sa.Column("kind", sa.String(8), nullable=False),
                sa.Column("start_time", sa.String(5), nullable=True),
                sa.Column("end_time", sa.String(5), nullable=True),
                sa.Column("location_id", sa.String(40), sa.ForeignKey("sched_locations.id"), nullable=True),
                sa.Column("slot_minutes", sa.Integer, nullable=True),
                sa.Column("visit_types", sa.String(200), nullable=True),
                sa.Column("reason", sa.String(120), nullable=False),
            ],
        ),
        (
            "sched_slots",
            [
                _id(),
                sa.Column("provider_id", sa.String(40), sa.ForeignKey("sched_providers.id"), nullable=False),
                sa.Column("location_id", sa.String(40), sa.ForeignKey("sched_locations.id"), nullable=False),
                _aware("start", index=True),
                _aware("end"),
                sa.Column("visit_types", sa.String(200), nullable=False),
                sa.Column("status", sa.String(20), nullable=False),
                sa.Column("hold_token", sa.String(64), nullable=True),
                _aware("hold_until", nullable=True),
                sa.Column("version", sa.Integer, nullable=False),
                sa.UniqueConstraint("provider_id", "start", name="uq_sched_slots_provider_start"),
            ],
        ),
    ]


def patient_tables() -> list[tuple[str, list]]:
    return [
        (
            "patients",
            [
                _id(),
                sa.Column("name", sa.String(160), nullable=False),
                sa.Column("name_key", sa.String(160), nullable=False, index=True),
                sa.Column("birth_date", sa.Date, nullable=False),
                sa.Column("phone", sa.String(20), nullable=True),
                sa.Column("phone_key", sa.String(64), nullable=True, index=True),
                sa.Column("sms_opt_out", sa.Boolean, nullable=False),
                _aware("created_at", server_default=NOW),
            ],
        ),
        (
            "appointments",
            [
                _id(),
                sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id"), nullable=False, index=True),
                sa.Column("slot_id", sa.Integer, sa.ForeignKey("sched_slots.id"), nullable=False),
                _aware("start", index=True),
                _aware("end"),
                sa.Column("provider_id", sa.String(40), sa.ForeignKey("sched_providers.id"), nullable=False),
                sa.Column("location_id", sa.String(40), sa.ForeignKey("sched_locations.id"), nullable=False),
                sa.Column("visit_type", sa.String(40), sa.ForeignKey("sched_visit_types.id"), nullable=False),
                sa.Column("status", sa.String(20), nullable=False),
                sa.Column("reason", sa.Text, nullable=False),
                sa.Column("replaces_id", sa.Integer, sa.ForeignKey("appointments.id"), nullable=True),
                sa.Column("replaced_by_id", sa.Integer, sa.ForeignKey("appointments.id"), nullable=True),
                sa.Column("booked_by", sa.String(40), nullable=False),
                _aware("confirmed_at", nullable=True),
                sa.Column("cancel_reason", sa.String(120), nullable=False),
                _aware("created_at", server_default=NOW),
                _aware("updated_at", server_default=NOW),
                # The database's last word against double booking: one active appointment per slot.
                sa.Index(
                    "uq_appointments_active_slot",
                    "slot_id",
                    unique=True,
                    sqlite_where=sa.text(ACTIVE),
                    postgresql_where=sa.text(ACTIVE),
                ),
            ],
        ),
    ]


def message_tables() -> list[tuple[str, list]]:
    return [
        (
            "sched_messages",
            [
                _id(),
                sa.Column("dedupe_key", sa.String(80), nullable=False, unique=True),
                sa.Column("kind", sa.String(24), nullable=False),
                sa.Column("patient_id", sa.String(64), nullable=False, index=True),
                sa.Column("appointment_id", sa.String(64), nullable=True, index=True),
                sa.Column("slot_id", sa.String(64), nullable=True),
                _aware("due_at", index=True),
                sa.Column("status", sa.String(12), nullable=False),
                sa.Column("body", sa.Text, nullable=True),
                sa.Column("claimed_by", sa.String(64), nullable=True),
                _aware("claimed_until", nullable=True),
                sa.Column("attempts", sa.Integer, nullable=False),
                _aware("sent_at", nullable=True),
                sa.Column("message_sid", sa.String(64), nullable=True),
                sa.Column("detail", sa.String(120), nullable=False),
            ],
        ),
        (
            "sched_waitlist",
            [
                _id(),
                sa.Column("patient_id", sa.String(64), nullable=False, index=True),
                sa.Column("appointment_id", sa.String(64), nullable=True),
                sa.Column("visit_type", sa.String(40), nullable=False),
                sa.Column("provider_id", sa.String(64), nullable=True),
                sa.Column("location_id", sa.String(64), nullable=True),
                _aware("not_after", nullable=True),
                sa.Column("status", sa.String(12), nullable=False),
                _aware("created_at", server_default=NOW),
            ],
        ),
        (
            "sched_offers",
            [
                _id(),
                sa.Column("slot_id", sa.String(64), nullable=False, index=True),
                sa.Column("waitlist_id", sa.Integer, sa.ForeignKey("sched_waitlist.id"), nullable=False),
                sa.Column("status", sa.String(12), nullable=False),
                _aware("offered_at", server_default=NOW),
                _aware("expires_at"),
                sa.UniqueConstraint("slot_id", "waitlist_id", name="uq_sched_offers_slot_waitlist"),
            ],
        ),
    ]


def tables() -> list[tuple[str, list]]:
    """In the order of their foreign keys."""
    return clinic_tables() + calendar_tables() + patient_tables() + message_tables()


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, parts in tables():
        if name not in existing:
            op.create_table(name, *parts)


def downgrade() -> None:
    for name, _ in reversed(tables()):
        op.drop_table(name)
