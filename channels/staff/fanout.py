"""Live events across gateway processes: one Redis pub/sub connection per process, fanned out to
the WebSockets of this process (staff consoles, patients' widgets) that listen to a channel.

Publishers (channels/store.py, channels/staff/desk.py) publish on `{p}:events:{key}` (a
conversation) and `{p}:staff:events` (the desk). Pub/sub keeps nothing: a listener that was away
reads the state again when it comes back (the console reloads its queue and transcript on every
(re)connection; the widget gets its history on `hello`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from careline.aio import cancel_and_wait
from channels.store import decoded

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # per listener: a console that cannot keep up loses events, never the process's memory


class Fanout:
    def __init__(self, redis: Redis, prefix: str = "careline"):
        self.redis = redis
        self.prefix = prefix
        self._listeners: dict[str, set[asyncio.Queue]] = {}
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="staff-fanout")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    @contextlib.asynccontextmanager
    async def listen(self, *channels: str) -> AsyncIterator[asyncio.Queue]:
        """A queue receiving every event published on `channels` (decoded JSON objects) from now on."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        for channel in channels:
            self._listeners.setdefault(channel, set()).add(queue)
        try:
            yield queue
        finally:
            for channel in channels:
                self.unlisten(channel, queue)

    def add(self, channel: str, queue: asyncio.Queue) -> None:
        self._listeners.setdefault(channel, set()).add(queue)

    def unlisten(self, channel: str, queue: asyncio.Queue) -> None:
        listeners = self._listeners.get(channel)
        if listeners is not None:
            listeners.discard(queue)
            if not listeners:
                del self._listeners[channel]

    def _dispatch(self, channel: str, data: Any) -> None:
        listeners = self._listeners.get(channel)
        if not listeners:
            return
        try:
            event = json.loads(decoded(data))
        except ValueError:
            return
        event.setdefault("channel", channel)
        for queue in list(listeners):
            try:
                # a copy each: a listener may change its event (routes/staff.py pops `channel`), and
                # a second console watching the same conversation must still get it whole
                queue.put_nowait(dict(event))
            except asyncio.QueueFull:
                log.warning("live event dropped: a listener is not keeping up")

    async def _run(self) -> None:
        delay = 0.5
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(f"{self.prefix}:events:*", f"{self.prefix}:staff:events")
                self.connected.set()
                delay = 0.5
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None and message.get("type") == "pmessage":
                        self._dispatch(decoded(message["channel"]), message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: reconnect with a bounded backoff
                self.connected.clear()
                log.error("live events connection lost error=%s", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
