"""The safety screen's audit trail: one durable row per hit, ids and rule names only."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from channels.db import safety_audit

log = logging.getLogger(__name__)


class SafetyAudit:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _insert(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(safety_audit.insert().values(**row))

    async def record(
        self,
        *,
        conversation: str,
        channel: str,
        outcome: str,
        category: str,
        rules: list[str],
        owner_before: str,
        owner_after: str,
        action: str,
    ) -> None:
        row = {
            "conversation": conversation,
            "channel": channel,
            "outcome": outcome,
            "category": category,
            "rules": ",".join(rules),
            "owner_before": owner_before,
            "owner_after": owner_after,
            "action": action,
        }
        await asyncio.to_thread(self._insert, row)

    def rows(self, conversation: str | None = None) -> list[dict[str, Any]]:
        query = select(safety_audit).order_by(safety_audit.c.id)
        if conversation:
            query = query.where(safety_audit.c.conversation == conversation)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
