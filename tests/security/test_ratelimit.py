"""Rate limits through the real Redis, shared by every gateway process."""

import uuid

import pytest

from channels.errors import RateLimited
from channels.ratelimit import RateLimits


async def test_limits_are_shared_between_processes_and_fail_open_without_redis(redis_url):
    prefix = f"rl{uuid.uuid4().hex[:8]}"
    one = RateLimits(redis_url, prefix, "3/minute", "5/minute")
    two = RateLimits(redis_url, prefix, "3/minute", "5/minute")  # another gateway replica
    for limiter in (one, two, one):
        await limiter.check("conversation", "c1")
    with pytest.raises(RateLimited) as limited:
        await two.check("conversation", "c1")
    assert "3 messages a minute" in str(limited.value) and 1 <= limited.value.retry_after <= 61
    await one.check("conversation", "c2")  # another conversation is not limited
    for _ in range(5):
        await one.check("client", "ip-1")
    with pytest.raises(RateLimited):
        await two.check("client", "ip-1")
    down = RateLimits("redis://127.0.0.1:1/0", prefix, "1/minute", "1/minute", timeout=0.5)
    await down.check("conversation", "c1")
    await down.check("conversation", "c1")  # Redis unreachable: the message goes on to the pipeline
