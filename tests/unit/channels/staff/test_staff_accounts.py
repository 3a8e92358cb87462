"""Staff accounts on SQLite: adding, refusing, logging in, the lockout and its end, disabled
accounts, and rehashing an old hash at login."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from channels.db import make_engine, staff_accounts
from channels.staff.accounts import (
    AccountExists,
    AccountNotFound,
    InvalidAccount,
    LockedOut,
    LoginFailed,
    Role,
    StaffAccounts,
    WeakPassword,
)

PASSWORD = "correct horse battery"
# Cheap parameters keep the tests fast; test_login_rehashes_an_old_hash uses the real defaults.
CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


class Clock:
    def __init__(self):
        self.now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class CountingHasher(PasswordHasher):
    """The real hasher, counting the verifications it is asked for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.verified = 0

    def verify(self, hash, password):
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def staff(engine, clock):
    return StaffAccounts(engine, max_failures=3, lockout_seconds=600, hasher=CountingHasher(**CHEAP), clock=clock)


def stored(engine, email: str):
    with engine.connect() as conn:
        return conn.execute(select(staff_accounts).where(staff_accounts.c.email == email)).one()


def test_add_keeps_a_lower_cased_email_a_default_name_and_only_a_hash(staff, engine):
    member = staff.add("  Alice.Smith@Clinic.ORG ", "supervisor", PASSWORD)
    assert member.email == "alice.smith@clinic.org" and member.display_name == "alice.smith"
    assert member.role is Role.SUPERVISOR and member.is_supervisor
    row = stored(engine, "alice.smith@clinic.org")
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    assert row.failed_logins == 0 and row.disabled is False and row.created_at is not None
    agent = staff.add("bob@clinic.org", Role.AGENT, PASSWORD, display_name="Bob B.")
    assert agent.display_name == "Bob B." and not agent.is_supervisor
    assert staff.get(agent.id) == agent and staff.by_email("BOB@clinic.org") == agent


def test_a_second_account_for_the_same_email_is_refused(staff):
    staff.add("alice@clinic.org", "agent", PASSWORD)
    with pytest.raises(AccountExists, match="alice@clinic.org"):
        staff.add("ALICE@clinic.org", "supervisor", PASSWORD)


@pytest.mark.parametrize("password", ["short pass", "x" * 257, "a" * 12, "", "           "])
def test_weak_passwords_are_refused_with_the_rule(staff, password):
    with pytest.raises(WeakPassword, match="12 to 256 characters"):
        staff.add("alice@clinic.org", "agent", password)
    assert staff.by_email("alice@clinic.org") is None


def test_the_longest_and_shortest_passwords_are_accepted(staff):
    staff.add("a@clinic.org", "agent", "ab" * 6)
    staff.add("b@clinic.org", "agent", "ab" * 128)


@pytest.mark.parametrize(
    "email, role, name",
    [
        ("alice", "agent", None),
        ("alice@clinic@org", "agent", None),
        ("alice smith@clinic.org", "agent", None),
        ("a" * 250 + "@x.org", "agent", None),
        ("alice@clinic.org", "admin", None),
        ("alice@clinic.org", "agent", ""),
        ("alice@clinic.org", "agent", "n" * 81),
    ],
)
def test_bad_emails_roles_and_names_are_refused(staff, email, role, name):
    with pytest.raises(InvalidAccount):
        staff.add(email, role, PASSWORD, display_name=name)


async def test_the_right_password_logs_in(staff):
    member = staff.add("alice@clinic.org", "agent", PASSWORD)
    assert await staff.authenticate("Alice@Clinic.org", PASSWORD) == member


