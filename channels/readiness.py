"""The checks behind /readyz: Redis, Rasa, the action server, the safety screen and, when it runs,
the SMS channel. Each check answers True or False and never raises."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from redis.asyncio import Redis

from channels.messages import InboundMessage
from channels.rasa_client import RasaClient
from channels.safety import SafetyScreen

# At most one screen check in this many seconds: hammering /readyz must not take the workers from patients.
SCREEN_CHECK_EVERY = 5.0


class Readiness:
    def __init__(
        self,
        redis: Redis,
        rasa: RasaClient,
        http: httpx.AsyncClient,
        action_server_url: str,
        screen: SafetyScreen,
        sms=None,
    ):
        self.redis, self.rasa, self.http, self.screen, self.sms = redis, rasa, http, screen, sms
        self.action_server_health = f"{action_server_url.rstrip('/')}/health"
        self._screen_check = (0.0, False)  # (when, ok): the last screen check, so it is not repeated

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body): body has the checks and, with SMS on, the channel's own health."""
        r, a, s, sc = await asyncio.gather(self.redis_ok(), self.rasa.ready(), self.actions_ok(), self.screen_ok())
        checks = {"redis": r, "rasa": a, "action_server": s, "safety_screen": sc}
        body: dict[str, Any] = {"checks": checks}
        if self.sms is not None:
            body["sms"] = sms = self.sms.health()
            checks["sms_workers"] = bool(sms.get("ok", True))
        return all(checks.values()), body

    async def redis_ok(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False

    async def actions_ok(self) -> bool:
        try:
            resp = await self.http.get(self.action_server_health)
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    async def screen_ok(self) -> bool:
        checked_at, ok = self._screen_check
        if time.monotonic() - checked_at < SCREEN_CHECK_EVERY:
            return ok
        try:
            await self.screen.screen(InboundMessage("web", "readyz", "readiness check"))
            ok = True
        except Exception:
            ok = False
        self._screen_check = (time.monotonic(), ok)
        return ok
