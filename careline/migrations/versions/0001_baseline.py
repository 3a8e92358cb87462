"""Baseline: the gateway's tables as channels/db.py made them with create_all before migrations.

Each table is created only when it is missing, so a database made by the old create_all is
adopted as it is and upgrades cleanly.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.func.now()


def audit_tables() -> list[tuple[str, list]]:
    return [
        (
            "safety_audit",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
                sa.Column("conversation", sa.String(64), nullable=False, index=True),
                sa.Column("channel", sa.String(16), nullable=False),
                sa.Column("outcome", sa.String(16), nullable=False),
                sa.Column("category", sa.String(64), nullable=False),
                sa.Column("rules", sa.Text, nullable=False),
                sa.Column("owner_before", sa.String(24), nullable=False),
                sa.Column("owner_after", sa.String(24), nullable=False),
                sa.Column("action", sa.String(24), nullable=False),
            ],
        ),
        (
            "privacy_audit",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
                sa.Column("action", sa.String(16), nullable=False),
                sa.Column("channel", sa.String(16), nullable=True),
                sa.Column("conversation", sa.String(64), nullable=True, index=True),
                sa.Column("actor", sa.String(64), nullable=False),
                sa.Column("counts", sa.Text, nullable=False),
            ],
        ),
    ]


def sms_tables() -> list[tuple[str, list]]:
    return [
        (
            "sms_consent",
            [
                sa.Column("conversation", sa.String(64), primary_key=True),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("source", sa.String(32), nullable=False),
                sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
            ],
        ),
        (
            "sms_delivery",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("message_sid", sa.String(64), nullable=True, index=True),
                sa.Column("conversation", sa.String(64), nullable=False, index=True),
                sa.Column("inbound_sid", sa.String(64), nullable=True),
                sa.Column("status", sa.String(24), nullable=False),
                sa.Column("error_code", sa.String(16), nullable=True),
                sa.Column("detail", sa.String(200), nullable=True),
                sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
            ],
        ),
    ]


def staff_tables() -> list[tuple[str, list]]:
    return [
        (
            "staff_accounts",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("email", sa.String(254), nullable=False, unique=True),
                sa.Column("role", sa.String(16), nullable=False),
                sa.Column("display_name", sa.String(80), nullable=False),
                sa.Column("password_hash", sa.String(255), nullable=False),
                sa.Column("disabled", sa.Boolean, nullable=False),
                sa.Column("failed_logins", sa.Integer, nullable=False),
                sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
            ],
        ),
        (
            "staff_audit",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW, index=True),
                sa.Column("staff_id", sa.Integer, nullable=True),
                sa.Column("conversation", sa.String(64), nullable=True, index=True),
                sa.Column("action", sa.String(32), nullable=False),
                sa.Column("detail", sa.String(200), nullable=False),
            ],
        ),
        (
            "canned_replies",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("title", sa.String(80), nullable=False, unique=True),
                sa.Column("body", sa.Text, nullable=False),
                sa.Column("created_by", sa.Integer, nullable=True),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
            ],
        ),
    ]


def tables() -> list[tuple[str, list]]:
    """The tables of this revision, as (name, columns and constraints)."""
    return audit_tables() + sms_tables() + staff_tables()


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, parts in tables():
        if name not in existing:
            op.create_table(name, *parts)


def downgrade() -> None:
    for name, _ in reversed(tables()):
        op.drop_table(name)
