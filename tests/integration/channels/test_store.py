"""ConversationStore against a real Redis server."""

import time
import uuid

import pytest
from redis.asyncio import Redis

from channels.messages import Button, OutboundMessage
from channels.store import RASA_KEY_PREFIX, ConversationStore, Owner, digest


@pytest.fixture
async def store(redis_url):
    redis = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield ConversationStore(redis, prefix=prefix, transcript_max=3, retention=3600)
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_new_conversation_is_owned_by_the_bot(store):
    assert await store.owner("c1") is None
    assert await store.ensure("c1", "web") is Owner.BOT
    assert (await store.info("c1"))["channel"] == "web"


async def test_no_raw_address_at_rest_and_only_sms_keeps_an_encrypted_one(store):
    await store.ensure("w1", "web")
    assert "address" not in await store.info("w1") and "address_enc" not in await store.info("w1")
    await store.ensure("s1", "sms", "gAAAA-ciphertext")
    assert (await store.info("s1"))["address_enc"] == "gAAAA-ciphertext"


async def test_retention_counts_from_the_first_message_and_is_never_extended(store):
    await store.ensure("c1", "web")
    await store.append("c1", "user", text="hello")
    ck, tk = store._k("conv", "c1"), store._k("transcript", "c1")
    # pretend the conversation began 3,000 s ago: both keys must expire 600 s from now, not 3,600
    await store.redis.hset(ck, "created_at", repr(time.time() - 3000))
    await store.redis.expire(ck, 600)
    await store.append("c1", "user", text="later")
    await store.ensure("c1", "web")
    assert 590 <= await store.redis.ttl(tk) <= 600
    assert 590 <= await store.redis.ttl(ck) <= 600
    assert await store.redis.zscore(store._k("retention"), "c1") is not None


async def test_owner_changes_persist_and_handoff_is_queued_without_text(store):
    await store.ensure("c1", "web")
    await store.set_owner("c1", Owner.WAITING_FOR_STAFF, reason="request_human", summary={"user_turns": 2})
    assert await store.ensure("c1", "web") is Owner.WAITING_FOR_STAFF
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
    a, b = digest("hello"), digest("chest pain")
    assert (await store.claim("c1", "m1", a)).claimed
    pending = await store.claim("c1", "m1", a)  # in progress
    assert not pending.claimed and pending.previous is None and not pending.conflict
    assert (await store.claim("c1", "m1", b)).conflict  # in progress, another message
    await store.complete("c1", "m1", a, [OutboundMessage("done")])
    replay = await store.claim("c1", "m1", a)
    assert not replay.claimed and [m.text for m in replay.previous] == ["done"]
    assert (await store.claim("c1", "m1", b)).conflict  # handled, another message
    assert (await store.claim("c1", "m2", a)).claimed
    await store.release("c1", "m2")
    assert (await store.claim("c1", "m2", a)).claimed


async def test_web_tokens_are_issued_by_the_server_and_kept_as_a_hash(store):
    token = await store.issue_web_token()
    assert len(token) >= 40 and await store.web_token_issued(token)
    assert not await store.web_token_issued("aaaaaaaaaaaaaaaaaaaaaa")
    keys = [k.decode() async for k in store.redis.scan_iter(f"{store.prefix}:*")]
    assert keys and not any(token in k for k in keys)


async def test_a_conversation_that_expired_before_the_sweep_starts_afresh(store):
    key = f"c-{uuid.uuid4().hex}"
    tracker = f"{RASA_KEY_PREFIX}:tracker:{key}"  # Rasa's prefix, whatever the gateway's
    await store.ensure(key, "web")
    await store.redis.set(tracker, "{}")  # Rasa's tracker of that conversation
    await store.redis.delete(store._k("conv", key))  # its state expired
    await store.ensure(key, "web")
    assert not await store.redis.exists(tracker)
    await store.redis.set(tracker, "{}")
    await store.ensure(key, "web")  # an ongoing conversation keeps its tracker
    assert await store.redis.exists(tracker)
    await store.redis.delete(tracker)


