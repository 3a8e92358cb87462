"""Staff accounts in SQL (the `staff_accounts` table of channels/db.py), passwords hashed with
Argon2id (argon2-cffi's defaults), and login with a lockout after repeated wrong passwords.

A login never tells which of its checks failed: an unknown email, a wrong password and a disabled
account get the same LoginFailed, and an unknown email costs the same Argon2 time as a known one.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from channels.db import staff_accounts

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 256
MAX_EMAIL_CHARS = 254
MAX_NAME_CHARS = 80
# Loose on purpose: one @, no spaces; the clinic knows its staff's addresses.
EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+$")


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class StaffMember:
    id: int
    email: str
    role: Role
    display_name: str

    @property
    def is_supervisor(self) -> bool:
        return self.role is Role.SUPERVISOR

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "role": self.role.value, "display_name": self.display_name}


class StaffError(Exception):
    """Base of the staff account errors (the CLI exits 2 on any of them)."""


class AccountExists(StaffError):
    pass


class AccountNotFound(StaffError):
    pass


class InvalidAccount(StaffError):
    """An email, role or display name that cannot be stored."""


class WeakPassword(StaffError):
    def __init__(self) -> None:
        super().__init__(
            f"a staff password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long "
            "and not one character repeated"
        )


class LoginFailed(StaffError):
    """The same message whatever failed; `staff_id` and `reason` are for the audit only."""

    def __init__(self, reason: str, staff_id: int | None = None) -> None:
        super().__init__("the email or password is not right")
        self.reason = reason  # unknown_email | wrong_password | disabled
        self.staff_id = staff_id


class LockedOut(StaffError):
    """`staff_id` and `reason` are for the audit only."""

    def __init__(self, retry_after: int, staff_id: int | None = None, reason: str = "still_locked") -> None:
        super().__init__(f"too many failed logins: try again in {retry_after} seconds")
        self.retry_after = retry_after
        self.staff_id = staff_id
        self.reason = reason  # max_failures (this attempt locked it) | still_locked


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > MAX_EMAIL_CHARS or not EMAIL_SHAPE.match(email):
        raise InvalidAccount(f"not an email address (one @, no spaces, at most {MAX_EMAIL_CHARS} characters)")
    return email


def check_password(password: str) -> None:
    if (
        not isinstance(password, str)
        or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS
        or len(set(password)) == 1
    ):
        raise WeakPassword()


def _role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidAccount(f"role must be one of: {', '.join(r.value for r in Role)}") from None


def _aware(value: datetime | None) -> datetime | None:
    # SQLite gives back the UTC wall time without its zone; PostgreSQL an aware datetime.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _member(row: Any) -> StaffMember:
    return StaffMember(row.id, row.email, Role(row.role), row.display_name)


class StaffAccounts:
    def __init__(
        self,
        engine: Engine,
        *,
        max_failures: int = 5,
        lockout_seconds: int = 900,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.engine = engine
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self.hasher = hasher or PasswordHasher()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._dummy_hash: str | None = None

    # --- management (the CLI) ---------------------------------------------------------------
    def add(self, email: str, role: str | Role, password: str, display_name: str | None = None) -> StaffMember:
        email, role = normalise_email(email), _role(role)
        name = (display_name if display_name is not None else email.split("@", 1)[0]).strip()
        if not 0 < len(name) <= MAX_NAME_CHARS:
            raise InvalidAccount(f"the display name must be 1 to {MAX_NAME_CHARS} characters")
        check_password(password)
        row = {"email": email, "role": role.value, "display_name": name, "password_hash": self.hasher.hash(password)}
        try:
            with self.engine.begin() as conn:
                staff_id = conn.execute(staff_accounts.insert().values(**row)).inserted_primary_key[0]
        except IntegrityError:
            raise AccountExists(f"a staff account for {email} already exists") from None
        return StaffMember(staff_id, email, role, name)

    def disable(self, email: str) -> StaffMember:
        return self._change(email, disabled=True)

    def enable(self, email: str) -> StaffMember:
        # enabling again is also how a supervisor lifts a lockout early
        return self._change(email, disabled=False, failed_logins=0, locked_until=None)

    def set_password(self, email: str, password: str) -> StaffMember:
        check_password(password)
        return self._change(email, password_hash=self.hasher.hash(password), failed_logins=0, locked_until=None)

    def _change(self, email: str, **values: Any) -> StaffMember:
        email = normalise_email(email)
        with self.engine.begin() as conn:
            conn.execute(update(staff_accounts).where(staff_accounts.c.email == email).values(**values))
            row = conn.execute(select(staff_accounts).where(staff_accounts.c.email == email)).first()
        if row is None:
            raise AccountNotFound(f"no staff account for {email}")
        return _member(row)

    # --- reading ------------------------------------------------------------------------------
    def get(self, staff_id: int) -> StaffMember | None:
        """The member, or None when the account is missing or disabled."""
        return self._enabled(staff_accounts.c.id == staff_id)

    def by_email(self, email: str) -> StaffMember | None:
        """The member, or None when the account is missing or disabled."""
        try:
            email = normalise_email(email)
        except InvalidAccount:
            return None
        return self._enabled(staff_accounts.c.email == email)

    def _enabled(self, condition) -> StaffMember | None:
        query = select(staff_accounts).where(condition, staff_accounts.c.disabled.is_(False))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _member(row) if row is not None else None

    def list(self) -> list[StaffMember]:
        """The enabled accounts, by email."""
        query = select(staff_accounts).where(staff_accounts.c.disabled.is_(False)).order_by(staff_accounts.c.email)
        with self.engine.connect() as conn:
            return [_member(row) for row in conn.execute(query)]

    # --- login ----------------------------------------------------------------------------------
    async def authenticate(self, email: str, password: str) -> StaffMember:
        """The member whose password this is; LoginFailed or LockedOut otherwise. The SQL and the
        Argon2 work (tens of milliseconds, on purpose) run in a thread."""
        return await asyncio.to_thread(self._authenticate, email, password)

    def _authenticate(self, email: str, password: str) -> StaffMember:
        dummy = self._dummy()  # made before any lookup, so only the first login of all pays for it
        try:
            email = normalise_email(email)
        except InvalidAccount:
            email = ""
        with self.engine.connect() as conn:
            row = conn.execute(select(staff_accounts).where(staff_accounts.c.email == email)).first() if email else None
        if row is None:
            self._verify(dummy, password)  # the same time as a known email
            raise LoginFailed("unknown_email")
        now = self.clock()
        locked_until = _aware(row.locked_until)
        if locked_until is not None and locked_until > now:
            raise LockedOut(_seconds_until(locked_until, now), staff_id=row.id)
        correct = self._verify(row.password_hash, password)
        if row.disabled:
            raise LoginFailed("disabled", staff_id=row.id)
        if not correct:
            self._failed(row.id, now)
        self._succeeded(row, password)
        return _member(row)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _failed(self, staff_id: int, now: datetime) -> None:
        """Count a wrong password; the one that reaches max_failures locks the account (and raises
        LockedOut), the others raise LoginFailed. The increment is one UPDATE, so concurrent wrong
        passwords are all counted."""
        where = staff_accounts.c.id == staff_id
        with self.engine.begin() as conn:
            conn.execute(update(staff_accounts).where(where).values(failed_logins=staff_accounts.c.failed_logins + 1))
            failures = conn.execute(select(staff_accounts.c.failed_logins).where(where)).scalar_one()
            if failures >= self.max_failures:
                until = now + timedelta(seconds=self.lockout_seconds)
                conn.execute(update(staff_accounts).where(where).values(failed_logins=0, locked_until=until))
        if failures >= self.max_failures:
            raise LockedOut(self.lockout_seconds, staff_id=staff_id, reason="max_failures")
        raise LoginFailed("wrong_password", staff_id=staff_id)

    def _succeeded(self, row: Any, password: str) -> None:
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if self.hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = self.hasher.hash(password)
        with self.engine.begin() as conn:
            conn.execute(update(staff_accounts).where(staff_accounts.c.id == row.id).values(**values))


def _seconds_until(when: datetime, now: datetime) -> int:
    return max(1, int((when - now).total_seconds() + 0.999))
