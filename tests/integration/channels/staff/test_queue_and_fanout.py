"""Two things `make bench` (careline/bench_staff.py) found, against a real Redis: the queue reads its
items in one script (what each conversation's hash says, a conversation that is gone left out), and
the fan-out gives every listener an event of its own, so two consoles can watch one conversation."""

from __future__ import annotations

import asyncio
import json

from channels.staff.desk import Actor, StaffDesk
from channels.staff.fanout import Fanout
from channels.store import ConversationStore, Owner

SAM = Actor(1, "Sam Ñandú")  # not ASCII: the script's JSON carries it as UTF-8


async def test_the_queue_items_are_what_each_hash_says_and_one_that_is_gone_is_left_out(redis, prefix):
    store = ConversationStore(redis, prefix=prefix, retention=3600)
    desk = StaffDesk(redis, store)
    for key, channel, priority in (("a", "web", "normal"), ("b", "api", "normal"), ("c", "sms", "urgent")):
        await store.ensure(key, channel)
        await store.set_owner(key, Owner.WAITING_FOR_STAFF, reason="request_human", summary={}, priority=priority)
    await store.ensure("d", "web")
    await store.set_owner("d", Owner.WAITING_FOR_STAFF, reason="request_human", callback=True)
    await desk.claim("d", SAM)
    await store.flag("d", priority="emergency", reason="safety:chest_pain")
    await redis.delete(f"{prefix}:conv:b")  # erased while it was still queued

    queue = await desk.queue(SAM)
    assert [i["id"] for i in queue["waiting"]] == ["c", "a"]
    assert [i["id"] for i in queue["assigned"]] == ["d"]
    for item in queue["waiting"] + queue["assigned"]:
        full = desk._item(item["id"], await desk.info(item["id"]), 0)  # from the whole hash
        drop = ("waiting_seconds", "breached")  # computed from the clock
        assert {k: v for k, v in item.items() if k not in drop} == {k: v for k, v in full.items() if k not in drop}
    held = queue["assigned"][0]
    assert held["assignee_name"] == "Sam Ñandú" and held["alert"] == "safety:chest_pain" and held["callback"]
    assert queue["waiting"][0]["channel"] == "sms" and queue["waiting"][0]["priority"] == "urgent"
    assert await desk._infos([]) == {}


async def test_two_listeners_of_one_conversation_each_get_the_event_whole(redis, redis_url, prefix):
    fanout = Fanout(redis, prefix)
    await fanout.start()
    channel = f"{prefix}:events:k"
    try:
        await asyncio.wait_for(fanout.connected.wait(), 5)
        async with fanout.listen(channel) as first, fanout.listen(channel) as second:
            await redis.publish(channel, json.dumps({"role": "user", "text": "hello", "seq": 1}))
            mine = await asyncio.wait_for(first.get(), 5)
            assert mine.pop("channel") == channel  # what the console's socket does with it
            other = await asyncio.wait_for(second.get(), 5)
    finally:
        await fanout.stop()
    assert other == {"role": "user", "text": "hello", "seq": 1, "channel": channel}
