"""`careline staff disable` ends the member's open sessions in the gateway's Redis, and says so
(exit 3) when that Redis cannot be reached."""

from __future__ import annotations

import asyncio
import io
import sys

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from careline.cli import main
from channels.staff.accounts import Role, StaffMember
from channels.staff.sessions import StaffSessions

PASSWORD = "correct horse battery"


@pytest.fixture
def checkout(tmp_path, monkeypatch, redis_url, prefix):
    """A checkout of its own: the database under its var/, the test Redis under our prefix."""
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "config.yml").write_text("recipe: default.v1\n")
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    monkeypatch.setenv("CONVERSATION_SECRET", "k" * 32)
    yield tmp_path
    sync = SyncRedis.from_url(redis_url)
    keys = list(sync.scan_iter(f"{prefix}:*"))
    if keys:
        sync.delete(*keys)
    sync.close()


def sessions_do(redis_url: str, prefix: str, work):
    async def run():
        redis = Redis.from_url(redis_url)
        try:
            return await work(StaffSessions(redis, prefix=prefix))
        finally:
            await redis.aclose()

    return asyncio.run(run())


def test_disable_ends_every_open_session_of_that_member(checkout, redis_url, prefix, monkeypatch, capsys):
    for email in ("ann@clinic.org", "bo@clinic.org"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD))
        assert main(["staff", "add", email, "--role", "agent", "--password-stdin"]) == 0
    ann, bo = StaffMember(1, "ann@clinic.org", Role.AGENT, "ann"), StaffMember(2, "bo@clinic.org", Role.AGENT, "bo")

    async def open_sessions(sessions):
        return [(await sessions.create(m))[0] for m in (ann, ann, bo)]

    tokens = sessions_do(redis_url, prefix, open_sessions)
    capsys.readouterr()
    assert main(["staff", "disable", "ann@clinic.org"]) == 0
    out = capsys.readouterr().out
    assert "disabled ann@clinic.org (id 1)" in out and "ended 2 open session(s)" in out

    async def still_open(sessions):
        return [await sessions.get(t) is not None for t in tokens]

    assert sessions_do(redis_url, prefix, still_open) == [False, False, True]


def test_disable_with_redis_unreachable_exits_3_and_says_the_sessions_remain(checkout, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD))
    assert main(["staff", "add", "ann@clinic.org", "--role", "agent", "--password-stdin"]) == 0
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    capsys.readouterr()
    assert main(["staff", "disable", "ann@clinic.org"]) == 3
    out, err = capsys.readouterr()
    assert "disabled ann@clinic.org" in out
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in err and "hunter2" not in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["staff", "list"]) == 0 and "ann@clinic.org" not in capsys.readouterr().out
