"""The staff audit trail on SQLite: rows, filters, the CSV export, and what a row may not hold."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from channels.db import make_engine, staff_audit
from channels.staff.audit import StaffAction, StaffAudit


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def audit(engine):
    return StaffAudit(engine)


def test_the_actions_are_the_console_s_verbs():
    assert [a.value for a in StaffAction] == [
        "login",
        "login_failed",
        "locked_out",
        "logout",
        "open",
        "claim",
        "release",
        "transfer",
        "reply",
        "note",
        "reveal",
        "return_to_bot",
        "close",
        "canned_add",
        "canned_delete",
        "export_audit",
        "presence",
        "patient_search",
        "patient_create",
        "appointment_book",
        "appointment_cancel",
        "appointment_move",
        "appointment_status",
    ]


async def test_rows_are_recorded_and_filtered_newest_first(audit):
    await audit.record(1, StaffAction.LOGIN)
    await audit.record(1, "claim", conversation="web-" + "a" * 32)
    await audit.record(2, StaffAction.CLAIM, conversation="sms-" + "b" * 32, detail="from=queue")
    await audit.record(None, StaffAction.LOGIN_FAILED, detail="unknown_email")
    rows = audit.rows()
    assert [r["action"] for r in rows] == ["login_failed", "claim", "claim", "login"]
    assert rows[0]["staff_id"] is None and rows[0]["detail"] == "unknown_email"
    assert all(r["at"].tzinfo is not None for r in rows)
    assert [r["action"] for r in audit.rows(staff_id=1)] == ["claim", "login"]
    assert [r["staff_id"] for r in audit.rows(conversation="sms-" + "b" * 32)] == [2]
    assert len(audit.rows(limit=2)) == 2


async def test_since_keeps_only_later_rows(audit, engine):
    await audit.record(1, StaffAction.LOGIN)
    await audit.record(1, StaffAction.LOGOUT)
    long_ago = datetime.now(UTC) - timedelta(days=2)
    with engine.begin() as conn:
        conn.execute(update(staff_audit).where(staff_audit.c.action == "login").values(at=long_ago))
    assert [r["action"] for r in audit.rows(since=datetime.now(UTC) - timedelta(days=1))] == ["logout"]
    assert len(audit.rows(since=long_ago - timedelta(seconds=1))) == 2


async def test_an_unknown_action_or_a_long_detail_is_refused(audit):
    with pytest.raises(ValueError):
        await audit.record(1, "delete_everything")
    with pytest.raises(ValueError, match="ids and reasons"):
        await audit.record(1, StaffAction.NOTE, detail="x" * 201)
    with pytest.raises(ValueError, match="pseudonymous"):
        await audit.record(1, StaffAction.OPEN, conversation="c" * 65)
    assert audit.rows() == []


async def test_a_failed_write_raises(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    audit = StaffAudit(engine)
    with engine.begin() as conn:
        staff_audit.drop(conn)
    with pytest.raises(Exception, match="staff_audit"):
        await audit.record(1, StaffAction.LOGIN)
    engine.dispose()


async def test_the_csv_export_is_oldest_first_and_defuses_formulas(audit):
    await audit.record(1, StaffAction.LOGIN)
    await audit.record(1, StaffAction.TRANSFER, conversation="web-" + "c" * 32, detail="=HYPERLINK(1)")
    text = audit.export_csv()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "at", "staff_id", "conversation", "action", "detail"]
    assert [r[4] for r in rows[1:]] == ["login", "transfer"]
    assert rows[2][5] == "'=HYPERLINK(1)" and rows[2][3] == "web-" + "c" * 32
    assert datetime.fromisoformat(rows[1][1]).tzinfo is not None
    assert audit.export_csv(staff_id=2).count("\n") == 1  # the header alone