async def test_a_wrong_password_and_an_unknown_email_fail_alike(staff, engine):
    member = staff.add("alice@clinic.org", "agent", PASSWORD)
    with pytest.raises(LoginFailed) as wrong:
        await staff.authenticate("alice@clinic.org", PASSWORD + "!")
    with pytest.raises(LoginFailed) as unknown:
        await staff.authenticate("nobody@clinic.org", PASSWORD)
    with pytest.raises(LoginFailed) as malformed:
        await staff.authenticate("not an email", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == str(malformed.value)
    assert (wrong.value.reason, wrong.value.staff_id) == ("wrong_password", member.id)
    assert (unknown.value.reason, unknown.value.staff_id) == ("unknown_email", None)
    assert stored(engine, "alice@clinic.org").failed_logins == 1


async def test_an_unknown_email_costs_an_argon2_verification_too(staff):
    staff.add("alice@clinic.org", "agent", PASSWORD)
    before = staff.hasher.verified
    with pytest.raises(LoginFailed):
        await staff.authenticate("nobody@clinic.org", PASSWORD)
    assert staff.hasher.verified == before + 1
    with pytest.raises(LoginFailed):
        await staff.authenticate("alice@clinic.org", "wrong password!")
    assert staff.hasher.verified == before + 2


async def test_a_success_resets_the_failures(staff, engine):
    staff.add("alice@clinic.org", "agent", PASSWORD)
    for _ in range(2):
        with pytest.raises(LoginFailed):
            await staff.authenticate("alice@clinic.org", "wrong password!")
    await staff.authenticate("alice@clinic.org", PASSWORD)
    assert stored(engine, "alice@clinic.org").failed_logins == 0
    for _ in range(2):  # two more do not lock: the count started again
        with pytest.raises(LoginFailed):
            await staff.authenticate("alice@clinic.org", "wrong password!")


async def test_max_failures_lock_the_account_even_for_the_right_password(staff, engine, clock):
    member = staff.add("alice@clinic.org", "agent", PASSWORD)
    for _ in range(2):
        with pytest.raises(LoginFailed):
            await staff.authenticate("alice@clinic.org", "wrong password!")
    with pytest.raises(LockedOut) as locking:
        await staff.authenticate("alice@clinic.org", "wrong password!")
    assert (locking.value.retry_after, locking.value.staff_id, locking.value.reason) == (600, member.id, "max_failures")
    row = stored(engine, "alice@clinic.org")
    assert row.failed_logins == 0 and row.locked_until is not None
    clock.now += timedelta(seconds=599)
    with pytest.raises(LockedOut) as still:
        await staff.authenticate("alice@clinic.org", PASSWORD)
    assert still.value.retry_after == 1 and still.value.reason == "still_locked"
    clock.now += timedelta(seconds=2)
    assert await staff.authenticate("alice@clinic.org", PASSWORD) == member
    assert stored(engine, "alice@clinic.org").locked_until is None


async def test_a_lock_that_ended_in_the_past_lets_the_right_password_in(engine):
    staff = StaffAccounts(engine, max_failures=2, lockout_seconds=900, hasher=PasswordHasher(**CHEAP))
    member = staff.add("alice@clinic.org", "agent", PASSWORD)
    past = datetime.now(UTC) - timedelta(seconds=5)
    with engine.begin() as conn:
        conn.execute(update(staff_accounts).where(staff_accounts.c.id == member.id).values(locked_until=past))
    assert await staff.authenticate("alice@clinic.org", PASSWORD) == member
    with engine.begin() as conn:
        future = datetime.now(UTC) + timedelta(seconds=300)
        conn.execute(update(staff_accounts).where(staff_accounts.c.id == member.id).values(locked_until=future))
    with pytest.raises(LockedOut) as locked:
        await staff.authenticate("alice@clinic.org", PASSWORD)
    assert 290 <= locked.value.retry_after <= 300


async def test_a_disabled_account_fails_like_a_wrong_password_until_enabled(staff):
    member = staff.add("alice@clinic.org", "agent", PASSWORD)
    other = staff.add("bob@clinic.org", "supervisor", PASSWORD)
    assert staff.disable("ALICE@clinic.org") == member
    with pytest.raises(LoginFailed) as refused:
        await staff.authenticate("alice@clinic.org", PASSWORD)
    assert refused.value.reason == "disabled" and str(refused.value) == "the email or password is not right"
    assert staff.get(member.id) is None and staff.by_email("alice@clinic.org") is None
    assert staff.list() == [other]
    staff.enable("alice@clinic.org")
    assert await staff.authenticate("alice@clinic.org", PASSWORD) == member
    assert staff.list() == [member, other]


def test_changing_a_missing_account_says_so(staff):
    for change in (staff.disable, staff.enable):
        with pytest.raises(AccountNotFound):
            change("nobody@clinic.org")
    with pytest.raises(AccountNotFound):
        staff.set_password("nobody@clinic.org", PASSWORD)


async def test_set_password_replaces_the_old_one_and_lifts_a_lock(staff, engine):
    staff.add("alice@clinic.org", "agent", PASSWORD)
    for _ in range(3):
        with pytest.raises((LoginFailed, LockedOut)):
            await staff.authenticate("alice@clinic.org", "wrong password!")
    with pytest.raises(WeakPassword):
        staff.set_password("alice@clinic.org", "too short")
    staff.set_password("alice@clinic.org", "a brand new passphrase")
    assert stored(engine, "alice@clinic.org").locked_until is None
    with pytest.raises(LoginFailed):
        await staff.authenticate("alice@clinic.org", PASSWORD)
    await staff.authenticate("alice@clinic.org", "a brand new passphrase")


async def test_login_rehashes_an_old_hash_with_the_current_parameters(engine):
    old = StaffAccounts(engine, hasher=PasswordHasher(**CHEAP))
    old.add("alice@clinic.org", "agent", PASSWORD)
    before = stored(engine, "alice@clinic.org").password_hash
    assert "m=8,t=1,p=1" in before
    current = StaffAccounts(engine)  # argon2-cffi's defaults
    await current.authenticate("alice@clinic.org", PASSWORD)
    after = stored(engine, "alice@clinic.org").password_hash
    assert after != before and not current.hasher.check_needs_rehash(after)
    assert current.hasher.verify(after, PASSWORD)
    await current.authenticate("alice@clinic.org", PASSWORD)
    assert stored(engine, "alice@clinic.org").password_hash == after  # no rehash when current


async def test_concurrent_wrong_passwords_are_all_counted(engine):
    import asyncio

    staff = StaffAccounts(engine, max_failures=50, hasher=PasswordHasher(**CHEAP))
    staff.add("alice@clinic.org", "agent", PASSWORD)
    results = await asyncio.gather(
        *[staff.authenticate("alice@clinic.org", "wrong password!") for _ in range(10)], return_exceptions=True
    )
    assert all(isinstance(r, LoginFailed) for r in results)
    assert stored(engine, "alice@clinic.org").failed_logins == 10
