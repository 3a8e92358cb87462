"""Staff accounts and the staff audit on PostgreSQL (timestamptz: aware datetimes both ways), as
the unit tests do on SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from channels.db import make_engine, staff_accounts, staff_audit
from channels.staff.accounts import AccountExists, LockedOut, LoginFailed, StaffAccounts
from channels.staff.audit import StaffAction, StaffAudit
from tests.integration.channels.staff.conftest import POSTGRES_URL, cheap_hasher, postgres_up

PASSWORD = "correct horse battery"


@pytest.fixture
def engine():
    if not postgres_up():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    engine = make_engine(POSTGRES_URL)
    yield engine
    engine.dispose()


@pytest.fixture
def email(engine):
    email = f"staff-{uuid.uuid4().hex[:12]}@clinic.org"
    yield email
    with engine.begin() as conn:
        ids = [r.id for r in conn.execute(select(staff_accounts.c.id).where(staff_accounts.c.email == email))]
        conn.execute(delete(staff_audit).where(staff_audit.c.staff_id.in_(ids)))
        conn.execute(delete(staff_accounts).where(staff_accounts.c.email == email))


async def test_accounts_and_the_lockout_on_postgresql(engine, email):
    now = [datetime.now(UTC)]
    staff = StaffAccounts(engine, max_failures=2, lockout_seconds=300, hasher=cheap_hasher(), clock=lambda: now[0])
    member = staff.add(email.upper(), "agent", PASSWORD)
    with pytest.raises(AccountExists):
        staff.add(email, "supervisor", PASSWORD)
    assert await staff.authenticate(email, PASSWORD) == member
    with pytest.raises(LoginFailed):
        await staff.authenticate(email, "wrong horse battery")
    with pytest.raises(LockedOut):
        await staff.authenticate(email, "wrong horse battery")
    with engine.connect() as conn:
        locked_until = conn.execute(select(staff_accounts.c.locked_until).where(staff_accounts.c.id == member.id))
        locked_until = locked_until.scalar_one()
    assert locked_until.tzinfo is not None and abs((locked_until - now[0]).total_seconds() - 300) < 1
    now[0] += timedelta(seconds=150)
    with pytest.raises(LockedOut) as locked:
        await staff.authenticate(email, PASSWORD)
    assert 149 <= locked.value.retry_after <= 151
    now[0] += timedelta(seconds=151)
    assert await staff.authenticate(email, PASSWORD) == member
    staff.disable(email)
    assert staff.get(member.id) is None and member not in staff.list()


async def test_the_staff_audit_on_postgresql(engine, email):
    member = StaffAccounts(engine, hasher=cheap_hasher()).add(email, "supervisor", PASSWORD)
    audit = StaffAudit(engine)
    conversation = "web-" + uuid.uuid4().hex
    before = datetime.now(UTC) - timedelta(seconds=5)
    await audit.record(member.id, StaffAction.OPEN, conversation=conversation)
    await audit.record(member.id, StaffAction.REVEAL, conversation=conversation, detail="reason=callback")
    rows = audit.rows(since=before, staff_id=member.id)
    assert [(r["action"], r["detail"]) for r in rows] == [("reveal", "reason=callback"), ("open", "")]
    assert all(r["at"].tzinfo is not None and r["at"] >= before for r in rows)
    assert [r["action"] for r in audit.rows(conversation=conversation)] == ["reveal", "open"]
    assert audit.export_csv(conversation=conversation).count(conversation) == 2
