"""The holding message against a real Redis: the store keeps its kind, and the gateway does not
repeat it after the clinic rewords it (or the language changes) while the conversation waits."""

import json
import time
import uuid

import pytest
from redis.asyncio import Redis

from channels.messages import HOLDING, InboundMessage, OutboundMessage
from channels.pipeline import Gateway
from channels.rasa_client import RasaClient
from channels.safety import PassThroughScreen
from channels.store import ConversationStore, Owner
from knowledge import messages
from knowledge.messages import msg


class UnreachableRasa(RasaClient):  # never asked: the conversation waits for staff
    def __init__(self):
        super().__init__("http://127.0.0.1:9", None, 1, 0)


@pytest.fixture
async def store(redis_url):
    redis = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield ConversationStore(redis, prefix=prefix)
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def waiting(store: ConversationStore) -> tuple[Gateway, str]:
    gateway = Gateway(store, UnreachableRasa(), "k" * 32, screen=PassThroughScreen())
    key = gateway.key_for("web", "addr")
    await store.ensure(key, "web")
    await store.set_owner(key, Owner.WAITING_FOR_STAFF, reason="request_human")
    return gateway, key


async def test_the_store_keeps_a_messages_kind_and_adds_none_to_others(store):
    await store.append("c1", "system", [OutboundMessage("Staff will reply.", role="system", kind=HOLDING)])
    await store.append("c1", "bot", [OutboundMessage("Hi")])
    first, second = await store.transcript("c1")
    assert first["kind"] == HOLDING and first["text"] == "Staff will reply."
    assert "kind" not in second


async def test_a_reworded_holding_message_is_not_said_again(store, monkeypatch):
    gateway, key = await waiting(store)
    first = await gateway.handle(InboundMessage("web", "addr", "hello?"))
    assert [m.text for m in first.replies] == [msg("gateway.holding")]
    assert (await store.transcript(key))[-1]["kind"] == HOLDING

    english = messages.default_catalogue()
    reworded = messages.Catalogue("en", {**english.texts, "gateway.holding": "Our team will reply here soon."})
    monkeypatch.setattr(messages, "default_catalogue", lambda: reworded)
    second = await gateway.handle(InboundMessage("web", "addr", "anyone there?"))
    assert second.replies == [] and second.owner is Owner.WAITING_FOR_STAFF


async def test_a_holding_message_kept_before_kinds_existed_still_counts(store):
    gateway, key = await waiting(store)
    old = {"text": msg("gateway.holding"), "buttons": [], "role": "system", "ts": time.time()}
    await store.redis.rpush(store._k("transcript", key), json.dumps(old))
    result = await gateway.handle(InboundMessage("web", "addr", "hello?"))
    assert result.replies == []
