"""Staff sessions in the real Redis: what is kept (a hash of the token, never the token), the idle
expiry that slides with each request, the absolute limit, and ending one or all of them."""

from __future__ import annotations

import asyncio
import hashlib

from channels.staff.accounts import Role, StaffMember
from channels.staff.sessions import StaffSessions

ANN = StaffMember(7, "ann@clinic.org", Role.SUPERVISOR, "Ann")
BO = StaffMember(8, "bo@clinic.org", Role.AGENT, "Bo")


async def test_a_session_is_kept_under_the_hash_of_its_token(redis, prefix):
    sessions = StaffSessions(redis, prefix=prefix, idle_seconds=60)
    token, session = await sessions.create(ANN)
    assert len(token) >= 43 and len(session.csrf) >= 43 and token != session.csrf
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert session.token_hash == digest
    keys = {k.decode() async for k in redis.scan_iter(f"{prefix}:*")}
    assert keys == {f"{prefix}:staff:session:{digest}", f"{prefix}:staff:sessions_of:7"}
    stored = await redis.hgetall(f"{prefix}:staff:session:{digest}")
    assert token.encode() not in b"".join([*stored.keys(), *stored.values()])
    assert 0 < await redis.ttl(f"{prefix}:staff:session:{digest}") <= 60
    assert await sessions.get(token) == session
    assert (session.staff_id, session.role, session.email, session.display_name) == (
        7,
        Role.SUPERVISOR,
        ANN.email,
        "Ann",
    )
    assert session.is_supervisor and session.staff_dict()["role"] == "supervisor"


async def test_unknown_and_odd_tokens_have_no_session(redis, prefix):
    sessions = StaffSessions(redis, prefix=prefix)
    await sessions.create(ANN)
    for token in (None, "", "x" * 43, "x" * 10_000):
        assert await sessions.get(token) is None


async def test_idle_expiry_slides_with_each_request_then_ends_the_session(redis, prefix):
    sessions = StaffSessions(redis, prefix=prefix, idle_seconds=1)
    token, _ = await sessions.create(ANN)
    for _ in range(3):  # 1.8 s in all, never 1 s idle
        await asyncio.sleep(0.6)
        assert await sessions.get(token) is not None
    await asyncio.sleep(1.6)
    assert await sessions.get(token) is None


async def test_a_background_request_reads_the_session_without_sliding_its_idle_expiry(redis, prefix):
    sessions = StaffSessions(redis, prefix=prefix, idle_seconds=1)
    token, _ = await sessions.create(ANN)
    seen = []
    for _ in range(3):  # the console's queue poll every 0.6 s: not a person, the session still ends
        await asyncio.sleep(0.6)
        seen.append(await sessions.get(token, touch=False) is not None)
    assert seen[0] and not seen[-1]


async def test_alive_tells_an_open_session_without_sliding_its_idle_expiry(redis, prefix):
    now = [1_000_000.0]
    sessions = StaffSessions(redis, prefix=prefix, idle_seconds=1, absolute_seconds=3600, clock=lambda: now[0])
    token, session = await sessions.create(ANN)
    assert await sessions.alive(session.token_hash)
    now[0] += 3601
    assert not await sessions.alive(session.token_hash)
    now[0] -= 3601
    for _ in range(3):  # asked every 0.6 s, it still ends after 1 s: a socket's pings are not a person
        await asyncio.sleep(0.6)
        alive = await sessions.alive(session.token_hash)
    assert not alive and await sessions.get(token) is None
    assert not await sessions.alive("0" * 64)


async def test_no_session_outlives_the_absolute_limit(redis, prefix):
    now = [1_000_000.0]
    sessions = StaffSessions(redis, prefix=prefix, idle_seconds=60, absolute_seconds=3600, clock=lambda: now[0])
    token, session = await sessions.create(ANN)
    now[0] += 3599
    assert await sessions.get(token) == session
    now[0] += 2
    assert await sessions.get(token) is None
    assert not await redis.exists(f"{prefix}:staff:session:{session.token_hash}")


async def test_a_malformed_session_is_refused_and_removed(redis, prefix):
    sessions = StaffSessions(redis, prefix=prefix)
    token, session = await sessions.create(ANN)
    key = f"{prefix}:staff:session:{session.token_hash}"
    await redis.hset(key, "role", "administrator")
    assert await sessions.get(token) is None
    assert not await redis.exists(key)


async def test_end_ends_one_session_and_end_all_every_session_of_a_member(redis, prefix):
    sessions = StaffSessions(redis, prefix=prefix)
    first, _ = await sessions.create(ANN)
    second, _ = await sessions.create(ANN)
    third, _ = await sessions.create(ANN)
    other, _ = await sessions.create(BO)
    await sessions.end(first)
    assert await sessions.get(first) is None and await sessions.get(second) is not None
    assert await redis.scard(f"{prefix}:staff:sessions_of:7") == 2
    assert await sessions.end_all(7) == 2
    assert await sessions.get(second) is None and await sessions.get(third) is None
    assert await sessions.get(other) is not None
    assert await sessions.end_all(7) == 0
    await sessions.end(first)  # ending twice is harmless


async def test_the_csrf_token_is_compared_whole(redis, prefix):
    _, session = await StaffSessions(redis, prefix=prefix).create(ANN)
    assert session.csrf_matches(session.csrf)
    for guess in (None, "", session.csrf[:-1], session.csrf + "x", session.csrf.upper()):
        assert not session.csrf_matches(guess)
