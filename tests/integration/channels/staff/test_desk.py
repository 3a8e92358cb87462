"""The staff desk against a real Redis: the queue's order, one winner of a claim, who may do what,
hand-back, notes, and live events across two processes' fan-outs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from redis.asyncio import Redis

from channels.messages import OutboundMessage
from channels.staff.desk import Actor, NotFound, NotWaiting, NotYours, ServiceLevels, StaffDesk, Taken
from channels.staff.fanout import Fanout
from channels.store import ConversationStore, Owner

SAM = Actor(1, "Sam")
ALEX = Actor(2, "Alex")
BOSS = Actor(3, "Pat", supervisor=True)


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def desk(redis):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = ConversationStore(redis, prefix=prefix, retention=3600)
    yield StaffDesk(redis, store, ServiceLevels(emergency=60, urgent=300, normal=900))
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)


async def handed_off(desk: StaffDesk, key: str, priority: str = "normal", callback: bool = False) -> str:
    await desk.store.ensure(key, "web")
    await desk.store.append(key, "user", text="I want to talk to a person")
    await desk.store.set_owner(
        key, Owner.WAITING_FOR_STAFF, reason="request_human", priority=priority, callback=callback
    )
    return key


async def test_most_urgent_first_then_call_backs_then_the_longest_waiting(desk):
    await handed_off(desk, "old-normal")
    await asyncio.sleep(0.01)
    await handed_off(desk, "urgent", "urgent")
    await handed_off(desk, "new-normal")
    await handed_off(desk, "callback", callback=True)
    await handed_off(desk, "crisis", "crisis")
    queue = await desk.queue(SAM)
    assert [i["id"] for i in queue["waiting"]] == ["crisis", "urgent", "callback", "old-normal", "new-normal"]
    crisis = queue["waiting"][0]
    assert crisis["sla_seconds"] == 60 and crisis["waiting_seconds"] >= 0 and crisis["breached"] is False
    assert queue["waiting"][2]["callback"] is True


async def test_a_later_hand_off_keeps_the_wait_and_the_priority(desk):
    await handed_off(desk, "c", "urgent")
    first = (await desk.store.info("c"))["handoff_at"]
    await desk.store.set_owner("c", Owner.WAITING_FOR_STAFF, reason="again", priority="normal")
    info = await desk.store.info("c")
    assert info["handoff_at"] == first and info["priority"] == "urgent"


async def test_a_breach_is_shown_once_the_service_level_has_passed(desk, redis):
    await handed_off(desk, "late", "urgent")
    await redis.hset(desk._k("conv", "late"), "handoff_at", str(time.time() - 301))
    (item,) = (await desk.queue(SAM))["waiting"]
    assert item["breached"] is True and item["waiting_seconds"] >= 301


async def test_twenty_simultaneous_claims_have_exactly_one_winner(desk):
    await handed_off(desk, "c")
    agents = [Actor(i, f"Agent {i}") for i in range(1, 21)]
    results = await asyncio.gather(*(desk.claim("c", a) for a in agents), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == 19
    assert all(isinstance(e, Taken) for e in losers)
    winner = winners[0]["assignee"]
    assert {e.info["assignee"] for e in losers} == {winner}  # every loser is told who has it
    assert all(e.info["name"] == f"Agent {winner}" for e in losers)
    info = await desk.store.info("c")
    assert info["owner"] == Owner.STAFF and info["assignee"] == str(winner)
    assert (await desk.queue(SAM))["waiting"] == []


async def test_claiming_again_is_harmless_and_only_waiting_conversations_can_be_claimed(desk):
    await handed_off(desk, "c")
    await desk.claim("c", SAM)
    await desk.claim("c", SAM)
    await desk.store.ensure("bot-owned", "web")
    with pytest.raises(NotWaiting):
        await desk.claim("bot-owned", SAM)
    with pytest.raises(NotFound):
        await desk.claim("never-seen", SAM)


async def test_only_the_assignee_or_a_supervisor_acts_on_a_conversation(desk):
    await handed_off(desk, "c")
    await desk.claim("c", SAM)
    with pytest.raises(NotYours):
        await desk.release("c", ALEX)
    with pytest.raises(NotYours):
        await desk.check_assignee("c", ALEX)
    with pytest.raises(NotYours):
        await desk.transfer("c", ALEX, ALEX)
    await desk.transfer("c", BOSS, ALEX)  # a supervisor reassigns
    assert (await desk.store.info("c"))["assignee"] == str(ALEX.id)
    await desk.check_assignee("c", ALEX)
    with pytest.raises(NotYours):
        await desk.check_assignee("c", SAM)


async def test_an_agent_sees_their_own_a_supervisor_everyone_and_the_load(desk):
    for key in ("a", "b", "c"):
        await handed_off(desk, key)
    await desk.claim("a", SAM)
    await desk.claim("b", SAM)
    await desk.claim("c", ALEX)
    assert sorted(i["id"] for i in (await desk.queue(SAM))["assigned"]) == ["a", "b"]
    assert "load" not in await desk.queue(SAM)
    everyone = await desk.queue(BOSS)
    assert sorted(i["id"] for i in everyone["assigned"]) == ["a", "b", "c"]
    assert everyone["load"] == {"Sam": 2, "Alex": 1}


async def test_release_puts_it_back_in_its_old_place(desk):
    await handed_off(desk, "first")
    await asyncio.sleep(0.01)
    await handed_off(desk, "second")
    await desk.claim("first", SAM)
    await desk.release("first", SAM)
    queue = await desk.queue(SAM)
    assert [i["id"] for i in queue["waiting"]] == ["first", "second"]
    assert queue["assigned"] == [] and (await desk.store.info("first")).get("assignee") is None


async def test_hand_back_gives_it_to_the_bot_and_tells_the_patient(desk):
    await handed_off(desk, "c", "urgent")
    await desk.claim("c", SAM)
    notice = OutboundMessage("You're back with the assistant", role="system")
    await desk.hand_back("c", SAM, Owner.BOT, notice)
    info = await desk.store.info("c")
    assert info["owner"] == Owner.BOT and "assignee" not in info and "priority" not in info
    last = (await desk.store.transcript("c"))[-1]
    assert last["push"] is True and last["role"] == "system" and last["seq"] == 2
    assert (await desk.queue(BOSS))["assigned"] == []


async def test_notes_are_private_and_expire_with_the_conversation(desk, redis):
    await handed_off(desk, "c")
    note = await desk.add_note("c", SAM, "called back, no answer")
    assert note["author"] == "Sam" and await desk.notes("c") == [note]
    assert all(m["text"] != "called back, no answer" for m in await desk.store.transcript("c"))
    assert 0 < await redis.ttl(desk._k("notes", "c")) <= 3600


async def test_events_reach_another_process_fanout(desk, redis, redis_url):
    """A patient's message appended by one gateway process reaches a console on another."""
    other = Redis.from_url(redis_url)
    fanout = Fanout(other, desk.prefix)
    await fanout.start()
    try:
        await asyncio.wait_for(fanout.connected.wait(), 5)
        await handed_off(desk, "c")
        async with fanout.listen(desk.store.events_channel("c"), desk.events_channel) as queue:
            await desk.claim("c", SAM)
            await desk.store.append("c", "user", text="are you there?")
            events = [await asyncio.wait_for(queue.get(), 5) for _ in range(3)]
    finally:
        await fanout.stop()
        await other.aclose()
    kinds = [e.get("type") or e.get("role") for e in events]
    assert kinds == ["agent", "claimed", "user"]
    assert events[2]["text"] == "are you there?" and events[2]["seq"] == 2
    assert "text" not in json.dumps(events[1])  # the desk's channel carries ids, never text
