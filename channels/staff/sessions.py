"""Staff sessions kept server-side in Redis.

The browser holds only a random token; Redis holds its SHA-256 (so a dump of Redis opens no
session) in a hash `{prefix}:staff:session:{sha}` that expires after `idle_seconds` without a
request (HIPAA automatic logoff) and is refused past `absolute_seconds` whatever the activity. Each
member's sessions are also listed in `{prefix}:staff:sessions_of:{staff_id}`, so disabling an
account ends all of them. Each session carries its own CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from channels.staff.accounts import Role, StaffMember
from channels.store import decoded

log = logging.getLogger(__name__)

# token_urlsafe(32) is 43 characters; anything much longer is not one of ours and is not hashed.
MAX_TOKEN_CHARS = 128


@dataclass(frozen=True)
class StaffSession:
    token_hash: str
    staff_id: int
    role: Role
    email: str
    display_name: str
    csrf: str
    created_at: float

    @property
    def is_supervisor(self) -> bool:
        return self.role is Role.SUPERVISOR

    def csrf_matches(self, supplied: str | None) -> bool:
        # constant time: the comparison must not tell how much of a guess was right
        return bool(supplied) and hmac.compare_digest(supplied.encode(), self.csrf.encode())

    def staff_dict(self) -> dict[str, object]:
        return {"id": self.staff_id, "email": self.email, "role": self.role.value, "display_name": self.display_name}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StaffSessions:
    def __init__(
        self,
        redis: Redis,
        prefix: str = "careline",
        idle_seconds: int = 900,
        absolute_seconds: int = 12 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        self.redis = redis
        self.prefix = prefix
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        self.clock = clock

    def _key(self, hashed: str) -> str:
        return f"{self.prefix}:staff:session:{hashed}"

    def _index(self, staff_id: int) -> str:
        return f"{self.prefix}:staff:sessions_of:{staff_id}"

    async def create(self, member: StaffMember) -> tuple[str, StaffSession]:
        """A new session for the member: the token for the cookie, and the session."""
        token = secrets.token_urlsafe(32)
        session = StaffSession(
            token_hash=token_hash(token),
            staff_id=member.id,
            role=member.role,
            email=member.email,
            display_name=member.display_name,
            csrf=secrets.token_urlsafe(32),
            created_at=self.clock(),
        )
        fields = {
            "staff_id": session.staff_id,
            "role": session.role.value,
            "email": session.email,
            "display_name": session.display_name,
            "csrf": session.csrf,
            "created_at": repr(session.created_at),
        }
        key, index = self._key(session.token_hash), self._index(member.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.idle_seconds)
            pipe.sadd(index, session.token_hash)
            # no session outlives absolute_seconds, so neither need the list of them
            pipe.expire(index, self.absolute_seconds)
            await pipe.execute()
        return token, session

    async def get(self, token: str | None, touch: bool = True) -> StaffSession | None:
        """The session of this token, its idle expiry slid forward (unless `touch` is False: a
        background request, no sign of a person); None when there is none, it has expired (idle
        or absolute), or it cannot be read."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        hashed = token_hash(token)
        key = self._key(hashed)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            if touch:
                pipe.expire(key, self.idle_seconds)  # a no-op when the key is gone
            data, *_ = await pipe.execute()
        if not data:
            return None
        session = _parse(hashed, {decoded(k): decoded(v, "replace") for k, v in data.items()})
        if session is None:
            log.warning("staff session unreadable: ended")
            await self._end_hash(hashed, None)
            return None
        if self.clock() - session.created_at > self.absolute_seconds:
            await self._end_hash(hashed, session.staff_id)
            return None
        return session

    async def alive(self, token_hash: str) -> bool:
        """Whether the session is still open, for a long-lived WebSocket. It does not slide the
        idle expiry: a socket's own keep-alive traffic is no sign that a person is there."""
        created_at = decoded(await self.redis.hget(self._key(token_hash), "created_at"))
        try:
            return created_at is not None and self.clock() - float(created_at) <= self.absolute_seconds
        except ValueError:
            return False

    async def end(self, token: str | None) -> None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return
        hashed = token_hash(token)
        staff_id = decoded(await self.redis.hget(self._key(hashed), "staff_id"))
        await self._end_hash(hashed, int(staff_id) if staff_id and str(staff_id).isdigit() else None)

    async def _end_hash(self, hashed: str, staff_id: int | None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(hashed))
            if staff_id is not None:
                pipe.srem(self._index(staff_id), hashed)
            await pipe.execute()

    async def end_all(self, staff_id: int) -> int:
        """End every session of this member (an account disabled); the number that were open."""
        index = self._index(staff_id)
        hashes = [decoded(h) for h in await self.redis.smembers(index)]
        if not hashes:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*[self._key(h) for h in hashes])
            pipe.delete(index)
            ended, _ = await pipe.execute()
        return int(ended)


def _parse(hashed: str, data: dict[str, str]) -> StaffSession | None:
    try:
        if not data["csrf"]:
            raise ValueError("no CSRF token")
        return StaffSession(
            token_hash=hashed,
            staff_id=int(data["staff_id"]),
            role=Role(data["role"]),
            email=data["email"],
            display_name=data["display_name"],
            csrf=data["csrf"],
            created_at=float(data["created_at"]),
        )
    except (KeyError, ValueError):
        return None
