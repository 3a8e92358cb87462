"""Fixtures of the staff tests: a Redis client on the test database with a key prefix of its own
(removed afterwards), and cheap Argon2 parameters (the unit tests cover the real defaults)."""

from __future__ import annotations

import socket
import uuid

import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def cheap_hasher() -> PasswordHasher:
    return PasswordHasher(**CHEAP)


def postgres_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def redis(redis_url, prefix):
    client = Redis.from_url(redis_url)
    yield client
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
