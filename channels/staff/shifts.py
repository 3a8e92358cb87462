"""Who is on shift: staffed hours from configuration (per weekday, in the clinic's time zone) and
staff presence (online / away, kept alive by each console's heartbeat).

A hand-off outside staffed hours, or when no agent is online, is told honestly when to expect a
reply (channels/pipeline.py) and is queued as a call-back request.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from channels.store import decoded

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PART = re.compile(
    r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$"
)
# A console that has not said it is alive for this long is away (its heartbeat is every 20 s).
PRESENCE_TTL = 60


def _days(spec: str) -> set[int]:
    days: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"STAFF_HOURS: unknown day in {part!r} (use mon, tue, wed, thu, fri, sat, sun)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return days


def _clock(text: str) -> clock:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        return clock.max
    return clock(hours, minutes)


@dataclass(frozen=True)
class StaffedHours:
    """E.g. "mon-fri 08:00-18:00; sat 09:00-12:00" in `timezone`; "" means always staffed."""

    windows: tuple[tuple[int, clock, clock], ...]
    timezone: ZoneInfo

    @classmethod
    def parse(cls, text: str, timezone: str) -> StaffedHours:
        windows = []
        for part in filter(None, (p.strip().lower() for p in text.split(";"))):
            match = _PART.match(part)
            if not match:
                raise ValueError(f"STAFF_HOURS: expected e.g. 'mon-fri 08:00-18:00; sat 09:00-12:00', got {part!r}")
            start, end = _clock(match["start"]), _clock(match["end"])
            if end <= start:
                raise ValueError(f"STAFF_HOURS: {part!r} ends before it starts")
            windows.extend((day, start, end) for day in sorted(_days(match["days"])))
        return cls(tuple(windows), ZoneInfo(timezone))

    def open_at(self, when: datetime) -> bool:
        if not self.windows:
            return True
        local = when.astimezone(self.timezone)
        return any(day == local.weekday() and start <= local.time() < end for day, start, end in self.windows)

    def next_open(self, when: datetime) -> datetime | None:
        """When staff are next on shift (`when` itself if open now); None if never."""
        if self.open_at(when):
            return when
        local = when.astimezone(self.timezone)
        for ahead in range(8):
            date = (local + timedelta(days=ahead)).date()
            starts = sorted(s for d, s, _ in self.windows if d == date.weekday())
            for start in starts:
                opening = datetime.combine(date, start, self.timezone)
                if opening > local:
                    return opening
        return None


class Presence:
    """Staff presence in Redis: a hash staff id → {status, name, seen}."""

    def __init__(self, redis: Redis, prefix: str = "careline"):
        self.redis = redis
        self.key = f"{prefix}:staff:presence"

    async def set(self, staff_id: int, name: str, status: str) -> None:
        if status not in ("online", "away", "offline"):
            raise ValueError("status must be online, away or offline")
        await self.redis.hset(
            self.key, str(staff_id), json.dumps({"status": status, "name": name, "seen": time.time()})
        )

    async def all(self) -> dict[int, dict]:
        now = time.time()
        result = {}
        for staff_id, raw in (await self.redis.hgetall(self.key)).items():
            entry = json.loads(decoded(raw))
            if entry["status"] != "offline" and now - entry["seen"] > PRESENCE_TTL:
                entry["status"] = "away"  # the console stopped saying it is alive
            result[int(decoded(staff_id))] = entry
        return result

    async def online(self) -> int:
        return sum(1 for e in (await self.all()).values() if e["status"] == "online")


@dataclass
class Shift:
    hours: StaffedHours
    presence: Presence
    clinic_phone: str = ""  # told to a patient who cannot wait for staffed hours

    async def staffed(self, now: datetime | None = None) -> tuple[bool, datetime | None]:
        """(someone can answer now, when the next staffed hours begin). Within staffed hours with
        nobody online the second is None: a reply comes as soon as someone logs in."""
        now = now or datetime.now(self.hours.timezone)
        if self.hours.open_at(now):
            return await self.presence.online() > 0, None
        return False, self.hours.next_open(now)
