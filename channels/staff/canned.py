"""Canned replies: the clinic's reply templates, managed by supervisors, picked by agents.

Placeholders are the clinic's own details ({clinic_name}, {clinic_phone}); a template with any
other placeholder is refused when it is saved, so an agent never sends a raw "{...}"."""

from __future__ import annotations

import asyncio
import string
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from channels.db import canned_replies

PLACEHOLDERS = ("clinic_name", "clinic_phone")
TITLE_MAX, BODY_MAX = 80, 1600


class CannedError(ValueError):
    """A template that cannot be saved; the message says why."""


def check_template(title: Any, body: Any) -> tuple[str, str]:
    if not isinstance(title, str) or not 0 < len(title.strip()) <= TITLE_MAX:
        raise CannedError(f"title must be 1-{TITLE_MAX} characters")
    if not isinstance(body, str) or not 0 < len(body.strip()) <= BODY_MAX:
        raise CannedError(f"body must be 1-{BODY_MAX} characters")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(body) if name is not None}
    except ValueError as exc:
        raise CannedError("body has an unmatched { or }: write {{ or }} for a brace") from exc
    unknown = names - set(PLACEHOLDERS)
    if unknown:
        raise CannedError(f"unknown placeholders {sorted(unknown)}: use {{clinic_name}} or {{clinic_phone}}")
    return title.strip(), body.strip()


class CannedReplies:
    def __init__(self, engine: Engine, clinic_name: str, clinic_phone: str):
        self.engine = engine
        self.values = {"clinic_name": clinic_name, "clinic_phone": clinic_phone}

    def _list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(canned_replies).order_by(canned_replies.c.title)).mappings().all()
        return [
            {"id": r["id"], "title": r["title"], "template": r["body"], "text": r["body"].format(**self.values)}
            for r in rows
        ]

    async def list(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._list)

    def _add(self, title: str, body: str, staff_id: int | None) -> int:
        try:
            with self.engine.begin() as conn:
                result = conn.execute(insert(canned_replies).values(title=title, body=body, created_by=staff_id))
                return int(result.inserted_primary_key[0])
        except IntegrityError as exc:
            raise CannedError(f"a canned reply titled {title!r} exists already") from exc

    async def add(self, title: Any, body: Any, staff_id: int | None = None) -> int:
        title, body = check_template(title, body)
        return await asyncio.to_thread(self._add, title, body, staff_id)

    def _delete(self, reply_id: int) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(canned_replies).where(canned_replies.c.id == reply_id)).rowcount > 0

    async def delete(self, reply_id: int) -> bool:
        return await asyncio.to_thread(self._delete, reply_id)
