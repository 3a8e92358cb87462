"""Rate limits shared by every gateway process through Redis, with the `limits` library (moving
windows in the "20/minute" notation): per conversation, and per client (an IP address, kept only
as a pseudonym in the limiter's keys)."""

from __future__ import annotations

import logging
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from channels.errors import RateLimited

log = logging.getLogger(__name__)


class RateLimits:
    def __init__(
        self, redis_url: str, prefix: str, per_conversation: str, per_client: str, timeout: float = 2.0, redis=None
    ):
        # redis-py's asyncio client (already a dependency) rather than the library's default, coredis;
        # with `redis`, the gateway's own connection pool (and its timeouts) instead of a second one
        options = (
            {"connection_pool": redis.connection_pool}
            if redis is not None
            else {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        )
        self.storage = RedisStorage(redis_url, implementation="redispy", key_prefix=f"{prefix}:ratelimit", **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.limits = {"conversation": parse_many(per_conversation), "client": parse_many(per_client)}

    async def check(self, scope: str, identity: str) -> None:
        """Count one message; raise RateLimited (with when to retry) when a limit is exceeded.
        If Redis fails the message goes on: the pipeline then answers it as Redis being down."""
        for item in self.limits[scope]:
            try:
                allowed = await self.limiter.hit(item, scope, identity)
            except Exception as exc:
                log.warning("rate limiter unavailable scope=%s error=%s", scope, type(exc).__name__)
                return
            if not allowed:
                raise RateLimited(
                    f"too many messages: at most {_describe(item)} per {scope}",
                    retry_after=await self._retry_after(item, scope, identity),
                )

    async def _retry_after(self, item: RateLimitItem, scope: str, identity: str) -> int:
        try:
            stats = await self.limiter.get_window_stats(item, scope, identity)
            return max(1, int(stats.reset_time - time.time()) + 1)
        except Exception:
            return item.get_expiry()


def _describe(item: RateLimitItem) -> str:
    return (
        f"{item.amount} messages a {item.GRANULARITY.name}"
        if item.multiples == 1
        else f"{item.amount} messages in {item.multiples} {item.GRANULARITY.name}s"
    )