async def test_an_append_after_erasure_leaves_nothing_kept_for_good(store):
    """A staff reply racing the retention sweep: the counter it creates expires with the transcript."""
    await store.append("gone", "staff", text="hello")
    assert 0 < await store.redis.ttl(store._k("conv", "gone")) <= 3600
    assert 0 < await store.redis.ttl(store._k("transcript", "gone")) <= 3600


async def test_every_item_gets_the_next_sequence_number(store):
    await store.ensure("c", "web")
    assert await store.append("c", "user", text="one") == 1
    assert await store.append("c", "bot", [OutboundMessage("two"), OutboundMessage("three")]) == 3
    assert [m["seq"] for m in await store.transcript("c")] == [1, 2, 3]
    assert await store.append("c", "bot", []) == 0


# --- a red flag decided on the owner at that moment (store.escalate) --------------------------------


async def _held_by_staff(store: ConversationStore, key: str) -> None:
    await store.ensure(key, "web")
    await store.set_owner(key, Owner.STAFF)
    await store.redis.hset(store._k("conv", key), mapping={"assignee": "7", "assignee_name": "Sam"})


async def test_a_red_flag_alerts_the_staff_who_hold_it_and_queues_it_otherwise(store):
    await _held_by_staff(store, "held")
    assert await store.escalate("held", "safety:stroke", None, "emergency") is Owner.STAFF
    info = await store.info("held")
    assert info["owner"] == "staff" and info["assignee"] == "7" and info["alert"] == "safety:stroke"
    assert await store.waiting_for_staff() == []
    await store.ensure("bot", "web")
    assert (
        await store.escalate("bot", "safety:stroke", {"reason": "safety:stroke"}, "emergency")
        is Owner.WAITING_FOR_STAFF
    )
    assert await store.waiting_for_staff() == ["bot"]
    assert (await store.info("bot"))["priority"] == "emergency"


@pytest.fixture
def writes_first(redis_url, monkeypatch):
    """writes_first(method, mapping): patch ConversationStore.`method` (a step inside escalate's
    transaction) so that, the first time, another Redis client writes `mapping` to the conversation
    before the transaction commits, as another gateway process would. Returns the conversation keys
    the step was called for."""
    import redis as sync_redis

    other = sync_redis.Redis.from_url(redis_url)

    def patch(method: str, mapping: dict) -> list[str]:
        original = getattr(ConversationStore, method)
        calls: list[str] = []

        def write_first(self, pipe, key, *args):
            if not calls:
                other.hset(self._k("conv", key), mapping=mapping)
            calls.append(key)
            return original(self, pipe, key, *args)

        monkeypatch.setattr(ConversationStore, method, write_first)
        return calls

    yield patch
    other.close()


async def test_a_claim_landing_inside_the_escalation_is_not_undone(store, writes_first):
    """The agent claims between the gateway's read and its write: the transaction starts again,
    sees staff, and alerts them instead of taking the conversation back to the queue."""
    await store.ensure("c1", "web")
    calls = writes_first("_queue_owner", {"owner": "staff", "assignee": "7"})
    assert await store.escalate("c1", "safety:stroke", None, "emergency") is Owner.STAFF
    info = await store.info("c1")
    assert calls == ["c1"] and info["owner"] == "staff" and info["assignee"] == "7"
    assert info["alert"] == "safety:stroke" and await store.waiting_for_staff() == []


async def test_a_hand_back_landing_inside_the_escalation_queues_it(store, writes_first):
    """Returned to the assistant just as the red flag arrives: queued, not an alert nobody holds."""
    await _held_by_staff(store, "c2")
    calls = writes_first("_queue_flag", {"owner": "bot"})
    assert await store.escalate("c2", "safety:stroke", None, "emergency") is Owner.WAITING_FOR_STAFF
    assert calls == ["c2"] and await store.waiting_for_staff() == ["c2"]
    assert (await store.info("c2"))["owner"] == "waiting_for_staff"
