"""The staff audit trail: one SQL row per staff action (the `staff_audit` table of channels/db.py).

A row names the staff member by id and the conversation by its pseudonym; its detail holds ids
and reasons only, never message or note text. A write that fails raises: the caller decides
whether the action may go on without its row.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from channels.db import staff_audit

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 200
MAX_CONVERSATION_CHARS = 64
CSV_COLUMNS = ("id", "at", "staff_id", "conversation", "action", "detail")
# A cell starting with one of these is a formula to a spreadsheet (CSV injection): quote it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class StaffAction(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOCKED_OUT = "locked_out"
    LOGOUT = "logout"
    OPEN = "open"
    CLAIM = "claim"
    RELEASE = "release"
    TRANSFER = "transfer"
    REPLY = "reply"
    NOTE = "note"
    REVEAL = "reveal"
    RETURN_TO_BOT = "return_to_bot"
    CLOSE = "close"
    CANNED_ADD = "canned_add"
    CANNED_DELETE = "canned_delete"
    EXPORT_AUDIT = "export_audit"
    PRESENCE = "presence"
    # the schedule (channels/routes/schedule.py): detail holds ids only
    PATIENT_SEARCH = "patient_search"
    PATIENT_CREATE = "patient_create"
    APPOINTMENT_BOOK = "appointment_book"
    APPOINTMENT_CANCEL = "appointment_cancel"
    APPOINTMENT_MOVE = "appointment_move"
    APPOINTMENT_STATUS = "appointment_status"


def _utc(value: datetime | None) -> datetime | None:
    # SQLite gives back the UTC wall time without its zone; PostgreSQL an aware datetime.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StaffAudit:
    def __init__(self, engine: Engine):
        self.engine = engine

    async def record(
        self, staff_id: int | None, action: str, conversation: str | None = None, detail: str = ""
    ) -> None:
        """One row; ValueError for an unknown action or a detail that is too long (it is meant
        for ids and reasons), the database's error when the row cannot be written."""
        row = {
            "staff_id": staff_id,
            "action": StaffAction(action).value,
            "conversation": conversation,
            "detail": detail or "",
        }
        if len(row["detail"]) > MAX_DETAIL_CHARS:
            raise ValueError(f"an audit detail is ids and reasons, at most {MAX_DETAIL_CHARS} characters")
        if conversation is not None and len(conversation) > MAX_CONVERSATION_CHARS:
            raise ValueError("an audit row names the conversation by its pseudonymous key")
        try:
            await asyncio.to_thread(self._insert, row)
        except Exception as exc:
            log.error("staff audit write failed action=%s staff_id=%s error=%s", action, staff_id, type(exc).__name__)
            raise

    def _insert(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(staff_audit.insert().values(**row))

    def rows(
        self,
        since: datetime | None = None,
        staff_id: int | None = None,
        conversation: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The newest `limit` rows that match, newest first; `at` as an aware UTC datetime."""
        query = select(staff_audit).order_by(staff_audit.c.id.desc()).limit(max(0, limit))
        if since is not None:
            query = query.where(staff_audit.c.at >= _utc(since))
        if staff_id is not None:
            query = query.where(staff_audit.c.staff_id == staff_id)
        if conversation is not None:
            query = query.where(staff_audit.c.conversation == conversation)
        with self.engine.connect() as conn:
            return [{**r._mapping, "at": _utc(r.at)} for r in conn.execute(query)]

    def export_csv(
        self,
        since: datetime | None = None,
        staff_id: int | None = None,
        conversation: str | None = None,
        limit: int = 100_000,
    ) -> str:
        """The same rows as CSV with a header, oldest first (the order an auditor reads in)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for row in reversed(self.rows(since, staff_id, conversation, limit)):
            writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
