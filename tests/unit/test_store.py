"""ConversationStore against a real Redis server."""

import uuid

import pytest
from redis.asyncio import Redis

from channels.messages import Button, OutboundMessage
from channels.store import ConversationStore, Owner


@pytest.fixture
async def store(redis_url):
    redis = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield ConversationStore(redis, prefix=prefix, transcript_max=3)
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_new_conversation_is_owned_by_the_bot(store):
    assert await store.owner("c1") is None
    assert await store.ensure("c1", "web", "tok") is Owner.BOT
    assert (await store.info("c1"))["channel"] == "web"


async def test_owner_changes_persist_and_handoff_is_queued_without_text(store):
    await store.ensure("c1", "web", "tok")
    await store.set_owner("c1", Owner.WAITING_FOR_STAFF, reason="request_human", summary={"user_turns": 2})
    assert await store.ensure("c1", "web", "tok") is Owner.WAITING_FOR_STAFF
    queue = await store.staff_queue()
    assert queue[-1]["conversation"] == "c1" and queue[-1]["reason"] == "request_human"
    assert set(queue[-1]) == {"conversation", "reason", "priority", "ts"}


async def test_staff_see_emergencies_first_and_priority_never_drops(store):
    await store.set_owner("routine", Owner.WAITING_FOR_STAFF, reason="request_human")
    await store.set_owner("urgent", Owner.WAITING_FOR_STAFF, reason="triage:urgent", priority="urgent")
    await store.set_owner("red", Owner.WAITING_FOR_STAFF, reason="safety:stroke.speech", priority="emergency")
    assert await store.waiting_for_staff() == ["red", "urgent", "routine"]
    await store.set_owner("red", Owner.WAITING_FOR_STAFF, reason="request_human")  # calmer later hand-off
    assert (await store.info("red"))["priority"] == "emergency"
    await store.set_owner("red", Owner.STAFF)
    assert await store.waiting_for_staff() == ["urgent", "routine"]
    await store.flag("red", priority="emergency", reason="safety:breathing.cant_breathe")
    assert (await store.staff_queue())[-1]["alert"] == "1"


async def test_transcript_is_capped(store):
    for i in range(5):
        await store.append("c1", "user", text=f"m{i}")
    await store.append("c1", "bot", [OutboundMessage("hi", (Button("Yes", "/affirm"),))])
    items = await store.transcript("c1")
    assert [i["text"] for i in items] == ["m3", "m4", "hi"]
    assert items[-1]["buttons"] == [{"title": "Yes", "payload": "/affirm"}]


async def test_claim_complete_replay_release(store):
    assert await store.claim("c1", "m1") == (True, None)
    assert await store.claim("c1", "m1") == (False, None)  # in progress
    await store.complete("c1", "m1", [OutboundMessage("done")])
    claimed, previous = await store.claim("c1", "m1")
    assert not claimed and [m.text for m in previous] == ["done"]
    assert await store.claim("c1", "m2") == (True, None)
    await store.release("c1", "m2")
    assert await store.claim("c1", "m2") == (True, None)
