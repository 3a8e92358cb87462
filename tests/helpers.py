"""Helpers for conversation tests."""

from __future__ import annotations

from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def say(api: httpx.Client, conversation_id: str, text: str, **extra) -> dict:
    resp = api.post("/api/messages", json={"conversation_id": conversation_id, "text": text, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def texts(reply: dict) -> str:
    return " ".join(m["text"] for m in reply["messages"])


STAFF_PASSWORD = "correct horse battery staple"


def staff_accounts(stack, **roles: str) -> dict:
    """Staff accounts {name: role} in the database the stack's gateway uses, with cheap Argon2
    parameters (the unit tests cover the real ones); display names are the names capitalised."""
    import uuid

    from argon2 import PasswordHasher

    from channels.db import make_engine
    from channels.staff.accounts import StaffAccounts

    engine = make_engine(stack.services["gateway"].env["DATABASE_URL"])
    accounts = StaffAccounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    suffix = uuid.uuid4().hex[:6]
    try:
        return {
            name: accounts.add(f"{name}-{suffix}@clinic.test", role, STAFF_PASSWORD, display_name=name.capitalize())
            for name, role in roles.items()
        }
    finally:
        engine.dispose()
